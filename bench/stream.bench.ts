// Send and receive on real files. A 1 GiB dataset (1024 keys of 1 MiB, 128 KiB records) is
// snapshotted; then, one after another, 0.1 %, 1 % and 10 % of its blocks are overwritten and
// snapshotted. Figures:
//   - incremental send time (stream generated and discarded in-process) for each change against a
//     full send of the same snapshot: the cost follows the change (target for 1 %: <= 0.05x). Once
//     every change is made, each incremental send runs INC_RUNS times (round after round), then
//     the full send FULL_RUNS times; medians count (single runs swung 2x and more). No full
//     garbage collection between runs: it hands memory back, and fresh memory is what costs most;
//   - `mirrorpool send | mirrorpool recv` of the full stream as two real processes joined by an
//     OS pipe (each imports its own pool; bash sets the pipe up), against copying the stream's
//     bytes file to file with an fsync at the end (dd conv=fsync), alternating, 3 rounds each,
//     each reading warm page cache: throughput ratio of the medians, target >= 0.5x;
//   - the 1 % change replicated with `send -i | recv` (two processes, a pipe; the median of
//     REPLICATE_ROUNDS, a single run swung from 1.2 to 2.3 s), against `rsync -a` of the
//     equivalent file tree (1024 files of 1 MiB, the same 128 KiB pieces changed) onto a copy of
//     the base tree (also the median of REPLICATE_ROUNDS, the replaced files put back between
//     them: single runs swung from 282 to 361 ms): time ratio, target <= 0.2x;
//   - informational, the floor under that figure: two Node processes in a pipe that start and
//     exit (`node -e 0 | node -e 0`), against the same rsync; the log line also gives two CLI
//     processes that load the CLI and exit (`--version | --version`);
//   - the same change replicated between two running nodes (`send --to`, asked of the sending
//     node by a client that is already connected; the median of 9 pushes after 20 that let V8
//     finish compiling, see replicateBetweenNodes), against the same rsync; and, informational,
//     against `rsync -a --fsync` onto another copy of the base (a receive is durable when it
//     returns, rsync -a is not).
// MIRRORPOOL_BENCH_STREAM_INCREMENTAL_ONLY=1 stops after the in-process figures (full and
// incremental sends). rsync must be installed (Debian: apt-get install rsync). Everything lives
// in a fresh folder under os.tmpdir(), removed afterwards. Run after `npm run build` (the CLI runs from dist/).
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FileDisk, Prng, SystemClock, SystemRandom } from '../src/lib/index.js';
import { Pool, type PoolTuning, keyed } from '../src/engine/index.js';
import { estimateSend, sendPlan, sendStream } from '../src/sync/index.js';
import { MirrorpoolClient, createToken, loadNodeHome } from '../src/node/index.js';
import { type Figure, figure, GiB, median, MiB } from './harness.js';

const SUITE = 'stream';
const POOL_FILE_BYTES = 3 * GiB;
const KEYS = 1024;
const KEY_BYTES = MiB;
const PIECE = 128 * 1024;
const PIECES_PER_KEY = KEY_BYTES / PIECE;
const CHANGES = [0.001, 0.01, 0.1] as const;
const SEED = 20_261_201;
/** Timed rounds of `send | recv` and of the file copy, alternating (medians count). */
const PIPE_ROUNDS = 3;
/** Pushes between nodes before the timed ones, and the timed ones (the median counts). */
const WARM_PUSHES = 20;
const TIMED_PUSHES = 9;
/** Timed `send -i | recv` runs of the 1 % change, `dst` rolled back between them (the median counts). */
const REPLICATE_ROUNDS = 3;
/** Timed runs of the full send and of each incremental one (medians count). */
const FULL_RUNS = 3;
const INC_RUNS = 9;
const TUNING = { txgTimeoutMs: 0, dirtyMaxBytes: 256 * MiB, dirtySyncBytes: 64 * MiB, cacheBytes: 64 * MiB } satisfies PoolTuning;
/** The CLI, from dist/bench/ (where this file runs once built). */
const BIN = fileURLToPath(new URL('../../bin/mirrorpool.js', import.meta.url));

