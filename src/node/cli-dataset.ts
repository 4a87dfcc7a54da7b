// The dataset and snapshot commands of the CLI: `dataset create|destroy|list|get|set|rename` and
// the top-level `snapshot`, `rollback`, `bookmark`, `clone`, `hold`, `release` (contract:
// shared/CLI.md; what exists: docs/cli.md). Each opens the pool its first name lives in, makes
// one DSL call and closes the pool (in a daemon the pool stays open: withPool hands the call to
// the resident pool and returns once it is durable); the DSL checks names, properties and state
// (EINVAL, ENOENT, EEXIST, EBUSY with exit 1) and changes nothing when it refuses. Only syntax is
// checked here (`-o prop=val`, `-t` types: bad usage, exit 2), plus EXDEV for a second name in
// another pool. Registered on the program by buildProgram in cli.ts.

import { type Command, InvalidArgumentError, Option } from 'commander';
import type { DatasetType, Dsl } from '../engine/index.js';
import { mpError } from '../lib/index.js';
import { type CliIo, eachPool, failWith, home, json, poolOf, usage, withDsl } from './cli-common.js';
import { type DatasetRow, datasetRowOf, propertyRowOf, renderDatasets, renderProperties } from './dataset-report.js';

const TYPE_NAMES: readonly DatasetType[] = ['filesystem', 'snapshot', 'bookmark'];

/** `prop=val` → [prop, val]; bad usage without `=` or with an empty property. */
function assignment(text: string): [string, string] {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError(`'${text}' is not property=value`);
  return [text.slice(0, eq), text.slice(eq + 1)];
}

/** Collects repeated `-o prop=val` into a map; a property given twice is bad usage. */
function collectProp(text: string, previous: Map<string, string>): Map<string, string> {
  const [prop, value] = assignment(text);
  if (previous.has(prop)) throw new InvalidArgumentError(`property ${prop} is given twice`);
  return new Map([...previous, [prop, value]]);
}

/** `-t all|filesystem|snapshot|bookmark`, or a comma-separated list of the last three. */
function parseTypes(text: string): DatasetType[] {
  if (text === 'all') return [...TYPE_NAMES];
  const types = text.split(',').map((t) => t.trim());
  for (const t of types) {
    if (!(TYPE_NAMES as readonly string[]).includes(t)) {
      throw new InvalidArgumentError(`'${t}' is not a type (all, ${TYPE_NAMES.join(', ')})`);
    }
  }
  return [...new Set(types as DatasetType[])];
}

/** EXDEV when two names of one command live in different pools (nothing moves between pools). */
function samePool(a: string, b: string): string {
  const pool = poolOf(a);
  if (poolOf(b) !== pool) throw mpError('EXDEV', `${a} and ${b} are in different pools`, { from: a, to: b });
  return pool;
}

const propsOption = (): Option =>
  new Option('-o <property=value>', 'set a property (recordsize, checksum, sync, readonly); repeatable').argParser(collectProp).default(new Map(), 'none');

function addCreateDestroy(dataset: Command): void {
  dataset
    .command('create')
    .description('create a dataset; its parent must exist')
    .addOption(propsOption())
    .argument('<pool/ds>', 'dataset name')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const props = cmd.opts<{ o: Map<string, string> }>().o;
      await withDsl(home(cmd), name, (dsl) => dsl.create(name, props));
    });

  dataset
    .command('destroy')
    .description('destroy a dataset, a snapshot (pool/ds@snap) or a bookmark (pool/ds#mark)')
    .option('-r, --recursive', 'also destroy the dataset\'s children and snapshots', false)
    .argument('<name>', 'dataset, snapshot or bookmark name')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const recursive = cmd.opts<{ recursive: boolean }>().recursive;
      await withDsl(home(cmd), name, (dsl) => dsl.destroy(name, { recursive }));
    });

  dataset
    .command('rename')
    .description('rename a dataset (it may move under another parent) or a snapshot within its dataset')
    .argument('<old>', 'dataset or snapshot name')
    .argument('<new>', 'new name')
    .action(async (from: string, to: string, _o: unknown, cmd: Command) => {
      samePool(from, to);
      await withDsl(home(cmd), from, (dsl) => dsl.rename(from, to));
    });
}

function addList(dataset: Command, io: CliIo): void {
  dataset
    .command('list')
    .description('datasets (and with -t, snapshots and bookmarks) under a dataset, or in every imported pool')
    .addOption(new Option('-t, --type <types>', 'all, or a comma-separated list of filesystem, snapshot, bookmark').argParser(parseTypes).default(['filesystem'], 'filesystem'))
    .option('--json', 'print JSON', false)
    .argument('[pool/ds]', 'list this dataset and what is under it (default: every imported pool)')
    .action(async (name: string | undefined, _o: unknown, cmd: Command) => {
      const o = cmd.opts<{ type: DatasetType[]; json: boolean }>();
      const listed = (dsl: Dsl): Promise<DatasetRow[]> =>
        dsl.list({ ...(name === undefined ? {} : { under: name }), types: o.type }).then((entries) => entries.map(datasetRowOf));
      const { results, failures } = await eachPool(home(cmd), name === undefined ? undefined : poolOf(name), (pool) => listed(pool.dsl));
      const rows = results.flat();
      io.out.write(o.json ? json(rows) : renderDatasets(rows));
      failWith(failures.map((f) => f.error), io);
    });
}

