// The node commands of the CLI: `node init`, `node start` (the daemon, until SIGTERM/SIGINT),
// `node status`, `node peer add|list`, and `token create`. `node status` and `token create` talk
// to a daemon (--node, with --token) or work from a node's home (--home: the status asks the
// node at its advertised URL with a token minted from the home's secret; a token is minted
// locally). `up` lives in cli-up.ts. Registered on the program by buildProgram in cli.ts.

import type { Command } from 'commander';
import { mpError } from '../lib/index.js';
import type { NodeStatus } from './api.js';
import type { MirrorpoolClient } from './client.js';
import { type CliIo, arg, home, json, usage } from './cli-common.js';
import { errorFields } from './log.js';
import { type LogLevel, type RunFile, addPeer, daemonUrl, initNodeHome, loadNodeHome, parseListen, parseNodeUrl, runningDaemon } from './node-config.js';
import { nodeIdOf } from './rpc/identity.js';
import { SCOPES, type Scope, createToken, isScope } from './rpc/tokens.js';
import { TOKEN_TTL_MS_MAX } from './api.js';

/** A token made for one status call from a node's home lives this long. */
const LOCAL_TOKEN_TTL_MS = 60_000;
/** `token create` without --ttl: 30 days. */
const TOKEN_TTL_MS_DEFAULT = 30 * 86_400_000;
const TTL_UNITS: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

interface Connection {
  readonly node?: string;
  readonly token?: string;
  readonly ca?: string;
  readonly home: string;
}

const connection = (cmd: Command): Connection => cmd.optsWithGlobals<Connection>();

/** `30d`, `12h`, `90m`, `3600s`: a token lifetime from 1 s to a year. EINVAL otherwise. */
export function parseTtl(text: string): number {
  const m = /^([0-9]{1,9})([smhd])$/.exec(text.trim());
  const ms = m === null ? NaN : Number(m[1]) * (TTL_UNITS[m[2] ?? ''] ?? NaN);
  if (!Number.isSafeInteger(ms) || ms < 1000 || ms > TOKEN_TTL_MS_MAX) {
    throw mpError('EINVAL', `'${text}' is not a lifetime from 1s to 366d (examples: 3600s, 12h, 30d)`, { value: text });
  }
  return ms;
}

function parseScope(text: string): Scope {
  if (!isScope(text)) throw mpError('EINVAL', `'${text}' is not a scope: one of ${SCOPES.join(', ')}`, { value: text });
  return text;
}

/** A client of the named node, or of the node whose home is --home (with a short local token). */
async function nodeClient(c: Connection): Promise<MirrorpoolClient> {
  // The transport is loaded only by the commands that talk to a node: local commands start faster.
  const { MirrorpoolClient } = await import('./client.js');
  if (c.node !== undefined) {
    if (c.token === undefined) throw mpError('EAUTH', `--node needs a token too (--token or MIRRORPOOL_TOKEN)`, { reason: 'token-malformed' });
    return MirrorpoolClient.connect(parseNodeUrl(c.node).href, c.token, c.ca === undefined ? {} : { caFile: c.ca });
  }
  const node = await loadNodeHome(c.home);
  const token = createToken(node.clusterSecret, 'ro', { ttlMs: LOCAL_TOKEN_TTL_MS, now: Date.now() });
  const ca = c.ca ?? node.config.tls?.ca;
  return MirrorpoolClient.connect(await daemonUrl(node), token, ca === undefined ? {} : { caFile: ca });
}

export function formatStatus(s: NodeStatus): string {
  const rows: [string, string][] = [
    ['node', s.nodeId],
    ['url', s.url],
    ['version', s.version],
    ['started', `${s.startedAt} (up ${s.uptimeSeconds}s)`],
    ['connections', String(s.connections)],
    ['pools', s.pools.length === 0 ? '-' : s.pools.map((p) => `${p.name} (txg ${p.lastSyncedTxg})`).join(', ')],
    ...s.poolFailures.map((f): [string, string] => ['not opened', `${f.pool}: ${f.code}: ${f.message}`]),
    ['peers', s.peers.length === 0 ? '-' : s.peers.map((p) => (p.url === undefined ? p.id : `${p.id} ${p.url}`)).join(', ')],
  ];
  return rows.map(([k, v]) => `${k.padEnd(12)}${v}\n`).join('');
}

