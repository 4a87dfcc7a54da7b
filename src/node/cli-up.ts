// `mirrorpool up` (what `npm start` runs): a local cluster of N nodes on 127.0.0.1 in one data
// folder. The first run creates each node (identity, config, one shared cluster secret, every
// other node as a trusted peer) with a pool `tank` on a file vdev and a dataset `tank/data`;
// later runs reuse them. Each node runs as its own `node start` process, its log in
// <dir>/nodeK/node.log. Prints the URLs, an admin token and `ready`; SIGINT/SIGTERM stop every
// node gracefully (each syncs its pool), and if one node dies the others are stopped too.
// Registered on the program by buildProgram in cli.ts.

import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { hasCode, mpError } from '../lib/index.js';
import { type CliIo, arg } from './cli-common.js';
import { writeFileAtomic } from './atomic-file.js';
import { type NodeHome, addPeer, initNodeHome, loadNodeHome, newClusterSecret } from './node-config.js';
import { PoolCache } from './pool-cache.js';
import { createToken } from './rpc/tokens.js';

const NODES_MAX = 9;
const POOL = 'tank';
const DATASET = `${POOL}/data`;
const VDEV_SIZE = '1G';
/** The admin token `up` prints lives this long. */
const ADMIN_TOKEN_TTL_MS = 7 * 86_400_000;
/** A node that has not said it listens after this long is a failed start. */
const START_TIMEOUT_MS = 60_000;

export interface UpOptions {
  readonly nodes: number;
  readonly dir: string;
  readonly basePort: number;
}

function count(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > NODES_MAX) throw mpError('EINVAL', `--nodes must be 1 to ${NODES_MAX}`, { value: text });
  return n;
}

function port(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1024 || n > 65535 - NODES_MAX) throw mpError('EINVAL', `--base-port must be 1024 to ${65535 - NODES_MAX}`, { value: text });
  return n;
}

async function clusterSecret(dir: string): Promise<string> {
  const file = join(dir, 'cluster.secret');
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const secret = newClusterSecret();
  await writeFileAtomic(file, `${secret}\n`);
  return secret;
}

/** The node in `home`, created on first use, with its pool and dataset. */
async function prepareNode(home: string, listen: string, secret: string, run: RunLocal): Promise<NodeHome> {
  let node: NodeHome;
  try {
    node = await loadNodeHome(home);
  } catch (e) {
    if (!hasCode(e, 'ENOENT')) throw e;
    node = await initNodeHome(home, { listen, clusterSecret: secret });
  }
  if (node.clusterSecret !== secret) throw mpError('EINVAL', `${home} belongs to another cluster (its cluster.secret differs)`, { home });
  if ((await new PoolCache(home).list()).every((p) => p.name !== POOL)) {
    await mkdir(join(home, 'vdevs'), { recursive: true });
    await run(['--home', home, 'pool', 'create', '--size', VDEV_SIZE, POOL, join(home, 'vdevs', `${POOL}.img`)]);
    await run(['--home', home, 'dataset', 'create', DATASET]);
  }
  return node;
}

/** Runs a command line in this process, failing on a non-zero exit. */
export type RunLocal = (argv: readonly string[]) => Promise<void>;

interface Started {
  readonly child: ChildProcess;
  readonly url: string;
  readonly exited: Promise<number | null>;
}

function startNode(entry: readonly string[], home: string): Promise<Started> {
  const log = createWriteStream(join(home, 'node.log'), { flags: 'a' });
  const child = spawn(process.execPath, [...entry, 'node', 'start', '--home', home], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr?.pipe(log);
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  return new Promise((resolveStart, reject) => {
    const timer = setTimeout(() => reject(mpError('ETIMEDOUT', `the node in ${home} did not start in ${START_TIMEOUT_MS} ms (see ${join(home, 'node.log')})`)), START_TIMEOUT_MS);
    const lines = createInterface({ input: child.stdout ?? process.stdin });
    lines.on('line', (line) => {
      const m = / listening on (\S+)$/.exec(line);
      if (m !== null) {
        clearTimeout(timer);
        resolveStart({ child, url: m[1] ?? '', exited });
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(mpError('EIO', `the node in ${home} exited with status ${code} before it listened (see ${join(home, 'node.log')})`, { home }));
    });
  });
}

async function stopAll(started: readonly Started[]): Promise<void> {
  for (const s of started) if (s.child.exitCode === null) s.child.kill('SIGTERM');
  await Promise.all(started.map((s) => s.exited));
}

/** Creates (first run) and starts the nodes, then waits for a signal or a node's death. */
export async function up(options: UpOptions, entry: readonly string[], run: RunLocal, io: CliIo): Promise<void> {
  const dir = resolve(options.dir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const secret = await clusterSecret(dir);
  const homes = Array.from({ length: options.nodes }, (_, i) => join(dir, `node${i + 1}`));
  const nodes: NodeHome[] = [];
  for (const [i, home] of homes.entries()) nodes.push(await prepareNode(home, `127.0.0.1:${options.basePort + i}`, secret, run));
  for (const node of nodes) {
    for (const other of nodes) {
      if (other !== node && !node.config.peers.some((p) => p.id === other.config.nodeId)) {
        await addPeer(node.home, { id: other.config.nodeId, publicKey: other.config.publicKey, url: other.config.advertise });
      }
    }
  }
  const started: Started[] = [];
  try {
    for (const home of homes) started.push(await startNode(entry, home));
  } catch (e) {
    await stopAll(started);
    throw e;
  }
  for (const [i, s] of started.entries()) io.out.write(`node${i + 1}  ${s.url}  ${nodes[i]?.config.nodeId ?? ''}  pool ${POOL}, dataset ${DATASET}\n`);
  io.out.write(`admin token: ${createToken(secret, 'admin', { ttlMs: ADMIN_TOKEN_TTL_MS, now: Date.now() })}\n`);
  io.out.write(`data folder: ${dir}\nready\n`);
  const outcome = await new Promise<string>((done) => {
    process.once('SIGINT', () => done('SIGINT'));
    process.once('SIGTERM', () => done('SIGTERM'));
    for (const [i, s] of started.entries()) void s.exited.then((code) => done(`node${i + 1} exited with status ${code}`));
  });
  await stopAll(started);
  if (outcome.startsWith('node')) throw mpError('EIO', `${outcome}; the other nodes were stopped (logs in ${dir}/node*/node.log)`);
  io.out.write('stopped\n');
}

export function addUpCommand(program: Command, io: CliIo, entry: readonly string[], run: RunLocal): void {
  program
    .command('up')
    .description('start a local cluster of nodes on 127.0.0.1 in a data folder (what `npm start` runs)')
    .option('--nodes <n>', 'number of nodes', arg(count), 3)
    .option('--dir <dir>', 'data folder', './data')
    .option('--base-port <port>', 'port of the first node; the others follow', arg(port), 7101)
    .action(async (_o: unknown, cmd: Command) => {
      const o = cmd.opts<{ nodes: number; dir: string; basePort: number }>();
      await up({ nodes: o.nodes, dir: o.dir, basePort: o.basePort }, entry, run, io);
    });
}
