// The `pool` command group of the CLI (contract: shared/CLI.md; what exists: docs/cli.md).
// Parses and validates arguments (bad usage is a CommanderError: exit 2 through main; the shared
// helpers are in cli-common.ts), then calls pool-admin / pool-debug and prints; in a daemon those
// evict a resident pool around the work that opens its vdevs directly, while list, status, sync
// and checkpoint run on the resident pool through withPool. Commands that look
// at several pools (list, status without a name) print every pool they could open and fail with
// the error of the last one they could not.
// Registered on the program by buildProgram in cli.ts.

import { type Command, Option } from 'commander';
import { resolve } from 'node:path';
import { MIRROR_CHILDREN_MAX, TOP_VDEVS_MAX } from '../engine/index.js';
import type { Disk, MirrorpoolError } from '../lib/index.js';
import { type CliIo, arg, collect, eachPool, failWith, home, json, usage } from './cli-common.js';
import {
  addVdevs, attachVdev, checkpointPool, createPool, detachVdev, discardCheckpoint, exportPool, importPool, listImportable, reguidPool, syncPool,
} from './pool-admin.js';
import type { CachedPool } from './pool-cache.js';
import { debugPool } from './pool-debug.js';
import type { OpenLeaf } from './pool-open.js';
import { type ListRow, listRowOf, renderImportable, renderList, renderStatus, reportOf } from './pool-report.js';
import { formatSize, parseCount, parseSize } from './units.js';

/** Size of vdev files `pool create` makes when --size is not given. */
const DEFAULT_VDEV_BYTES = 1024 ** 3;
const DEBUG_OBJECTS_DEFAULT = 64;
const DEBUG_BLOCKS_DEFAULT = 16;
/** Upper bound of --max-objects and --max-blocks: debug output stays readable. */
const DEBUG_COUNT_MAX = 1_000_000;

const pathsOf = (leaves: readonly OpenLeaf[]): Map<Disk, string> => new Map(leaves.map((l) => [l.disk, l.path]));

function checkVdevArgs(vdevs: readonly string[], mirror: boolean): void {
  if (mirror && (vdevs.length < 2 || vdevs.length > MIRROR_CHILDREN_MAX)) {
    throw usage(`--mirror takes 2 to ${MIRROR_CHILDREN_MAX} vdevs, got ${vdevs.length}`);
  }
  if (!mirror && vdevs.length > TOP_VDEVS_MAX) throw usage(`a pool takes at most ${TOP_VDEVS_MAX} top-level vdevs`);
  const seen = new Set<string>();
  for (const v of vdevs) {
    if (seen.has(resolve(v))) throw usage(`vdev ${v} is given twice`);
    seen.add(resolve(v));
  }
}

function unavailable(entry: CachedPool, error: MirrorpoolError): ListRow {
  return {
    name: entry.name,
    guid: entry.guid,
    sizeBytes: null,
    allocatedBytes: null,
    freeBytes: null,
    health: 'UNAVAIL',
    txg: null,
    vdevs: entry.vdevs,
    error: { code: error.code, message: error.message },
  };
}

function addCreate(pool: Command): void {
  pool
    .command('create')
    .description('create a pool on file vdevs; files that do not exist are created at --size')
    .option('--mirror', 'all vdevs form one mirror (default: each vdev is striped on its own)', false)
    .addOption(new Option('--size <size>', 'size of vdev files to create (64M, 1G, 1.5G)').argParser(arg(parseSize)).default(DEFAULT_VDEV_BYTES, '1G'))
    .option('-f, --force', 'overwrite vdev files that hold a mirrorpool label', false)
    .argument('<pool>', 'pool name')
    .argument('<vdev...>', 'vdev files (or block devices)')
    .action(async (name: string, vdevs: string[], _o: unknown, cmd: Command) => {
      const o = cmd.opts<{ mirror: boolean; size: number; force: boolean }>();
      checkVdevArgs(vdevs, o.mirror);
      await createPool(home(cmd), name, vdevs, { mirror: o.mirror, sizeBytes: o.size, force: o.force });
    });
}

function addImportExport(pool: Command, io: CliIo): void {
  pool
    .command('import')
    .description('list pools that can be imported from --dir, or import the one named')
    .option('--dir <dir>', 'folder (or vdev file) to search; repeatable (default: the current folder)', collect, [])
    .option('--json', 'list importable pools as JSON', false)
    .option('--rewind-to-checkpoint', 'make the checkpointed state current: everything written after it is gone', false)
    .argument('[pool]', 'name or guid of the pool to import')
    .action(async (target: string | undefined, _o: unknown, cmd: Command) => {
      const o = cmd.opts<{ dir: string[]; json: boolean; rewindToCheckpoint: boolean }>();
      const dirs = o.dir.length > 0 ? o.dir : ['.'];
      if (target !== undefined) {
        await importPool(home(cmd), dirs, target, { rewindToCheckpoint: o.rewindToCheckpoint });
        return;
      }
      if (o.rewindToCheckpoint) throw usage('--rewind-to-checkpoint needs the pool to import');
      const scan = await listImportable(home(cmd), dirs);
      io.out.write(o.json ? json(scan.pools) : renderImportable(scan.pools));
    });

  pool
    .command('export')
    .description('sync a pool, close it and remove it from the pool cache')
    .argument('<pool>', 'pool name')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      await exportPool(home(cmd), name);
    });

  pool
    .command('sync')
    .description('force a txg sync; prints the txg of the newest uberblock')
    .argument('<pool>', 'pool name')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      io.out.write(`${await syncPool(home(cmd), name)}\n`);
    });
}