function addInit(node: Command, io: CliIo): void {
  node
    .command('init')
    .description('create a node in --home: identity key pair, config file, cluster secret')
    .option('--listen <host:port>', 'address of the HTTP and websocket server', arg((t) => (parseListen(t), t)))
    .option('--advertise <url>', 'URL other nodes and clients reach this node at', arg((t) => parseNodeUrl(t).href))
    .option('--cluster-secret-file <file>', 'join the cluster whose secret is in this file (default: a new secret)')
    .option('--tls-cert <file>', 'certificate (PEM) to serve wss:// and https://')
    .option('--tls-key <file>', 'its private key (PEM)')
    .option('--tls-ca <file>', 'CA (PEM) that signs the other nodes\' certificates')
    .action(async (_o: unknown, cmd: Command) => {
      const o = cmd.opts<{ listen?: string; advertise?: string; clusterSecretFile?: string; tlsCert?: string; tlsKey?: string; tlsCa?: string }>();
      if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) throw usage('--tls-cert and --tls-key go together');
      const { readFile } = await import('node:fs/promises');
      const secret = o.clusterSecretFile === undefined ? undefined : (await readFile(o.clusterSecretFile, 'utf8')).trim();
      const made = await initNodeHome(home(cmd), {
        ...(o.listen === undefined ? {} : { listen: o.listen }),
        ...(o.advertise === undefined ? {} : { advertise: o.advertise }),
        ...(secret === undefined ? {} : { clusterSecret: secret }),
        ...(o.tlsCert === undefined || o.tlsKey === undefined ? {} : { tls: { cert: o.tlsCert, key: o.tlsKey, ...(o.tlsCa === undefined ? {} : { ca: o.tlsCa }) } }),
      });
      io.out.write(`node ${made.config.nodeId} created in ${made.home}\n`);
      io.out.write(`public key ${made.config.publicKey}\nurl ${made.config.advertise}\n`);
    });
}

function addStart(node: Command, io: CliIo): void {
  node
    .command('start')
    .description('run the node daemon in the foreground until SIGTERM or SIGINT')
    .option('--listen <host:port>', 'override the config\'s listen address', arg((t) => (parseListen(t), t)))
    .option('--advertise <url>', 'override the config\'s advertised URL', arg((t) => parseNodeUrl(t).href))
    .option('--log-level <level>', 'debug, info, warn or error')
    .action(async (_o: unknown, cmd: Command) => {
      const o = cmd.opts<{ listen?: string; advertise?: string; logLevel?: string }>();
      if (o.logLevel !== undefined && !['debug', 'info', 'warn', 'error'].includes(o.logLevel)) throw usage(`--log-level must be debug, info, warn or error`);
      const { NodeDaemon } = await import('./daemon.js');
      const daemon = await NodeDaemon.start({
        home: home(cmd),
        ...(o.listen === undefined ? {} : { listen: o.listen }),
        ...(o.advertise === undefined ? {} : { advertise: o.advertise }),
        ...(o.logLevel === undefined ? {} : { logLevel: o.logLevel as LogLevel }),
      });
      io.out.write(`node ${daemon.node.config.nodeId} listening on ${daemon.url}\n`);
      await new Promise<void>((resolve) => {
        const stop = (signal: string): void => {
          process.off('SIGTERM', onTerm);
          process.off('SIGINT', onInt);
          process.off('SIGHUP', onHup);
          daemon.stop(`signal ${signal}`).then(resolve, (e: unknown) => {
            daemon.log.error('shutdown failed', { error: String(e) });
            resolve();
          });
        };
        const onTerm = (): void => stop('SIGTERM');
        const onInt = (): void => stop('SIGINT');
        const onHup = (): void => {
          daemon.reloadPeers().catch((e: unknown) => daemon.log.error('peers not reloaded', errorFields(e)));
        };
        process.on('SIGTERM', onTerm);
        process.on('SIGINT', onInt);
        process.on('SIGHUP', onHup);
      });
    });
}