function log(line: string): void {
  process.stderr.write(`  stream: ${line}\n`);
}

/** Which 128 KiB pieces (key, piece) a change of `fraction` overwrites: a seeded choice. */
function piecesFor(fraction: number, seed: number): [number, number][] {
  const r = new Prng(seed);
  const n = Math.max(1, Math.round(KEYS * PIECES_PER_KEY * fraction));
  const chosen = new Set<number>();
  while (chosen.size < n) chosen.add(r.int(KEYS * PIECES_PER_KEY));
  return [...chosen].map((p) => [Math.floor(p / PIECES_PER_KEY), p % PIECES_PER_KEY]);
}

function cli(home: string, args: readonly string[]): { code: number | null; err: string } {
  const r = spawnSync(process.execPath, [BIN, '--home', home, ...args], { encoding: 'utf8', maxBuffer: 64 * MiB });
  if (r.status !== 0) throw new Error(`bench: mirrorpool ${args.join(' ')} failed: ${r.stderr}`);
  return { code: r.status, err: r.stderr };
}

/** `s` as one word for the shell. */
function shellWord(s: string): string {
  return `'${s.replace(/'/g, "'\\''")}'`;
}

/**
 * `mirrorpool <left> | mirrorpool <right>` (send | recv) as two processes joined by an OS pipe;
 * wall ms. The two processes' stdio used to be socket pairs to this process, which relayed every
 * byte itself: a third process copying the stream on the same two cores, which a real pipeline
 * does not have.
 */
async function pipeline(home: string, left: readonly string[], right: readonly string[]): Promise<number> {
  const cli = (args: readonly string[]): string[] => [process.execPath, BIN, '--home', home, ...args];
  return shellPipe(cli(left), cli(right));
}