function addListStatus(pool: Command, io: CliIo): void {
  pool
    .command('list')
    .description('size, allocated, free, health and txg of each imported pool')
    .option('--json', 'print JSON', false)
    .action(async (_o: unknown, cmd: Command) => {
      const { results, failures } = await eachPool(home(cmd), undefined, (p, e, leaves) => listRowOf(reportOf(p, pathsOf(leaves)), e.vdevs));
      const rows = [...results, ...failures.map((f) => unavailable(f.entry, f.error))].sort((a, b) => a.name.localeCompare(b.name));
      io.out.write(cmd.opts<{ json: boolean }>().json ? json(rows) : renderList(rows));
      failWith(failures.map((f) => f.error), io);
    });

  pool
    .command('status')
    .description('vdev tree with error counters, space, txg and state of one or every imported pool')
    .option('--json', 'print JSON', false)
    .argument('[pool]', 'pool name (default: every imported pool)')
    .action(async (name: string | undefined, _o: unknown, cmd: Command) => {
      const { results, failures } = await eachPool(home(cmd), name, (p, _e, leaves) => reportOf(p, pathsOf(leaves)));
      io.out.write(cmd.opts<{ json: boolean }>().json ? json(results) : renderStatus(results));
      failWith(failures.map((f) => f.error), io);
    });

  pool
    .command('debug')
    .description('labels, uberblocks, and the objects and block pointers of the MOS and root dataset (zdb-like)')
    .addOption(new Option('--max-objects <n>', 'objects shown per object set').argParser(arg((t) => parseCount(t, DEBUG_COUNT_MAX))).default(DEBUG_OBJECTS_DEFAULT))
    .addOption(new Option('--max-blocks <n>', 'block pointers shown per object').argParser(arg((t) => parseCount(t, DEBUG_COUNT_MAX))).default(DEBUG_BLOCKS_DEFAULT))
    .option('--check', 'also read every block and check checksums and space accounting', false)
    .argument('<pool>', 'pool name')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const o = cmd.opts<{ maxObjects: number; maxBlocks: number; check: boolean }>();
      await debugPool(home(cmd), name, o, (s) => io.out.write(s));
    });
}

function addVdevCommands(pool: Command, io: CliIo): void {
  pool
    .command('add')
    .description('add top-level vdevs to a pool; files that do not exist are created at --size')
    .option('--mirror', 'the vdevs form one new mirror (default: each is a new top-level vdev)', false)
    .addOption(new Option('--size <size>', 'size of vdev files to create (64M, 1G, 1.5G)').argParser(arg(parseSize)).default(DEFAULT_VDEV_BYTES, '1G'))
    .option('-f, --force', 'overwrite vdev files that hold a mirrorpool label', false)
    .argument('<pool>', 'pool name')
    .argument('<vdev...>', 'vdev files (or block devices)')
    .action(async (name: string, vdevs: string[], _o: unknown, cmd: Command) => {
      const o = cmd.opts<{ mirror: boolean; size: number; force: boolean }>();
      checkVdevArgs(vdevs, o.mirror);
      await addVdevs(home(cmd), name, vdevs, { mirror: o.mirror, sizeBytes: o.size, force: o.force });
    });

  pool
    .command('attach')
    .description('attach a new vdev to a vdev of a pool (a disk becomes a mirror); it gets a copy of everything first')
    .addOption(new Option('--size <size>', 'size of the new file if it does not exist (default: that of <vdev>)').argParser(arg(parseSize)))
    .option('-f, --force', 'overwrite a new vdev file that holds a mirrorpool label', false)
    .argument('<pool>', 'pool name')
    .argument('<vdev>', 'a vdev of the pool')
    .argument('<new-vdev>', 'the vdev file (or block device) to attach')
    .action(async (name: string, vdev: string, newVdev: string, _o: unknown, cmd: Command) => {
      const o = cmd.opts<{ size?: number; force: boolean }>();
      if (resolve(vdev) === resolve(newVdev)) throw usage(`vdev ${vdev} is given twice`);
      await attachVdev(home(cmd), name, vdev, newVdev, { sizeBytes: o.size ?? null, force: o.force });
    });

  pool
    .command('detach')
    .description('detach a vdev from its mirror; the file stays, without a label')
    .argument('<pool>', 'pool name')
    .argument('<vdev>', 'a mirror child of the pool')
    .action(async (name: string, vdev: string, _o: unknown, cmd: Command) => {
      await detachVdev(home(cmd), name, vdev);
    });

  pool
    .command('reguid')
    .description('give a pool a new random guid; prints it')
    .argument('<pool>', 'pool name')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      io.out.write(`${await reguidPool(home(cmd), name)}\n`);
    });
}

function addCheckpoint(pool: Command, io: CliIo): void {
  pool
    .command('checkpoint')
    .description('save the pool state to rewind to at import (one at a time); --discard removes it')
    .option('--discard', 'discard the checkpoint and give its space back (waits until done)', false)
    .argument('<pool>', 'pool name')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      if (cmd.opts<{ discard: boolean }>().discard) {
        const freed = await discardCheckpoint(home(cmd), name);
        io.out.write(`discarded the checkpoint of ${name}: ${formatSize(freed)} given back\n`);
        return;
      }
      const rec = await checkpointPool(home(cmd), name);
      io.out.write(`checkpoint of ${name} at txg ${rec.txg}\n`);
    });
}

/** Adds `mirrorpool pool ...` to the program; output goes to `io`. */
export function addPoolCommands(program: Command, io: CliIo): void {
  const pool = program.command('pool').description('create, import, export and inspect pools');
  addCreate(pool);
  addImportExport(pool, io);
  addListStatus(pool, io);
  addVdevCommands(pool, io);
  addCheckpoint(pool, io);
}