function addGetSet(dataset: Command, io: CliIo): void {
  dataset
    .command('get')
    .description('properties of a dataset, snapshot or bookmark: settable ones with their source, and figures (used, guid, createtxg...)')
    .option('-p, --parsable', 'print exact values (bytes, milliseconds) in the table', false)
    .option('--json', 'print JSON', false)
    .argument('<property>', 'all, or a comma-separated list of property names')
    .argument('<name>', 'dataset, snapshot or bookmark name')
    .action(async (wanted: string, name: string, _o: unknown, cmd: Command) => {
      const o = cmd.opts<{ parsable: boolean; json: boolean }>();
      const names = wanted === 'all' ? null : wanted.split(',');
      if (names?.some((n) => n.length === 0) === true) throw usage(`'${wanted}' is not a property list`);
      const values = await withDsl(home(cmd), name, (dsl) => dsl.properties(name));
      const byName = new Map(values.map((v) => [v.property, v]));
      const picked = (names ?? values.map((v) => v.property)).map((p) => {
        const v = byName.get(p);
        if (v === undefined) throw mpError('EINVAL', `${name} has no property '${p}'`, { name, property: p });
        return propertyRowOf(name, v);
      });
      io.out.write(o.json ? json(picked) : renderProperties(picked, o.parsable));
    });

  dataset
    .command('set')
    .description('set a property of a dataset (children inherit it unless they set it themselves)')
    .argument('<property=value>', 'recordsize, checksum, sync or readonly, and its value')
    .argument('<pool/ds>', 'dataset name')
    .action(async (text: string, name: string, _o: unknown, cmd: Command) => {
      const [prop, value] = assignmentOrUsage(text);
      await withDsl(home(cmd), name, (dsl) => dsl.setProperty(name, prop, value));
    });
}

function assignmentOrUsage(text: string): [string, string] {
  try {
    return assignment(text);
  } catch (e) {
    if (e instanceof InvalidArgumentError) throw usage(e.message);
    throw e;
  }
}

function addSnapshotCommands(program: Command): void {
  program
    .command('snapshot')
    .description('take a snapshot of a dataset')
    .argument('<pool/ds@snap>', 'snapshot name')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      await withDsl(home(cmd), name, (dsl) => dsl.snapshot(name));
    });

  program
    .command('rollback')
    .description('make a dataset what it was at a snapshot; newer snapshots need -r and are destroyed')
    .option('-r, --recursive', 'destroy the snapshots newer than the target', false)
    .argument('<pool/ds@snap>', 'snapshot name')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const recursive = cmd.opts<{ recursive: boolean }>().recursive;
      await withDsl(home(cmd), name, (dsl) => dsl.rollback(name, { recursive }));
    });

  program
    .command('bookmark')
    .description('keep a snapshot\'s guid and txg as a bookmark (a source for incremental sends)')
    .argument('<pool/ds@snap>', 'snapshot name')
    .argument('<pool/ds#mark>', 'bookmark name, in the snapshot\'s dataset')
    .action(async (snap: string, mark: string, _o: unknown, cmd: Command) => {
      await withDsl(home(cmd), snap, (dsl) => dsl.bookmark(snap, mark));
    });

  program
    .command('clone')
    .description('create a dataset whose first state is a snapshot')
    .addOption(propsOption())
    .argument('<pool/ds@snap>', 'snapshot name')
    .argument('<pool/newds>', 'name of the new dataset, in the same pool')
    .action(async (snap: string, name: string, _o: unknown, cmd: Command) => {
      const props = cmd.opts<{ o: Map<string, string> }>().o;
      samePool(snap, name);
      await withDsl(home(cmd), snap, (dsl) => dsl.clone(snap, name, props));
    });

  program
    .command('hold')
    .description('hold a snapshot under a tag: it cannot be destroyed until released')
    .argument('<tag>', 'hold tag')
    .argument('<pool/ds@snap>', 'snapshot name')
    .action(async (tag: string, name: string, _o: unknown, cmd: Command) => {
      await withDsl(home(cmd), name, (dsl) => dsl.hold(tag, name));
    });

  program
    .command('release')
    .description('release a hold of a snapshot')
    .argument('<tag>', 'hold tag')
    .argument('<pool/ds@snap>', 'snapshot name')
    .action(async (tag: string, name: string, _o: unknown, cmd: Command) => {
      await withDsl(home(cmd), name, (dsl) => dsl.release(tag, name));
    });
}

/** Adds `mirrorpool dataset ...` and the snapshot commands to the program; output goes to `io`. */
export function addDatasetCommands(program: Command, io: CliIo): void {
  const dataset = program.command('dataset').description('create, destroy, list, rename datasets; get and set properties');
  addCreateDestroy(dataset);
  addList(dataset, io);
  addGetSet(dataset, io);
  addSnapshotCommands(program);
}