function addStatusAndPeers(node: Command, io: CliIo): void {
  node
    .command('status')
    .description('identity, URL, uptime, connections and pools of a running node')
    .option('--json', 'print JSON', false)
    .action(async (_o: unknown, cmd: Command) => {
      const client = await nodeClient(connection(cmd));
      try {
        const s = await client.nodeStatus();
        io.out.write(cmd.opts<{ json: boolean }>().json ? json(s) : formatStatus(s));
      } finally {
        await client.close();
      }
    });
  const peer = node.command('peer').description('the other nodes this node accepts connections from');
  peer
    .command('add')
    .description('trust a node: it may connect with its key and the cluster secret')
    .argument('<public-key>', 'the node\'s public key (printed by its `node init`)')
    .option('--url <url>', 'where that node listens', arg((t) => parseNodeUrl(t).href))
    .action(async (publicKey: string, _o: unknown, cmd: Command) => {
      const url = cmd.opts<{ url?: string }>().url;
      const id = nodeIdOf(publicKey);
      await addPeer(home(cmd), { id, publicKey, ...(url === undefined ? {} : { url }) });
      const run = await runningDaemon(home(cmd));
      const reloaded = run !== undefined && (await askReload(run));
      const note = run === undefined ? '' : reloaded ? ` (the running daemon, pid ${run.pid}, reloads its peers)` : ` (send SIGHUP to the running daemon, pid ${run.pid}, to reload its peers)`;
      io.out.write(`peer ${id} added${note}\n`);
    });
  peer
    .command('list')
    .description('the nodes this node trusts')
    .option('--json', 'print JSON', false)
    .action(async (_o: unknown, cmd: Command) => {
      const { config } = await loadNodeHome(home(cmd));
      if (cmd.opts<{ json: boolean }>().json) io.out.write(json(config.peers));
      else for (const p of config.peers) io.out.write(`${p.id}  ${p.url ?? '-'}  ${p.publicKey}\n`);
    });
}

/**
 * SIGHUP to the daemon of a run file, once /proc shows that pid is still a `node start` (a pid
 * reused by another program must not get a signal whose default is to end it). False when that
 * cannot be shown.
 */
async function askReload(run: RunFile): Promise<boolean> {
  const { readFile } = await import('node:fs/promises');
  const argv = await readFile(`/proc/${run.pid}/cmdline`, 'utf8').then(
    (t) => t.split('\0'),
    (e: NodeJS.ErrnoException): string[] => {
      if (e.code === 'ENOENT' || e.code === 'EACCES') return [];
      throw e;
    },
  );
  const at = argv.indexOf('node', 1);
  if (at < 0 || argv[at + 1] !== 'start') return false;
  process.kill(run.pid, 'SIGHUP');
  return true;
}

function addToken(program: Command, io: CliIo): void {
  program
    .command('token')
    .description('client tokens')
    .command('create')
    .description('print a new client token (from the node with --node, or from --home\'s cluster secret)')
    .requiredOption('--scope <scope>', `one of ${SCOPES.join(', ')}`, arg(parseScope))
    .option('--ttl <duration>', 'lifetime, e.g. 3600s, 12h, 30d', arg(parseTtl), TOKEN_TTL_MS_DEFAULT)
    .action(async (_o: unknown, cmd: Command) => {
      const o = cmd.opts<{ scope: Scope; ttl: number }>();
      const c = connection(cmd);
      if (c.node === undefined) {
        const node = await loadNodeHome(c.home);
        io.out.write(`${createToken(node.clusterSecret, o.scope, { ttlMs: o.ttl, now: Date.now() })}\n`);
        return;
      }
      const client = await nodeClient(c);
      try {
        io.out.write(`${(await client.createToken(o.scope, o.ttl)).token}\n`);
      } finally {
        await client.close();
      }
    });
}

/** Adds `node …` and `token create` to the program. */
export function addNodeCommands(program: Command, io: CliIo): void {
  const node = program.command('node').description('run and inspect a node daemon');
  addInit(node, io);
  addStart(node, io);
  addStatusAndPeers(node, io);
  addToken(program, io);
}