/** `left | right` (argv of each side), set up by bash as a user's shell would (pipefail: either side failing fails the run); wall ms. */
async function shellPipe(left: readonly string[], right: readonly string[]): Promise<number> {
  const side = (argv: readonly string[]): string => argv.map(shellWord).join(' ');
  const start = performance.now();
  const shell = spawn('bash', ['-o', 'pipefail', '-c', `${side(left)} | ${side(right)}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let errors = '';
  shell.stderr.on('data', (d: Buffer) => (errors += d.toString()));
  const code = await new Promise<number | null>((resolve) => shell.on('close', resolve));
  if (code !== 0) throw new Error(`bench: ${side(left)} | ${side(right)} failed (${code}): ${errors}`);
  return performance.now() - start;
}

/** Reads all of `path` through the OS and throws the bytes away (see the pipe rounds in run()). */
async function readThrough(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    const buf = new Uint8Array(MiB);
    while ((await fh.read(buf, 0, buf.length, null)).bytesRead > 0);
  } finally {
    await fh.close();
  }
}

/**
 * Copies `from` to `to` with `dd` in 1 MiB blocks and an fsync at the end (conv=fsync); wall ms.
 * A system tool, as rsync is the peer of the replication figures. On the project's VM the disk
 * writes about 1.1 GiB/s when rested and 250-280 MiB/s once a few GiB have been written; the
 * bench has written several GiB by then, so the copy runs at the sustained rate (README, Measured).
 */
function copyWithFsync(from: string, to: string): number {
  const start = performance.now();
  const r = spawnSync('dd', [`if=${from}`, `of=${to}`, 'bs=1M', 'conv=fsync', 'status=none']);
  if (r.status !== 0) throw new Error(`bench: dd failed: ${r.stderr.toString()}`);
  return performance.now() - start;
}

async function drain(pool: Pool, to: string, from?: string): Promise<{ ms: number; bytes: number; estimate: number }> {
  const plan = await sendPlan(pool, to, from === undefined ? {} : { from });
  const estimate = await estimateSend(pool, plan);
  const start = performance.now();
  let bytes = 0;
  for await (const frame of sendStream(pool, plan)) bytes += frame.length;
  return { ms: performance.now() - start, bytes, estimate };
}

/** `node start` of a home as a process; resolves with its URL once it listens. */
function startNode(home: string): Promise<{ url: string; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, [BIN, '--home', home, 'node', 'start', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = / listening on (\S+)\n/.exec(out);
      if (m !== null) resolve({ url: m[1] ?? '', stop: () => (child.kill('SIGTERM'), exited) });
    });
    void exited.then(() => reject(new Error(`bench: the node in ${home} exited before it listened`)));
  });
}

/**
 * The p0 -> p1 change pushed from a node holding `src` to a node holding `dst`, through a client
 * connected to the first node beforehand. `dst` is rolled back to base and the base -> p0 change
 * goes first, untimed. The first p0 -> p1 push after the nodes start is reported (`firstMs`), but
 * nodes that run all the time have run these paths many times: V8 is still compiling them for
 * the first dozen pushes (which fall from about 600 ms to about 130 ms) and they settle only
 * after about 20 (near 100 ms), so the figure is the median of TIMED_PUSHES pushes after
 * WARM_PUSHES more, `dst` rolled back to p0 before each.
 */
async function replicateBetweenNodes(dir: string, srcPath: string, dstPath: string): Promise<{ firstMs: number; ms: number; runs: number[] }> {
  const homeA = join(dir, 'node-a');
  const homeB = join(dir, 'node-b');
  cli(homeA, ['node', 'init', '--listen', '127.0.0.1:0']);
  cli(homeB, ['node', 'init', '--listen', '127.0.0.1:0', '--cluster-secret-file', join(homeA, 'cluster.secret')]);
  const a = await loadNodeHome(homeA);
  cli(homeB, ['node', 'peer', 'add', '--', a.config.publicKey]);
  cli(homeA, ['pool', 'import', '--dir', srcPath, 'src']);
  cli(homeB, ['pool', 'import', '--dir', dstPath, 'dst']);
  cli(homeB, ['rollback', '-r', 'dst/d@base']);
  const [nodeA, nodeB] = await Promise.all([startNode(homeA), startNode(homeB)]);
  try {
    const token = createToken(a.clusterSecret, 'admin', { ttlMs: 600_000, now: Date.now() });
    const [client, clientB] = await Promise.all([MirrorpoolClient.connect(nodeA.url, token), MirrorpoolClient.connect(nodeB.url, token)]);
    let err = '';
    const io = { stdout: () => undefined, stderr: (c: Uint8Array) => void (err += Buffer.from(c).toString()) };
    const run = async (on: MirrorpoolClient, args: readonly string[]): Promise<number> => {
      const start = performance.now();
      if ((await on.run([...args], io)) !== 0) throw new Error(`bench: ${args.join(' ')} failed: ${err}`);
      return performance.now() - start;
    };
    const push = (): Promise<number> => run(client, ['send', '-i', '@p0', 'src/d@p1', '--to', `${nodeB.url}:dst/d`]);
    const warmMs = await run(client, ['send', '-i', '@base', 'src/d@p0', '--to', `${nodeB.url}:dst/d`]);
    log(`send --to, first push (base -> p0, 0.1% changed, untimed): ${warmMs.toFixed(0)} ms`);
    const firstMs = await push();
    const runs: number[] = [];
    for (let i = 0; i < WARM_PUSHES + TIMED_PUSHES; i++) {
      await run(clientB, ['rollback', '-r', 'dst/d@p0']);
      const ms = await push();
      if (i >= WARM_PUSHES) runs.push(ms);
    }
    await Promise.all([client.close(), clientB.close()]);
    return { firstMs, ms: median(runs), runs };
  } finally {
    await Promise.all([nodeA.stop(), nodeB.stop()]);
  }
}

/** The figure of one incremental send against the full send. */
function incrementalFigure(x: { fraction: number; ms: number }, fullMs: number): Figure {
  return figure({
    suite: SUITE, name: `incremental send, ${x.fraction * 100}% of 1 GiB changed`, value: x.ms, unit: 'ms',
    versus: { label: 'full send', value: fullMs }, target: { op: '<=', ratio: x.fraction === 0.01 ? 0.05 : Math.min(1, x.fraction * 5) },
  });
}

export async function run(): Promise<Figure[]> {
  if (spawnSync('rsync', ['--version']).status !== 0) throw new Error('bench: rsync is not installed (Debian: apt-get install rsync)');
  const dir = await mkdtemp(join(tmpdir(), 'mirrorpool-bench-stream-'));
  try {
    const home = join(dir, 'home');
    const tree = join(dir, 'tree');
    const mirror = join(dir, 'mirror');
    await Promise.all([mkdir(tree), mkdir(mirror)]);
    // The source pool, created in-process, then exported for the CLI processes.
    const srcPath = join(dir, 'src.img');
    const pool = await Pool.create('src', [[{ disk: await FileDisk.open(srcPath, { createBytes: POOL_FILE_BYTES }), path: srcPath }]], {
      clock: new SystemClock(), random: new SystemRandom(), tuning: TUNING,
    });
    const noise = new Uint8Array(KEY_BYTES);
    const r = new Prng(SEED);
    await pool.dsl.create('src/d');
    for (let k = 0; k < KEYS; k++) {
      r.fill(noise);
      await pool.dsl.withView('src/d', 'write', (v) => keyed.putKey(v, () => pool.assign(), `k${k}`, noise));
      await writeFile(join(tree, `k${k}`), noise);
    }
    await pool.dsl.snapshot('src/d@base');
    const piece = new Uint8Array(PIECE);
    for (const [i, fraction] of CHANGES.entries()) {
      for (const [k, p] of piecesFor(fraction, SEED + i)) {
        r.fill(piece);
        await pool.dsl.withView('src/d', 'write', (v) => keyed.writeKey(v, () => pool.assign(), `k${k}`, p * PIECE, piece));
      }
      await pool.dsl.snapshot(`src/d@p${i}`);
    }
    const fullRuns: Awaited<ReturnType<typeof drain>>[] = [];
    const incRuns = CHANGES.map(() => [] as Awaited<ReturnType<typeof drain>>[]);
    // The incremental rounds come first: a full send reads 1 GiB through the 64 MiB block cache
    // and evicts the metadata an incremental send walks, which is not the state a system that
    // sends small changes is in (the first round still runs cold, after the setup's writes).
    for (let run = 0; run < INC_RUNS; run++) {
      for (const [i, runs] of incRuns.entries()) runs.push(await drain(pool, `src/d@p${i}`, i === 0 ? 'src/d@base' : `src/d@p${i - 1}`));
    }
    for (let run = 0; run < FULL_RUNS; run++) fullRuns.push(await drain(pool, 'src/d@base'));
    const full = { ...fullRuns[0]!, ms: median(fullRuns.map((x) => x.ms)) };
    log(`full send of 1 GiB: median ${full.ms.toFixed(0)} ms of ${fullRuns.map((x) => x.ms.toFixed(0)).join(', ')}; ${(full.bytes / MiB).toFixed(1)} MiB (estimate ${(full.estimate / MiB).toFixed(1)} MiB)`);
    const incs = CHANGES.map((fraction, i) => {
      const runs = incRuns[i]!;
      const inc = { fraction, ms: median(runs.map((x) => x.ms)), bytes: runs[0]!.bytes };
      log(`${fraction * 100}% changed: incremental send median ${inc.ms.toFixed(1)} ms of ${runs.map((x) => x.ms.toFixed(1)).join(', ')}; ${(inc.bytes / MiB).toFixed(2)} MiB (estimate ${(runs[0]!.estimate / MiB).toFixed(2)} MiB)`);
      return inc;
    });
    await pool.export();
    if (process.env.MIRRORPOOL_BENCH_STREAM_INCREMENTAL_ONLY === '1') return incs.map((x) => incrementalFigure(x, full.ms));
    // Real processes from here: register the source pool and make the target pool.
    cli(home, ['pool', 'import', '--dir', srcPath, 'src']);
    cli(home, ['pool', 'create', '--size', '3G', 'dst', join(dir, 'dst.img')]);
    const streamFile = join(dir, 'stream.bin');
    const fh = await open(streamFile, 'w');
    const out = spawnSync(process.execPath, [BIN, '--home', home, 'send', 'src/d@base'], { stdio: ['ignore', fh.fd, 'pipe'] });
    await fh.close();
    if (out.status !== 0) throw new Error(`bench: send to a file failed: ${String(out.stderr)}`);
    const streamBytes = (await stat(streamFile)).size;
    // The pipe and the copy alternate, PIPE_ROUNDS each; medians count. Before each, what it
    // reads is read once through the OS (this VM pages out cold page cache by itself, and a copy
    // reading from the device took 3-4x as long as one reading from memory) and the dirty page
    // cache is flushed (the setup leaves gigabytes of it), so both write to an idle device.
    const pipeRuns: number[] = [];
    const copyRuns: number[] = [];
    for (let round = 0; round < PIPE_ROUNDS; round++) {
      if (round > 0) cli(home, ['dataset', 'destroy', '-r', 'dst/d']);
      await readThrough(srcPath);
      spawnSync('sync');
      pipeRuns.push(await pipeline(home, ['send', 'src/d@base'], ['recv', 'dst/d']));
      await readThrough(streamFile);
      spawnSync('sync');
      copyRuns.push(copyWithFsync(streamFile, join(dir, 'stream.copy')));
      await rm(join(dir, 'stream.copy'));
    }
    const pipeMs = median(pipeRuns);
    const copyMs = median(copyRuns);
    log(`send | recv of ${(streamBytes / MiB).toFixed(0)} MiB: median ${pipeMs.toFixed(0)} ms of ${pipeRuns.map((x) => x.toFixed(0)).join(', ')}; file copy + fsync: median ${copyMs.toFixed(0)} ms of ${copyRuns.map((x) => x.toFixed(0)).join(', ')}`);
    // The 1 % change, replicated both ways onto a copy of the base tree: rsync runs without and
    // with --fsync (a receive is durable when it returns, rsync -a is not), each onto a copy of
    // its own made before the change, REPLICATE_ROUNDS times (medians count, as for the runs it
    // is compared with); between rounds the files rsync replaced are put back as they were.
    const mirrorSynced = join(dir, 'mirror-fsync');
    const changedBase = join(dir, 'changed-base');
    await Promise.all([mkdir(mirrorSynced), mkdir(changedBase)]);
    spawnSync('cp', ['-a', `${tree}/.`, mirror]);
    spawnSync('cp', ['-a', `${tree}/.`, mirrorSynced]);
    const changed = piecesFor(0.01, SEED + 1);
    const changedFiles = [...new Set(changed.map(([k]) => `k${k}`))];
    spawnSync('cp', ['-a', ...changedFiles.map((f) => join(tree, f)), changedBase]);
    for (const [k, p] of changed) {
      r.fill(piece);
      const fh = await open(join(tree, `k${k}`), 'r+');
      await fh.write(piece, 0, PIECE, p * PIECE);
      await fh.close();
    }
    const rsyncRuns: number[] = [];
    const rsyncSyncedRuns: number[] = [];
    for (let round = 0; round < REPLICATE_ROUNDS; round++) {
      for (const [runs, to, flags] of [[rsyncRuns, mirror, ['-a']], [rsyncSyncedRuns, mirrorSynced, ['-a', '--fsync']]] as const) {
        if (round > 0) spawnSync('cp', ['-a', ...changedFiles.map((f) => join(changedBase, f)), to]);
        spawnSync('sync');
        const start = performance.now();
        const rs = spawnSync('rsync', [...flags, `${tree}/`, `${to}/`]);
        if (rs.status !== 0) throw new Error(`bench: rsync ${flags.join(' ')} failed: ${rs.stderr.toString()}`);
        runs.push(performance.now() - start);
      }
    }
    const rsyncMs = median(rsyncRuns);
    const rsyncSyncedMs = median(rsyncSyncedRuns);
    // dst/d moves to p0 first; p0 -> p1 is exactly the 1 % change.
    await pipeline(home, ['send', '-i', '@base', 'src/d@p0'], ['recv', 'dst/d']);
    const replRuns: number[] = [];
    for (let round = 0; round < REPLICATE_ROUNDS; round++) {
      if (round > 0) cli(home, ['rollback', '-r', 'dst/d@p0']);
      spawnSync('sync');
      replRuns.push(await pipeline(home, ['send', '-i', '@p0', 'src/d@p1'], ['recv', 'dst/d']));
    }
    const replMs = median(replRuns);
    // The floor under that figure: two Node processes in a pipe that start and exit at once
    // (`node -e 0`), and two CLI processes that also load the CLI (`--version`), with no pool
    // opened and no byte of stream. No two-process pipeline of Node takes less than the first.
    const nodeFloorRuns: number[] = [];
    const cliFloorRuns: number[] = [];
    for (let round = 0; round < REPLICATE_ROUNDS; round++) {
      nodeFloorRuns.push(await shellPipe([process.execPath, '-e', '0'], [process.execPath, '-e', '0']));
      cliFloorRuns.push(await pipeline(home, ['--version'], ['--version']));
    }
    const nodeFloorMs = median(nodeFloorRuns);
    const node = await replicateBetweenNodes(dir, srcPath, join(dir, 'dst.img'));
    const nodeMs = node.ms;
    const runsOf = (runs: readonly number[]): string => runs.map((x) => x.toFixed(0)).join(', ');
    log(`1% change: send -i | recv ${replMs.toFixed(0)} ms (median of ${runsOf(replRuns)}), node to node ${nodeMs.toFixed(0)} ms (median of ${runsOf(node.runs)}; the first push after start took ${node.firstMs.toFixed(0)} ms), rsync -a ${rsyncMs.toFixed(0)} ms (median of ${runsOf(rsyncRuns)}), rsync -a --fsync ${rsyncSyncedMs.toFixed(0)} ms (median of ${runsOf(rsyncSyncedRuns)}); node -e 0 | node -e 0 ${nodeFloorMs.toFixed(0)} ms (median of ${runsOf(nodeFloorRuns)}), mirrorpool --version | mirrorpool --version ${median(cliFloorRuns).toFixed(0)} ms (median of ${runsOf(cliFloorRuns)})`);
    const check = await readFile(join(mirror, 'k0'));
    if (check.length !== KEY_BYTES) throw new Error('bench: rsync left a short file');
    return [
      ...incs.map((x) => incrementalFigure(x, full.ms)),
      figure({
        suite: SUITE, name: 'send | recv, full 1 GiB, two processes', value: streamBytes / MiB / (pipeMs / 1000), unit: 'MiB/s',
        versus: { label: 'file copy + fsync', value: streamBytes / MiB / (copyMs / 1000) }, target: { op: '>=', ratio: 0.5 },
      }),
      figure({
        suite: SUITE, name: 'replicate a 1% change: send -i | recv', value: replMs, unit: 'ms',
        versus: { label: 'rsync -a of the file tree', value: rsyncMs }, target: { op: '<=', ratio: 0.2 },
      }),
      figure({
        suite: SUITE, name: 'the floor of send -i | recv: node -e 0 | node -e 0 (informational)', value: nodeFloorMs, unit: 'ms',
        versus: { label: 'rsync -a of the file tree', value: rsyncMs }, target: { op: '<=', ratio: 0.2 },
      }),
      figure({
        suite: SUITE, name: 'replicate a 1% change: send --to between two nodes', value: nodeMs, unit: 'ms',
        versus: { label: 'rsync -a of the file tree', value: rsyncMs }, target: { op: '<=', ratio: 0.2 },
      }),
      figure({
        suite: SUITE, name: 'replicate a 1% change: send --to, against a durable rsync (informational)', value: nodeMs, unit: 'ms',
        versus: { label: 'rsync -a --fsync', value: rsyncSyncedMs }, target: { op: '<=', ratio: 1 },
      }),
    ];
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
