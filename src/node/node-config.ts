// A node's home folder: `node.json` (identity, listen address, TLS files, known peers, tuning),
// `node.key` (the Ed25519 private key, mode 0600), `cluster.secret` (the shared cluster secret,
// mode 0600), the pool cache of the CLI (pools.json), and while a daemon runs `daemon.json`
// (its pid and real URL). `node init` writes them once; the
// daemon reads them at start, with flags overriding the file. Every field is validated on load:
// a bad file is EINVAL (or EPROTO when it is not JSON) naming the file and the field, and nothing
// starts. Written atomically, so a crash during init leaves the old file or the new one.
// Called by cli-node.ts (init, start, status, peers, tokens, up) and daemon.ts.

import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { mpError } from '../lib/index.js';
import { removeTempSiblings, writeFileAtomic } from './atomic-file.js';
import { processAlive } from './vdev-lock.js';
import { type NodeKeys, checkNodeKeys, generateNodeKeys, nodeIdOf } from './rpc/identity.js';
import type { PeerClients } from './peer-clients.js';

export const CONFIG_FILE = 'node.json';
const KEY_FILE = 'node.key';
const SECRET_FILE = 'cluster.secret';
/** The cluster secret: at least this many bytes of entropy (as base64url text, 43 characters). */
const SECRET_CHARS_MIN = 43;
const PEERS_MAX = 1024;
export const DEFAULT_PORT = 7101;
const TXG_TIMEOUT_MS_DEFAULT = 5000;

export interface PeerConfig {
  readonly id: string;
  readonly publicKey: string;
  readonly url?: string;
}

export interface TlsConfig {
  readonly cert: string;
  readonly key: string;
  /** The CA that signs the peers' certificates (for this node's outgoing wss:// connections). */
  readonly ca?: string;
}

export interface NodeConfig {
  readonly version: 1;
  readonly nodeId: string;
  readonly publicKey: string;
  /** host:port the daemon listens on (HTTP and websockets share it). */
  readonly listen: string;
  /** The URL other nodes and clients use to reach this node. */
  readonly advertise: string;
  readonly tls?: TlsConfig;
  readonly peers: readonly PeerConfig[];
  readonly txgTimeoutMs: number;
  readonly logLevel: LogLevel;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

/** Everything a daemon needs from its home: the config, its keys and the cluster secret. */
export interface NodeHome {
  readonly home: string;
  readonly config: NodeConfig;
  readonly keys: NodeKeys;
  readonly clusterSecret: string;
}

function bad(file: string, field: string, why: string): Error {
  return mpError('EINVAL', `${file}: ${field} ${why}`, { file, field });
}

/** `host:port` with a literal IP or a host name, port 0-65535. EINVAL otherwise. */
export function parseListen(text: string, file = 'listen'): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/.exec(text);
  const port = Number(m?.[2]);
  if (m === null || port > 65535) throw bad(file, 'listen', `'${text}' is not host:port (example: 127.0.0.1:${DEFAULT_PORT})`);
  const host = (m[1] ?? '').replace(/^\[|\]$/g, '');
  if (host.includes(':') && isIP(host) !== 6) throw bad(file, 'listen', `'${text}' has a malformed IPv6 address`);
  return { host, port };
}

/** A ws:// or wss:// URL with a host and no credentials. EINVAL otherwise. */
export function parseNodeUrl(text: string, what = 'node URL'): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw mpError('EINVAL', `${what} '${text}' is not a URL (example: ws://127.0.0.1:${DEFAULT_PORT})`, { url: text });
  }
  if ((url.protocol !== 'ws:' && url.protocol !== 'wss:') || url.hostname === '' || url.username !== '' || url.password !== '') {
    throw mpError('EINVAL', `${what} '${text}' must be ws://host:port or wss://host:port`, { url: text });
  }
  return url;
}

function str(v: unknown, file: string, field: string): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > 4096) throw bad(file, field, 'must be a non-empty string');
  return v;
}

function peerOf(v: unknown, file: string, i: number): PeerConfig {
  if (typeof v !== 'object' || v === null) throw bad(file, `peers[${i}]`, 'must be an object');
  const p = v as Record<string, unknown>;
  const publicKey = str(p['publicKey'], file, `peers[${i}].publicKey`);
  const id = str(p['id'], file, `peers[${i}].id`);
  if (nodeIdOf(publicKey) !== id) throw bad(file, `peers[${i}].id`, `does not match its public key (expected ${nodeIdOf(publicKey)})`);
  if (p['url'] === undefined) return { id, publicKey };
  return { id, publicKey, url: parseNodeUrl(str(p['url'], file, `peers[${i}].url`), `${file}: peers[${i}].url`).href };
}

function tlsOf(v: unknown, file: string): TlsConfig | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object') throw bad(file, 'tls', 'must be an object with cert and key');
  const t = v as Record<string, unknown>;
  const cert = str(t['cert'], file, 'tls.cert');
  const key = str(t['key'], file, 'tls.key');
  return t['ca'] === undefined ? { cert, key } : { cert, key, ca: str(t['ca'], file, 'tls.ca') };
}

/** Checks a parsed node.json; every problem is EINVAL naming the field. */
export function validateConfig(v: unknown, file: string): NodeConfig {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(file, 'the file', 'must hold a JSON object');
  const c = v as Record<string, unknown>;
  if (c['version'] !== 1) throw bad(file, 'version', `must be 1 (found ${JSON.stringify(c['version'])})`);
  const publicKey = str(c['publicKey'], file, 'publicKey');
  const nodeId = str(c['nodeId'], file, 'nodeId');
  if (nodeIdOf(publicKey) !== nodeId) throw bad(file, 'nodeId', 'does not match publicKey');
  const listen = str(c['listen'], file, 'listen');
  parseListen(listen, file);
  const advertise = parseNodeUrl(str(c['advertise'], file, 'advertise'), `${file}: advertise`).href;
  const peers = c['peers'] ?? [];
  if (!Array.isArray(peers) || peers.length > PEERS_MAX) throw bad(file, 'peers', `must be a list of at most ${PEERS_MAX} peers`);
  const txgTimeoutMs = c['txgTimeoutMs'] ?? TXG_TIMEOUT_MS_DEFAULT;
  if (!Number.isSafeInteger(txgTimeoutMs) || (txgTimeoutMs as number) < 100 || (txgTimeoutMs as number) > 600_000) {
    throw bad(file, 'txgTimeoutMs', 'must be an integer from 100 to 600000');
  }
  const logLevel = c['logLevel'] ?? 'info';
  if (!LOG_LEVELS.includes(logLevel as LogLevel)) throw bad(file, 'logLevel', `must be one of ${LOG_LEVELS.join(', ')}`);
  const tls = tlsOf(c['tls'], file);
  return {
    version: 1,
    nodeId,
    publicKey,
    listen,
    advertise,
    ...(tls === undefined ? {} : { tls }),
    peers: peers.map((p, i) => peerOf(p, file, i)),
    txgTimeoutMs: txgTimeoutMs as number,
    logLevel: logLevel as LogLevel,
  };
}

async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw mpError('ENOENT', `${path}: no ${what} here; run \`mirrorpool node init --home ${resolve(path, '..')}\` first`, { path });
    }
    throw e;
  }
}

/** Loads and checks a node's home: EINVAL/EPROTO for a bad file, ENOENT before `node init`. */
export async function loadNodeHome(home: string): Promise<NodeHome> {
  const dir = resolve(home);
  const file = join(dir, CONFIG_FILE);
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readText(file, 'node config'));
  } catch (e) {
    if (e instanceof SyntaxError) throw mpError('EPROTO', `${file}: not valid JSON (${e.message})`, { file });
    throw e;
  }
  const config = validateConfig(parsed, file);
  const keys = checkNodeKeys({ id: config.nodeId, publicKey: config.publicKey, privateKey: await readText(join(dir, KEY_FILE), 'node key') });
  const clusterSecret = (await readText(join(dir, SECRET_FILE), 'cluster secret')).trim();
  if (clusterSecret.length < SECRET_CHARS_MIN || !/^[A-Za-z0-9_-]+$/.test(clusterSecret)) {
    throw bad(join(dir, SECRET_FILE), 'the secret', `must be at least ${SECRET_CHARS_MIN} base64url characters`);
  }
  return { home: dir, config, keys, clusterSecret };
}

export function newClusterSecret(): string {
  return randomBytes(32).toString('base64url');
}

export interface InitOptions {
  readonly listen?: string;
  readonly advertise?: string;
  /** The secret of the cluster this node joins; a new one when absent. */
  readonly clusterSecret?: string;
  readonly tls?: TlsConfig;
  readonly peers?: readonly PeerConfig[];
  readonly txgTimeoutMs?: number;
}

/** `node init`: a new identity, config and secret in `home`. EEXIST when the home has a node already. */
export async function initNodeHome(home: string, options: InitOptions = {}): Promise<NodeHome> {
  const dir = resolve(home);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const existing = await readFile(join(dir, CONFIG_FILE)).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return null;
    throw e;
  });
  if (existing !== null) throw mpError('EEXIST', `${join(dir, CONFIG_FILE)} exists: this folder already holds a node`, { home: dir });
  const listen = options.listen ?? `127.0.0.1:${DEFAULT_PORT}`;
  const { host, port } = parseListen(listen);
  const urlHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  const advertise = options.advertise ?? `${options.tls === undefined ? 'ws' : 'wss'}://${urlHost}:${port}`;
  const keys = generateNodeKeys();
  const config = validateConfig(
    {
      version: 1,
      nodeId: keys.id,
      publicKey: keys.publicKey,
      listen,
      advertise,
      ...(options.tls === undefined ? {} : { tls: options.tls }),
      peers: options.peers ?? [],
      txgTimeoutMs: options.txgTimeoutMs ?? TXG_TIMEOUT_MS_DEFAULT,
      logLevel: 'info',
    },
    join(dir, CONFIG_FILE),
  );
  const clusterSecret = options.clusterSecret ?? newClusterSecret();
  // An init killed part way left no node.json (it is written last), perhaps a key, a secret and
  // temporary files: start over. Nothing else writes to a home without node.json.
  for (const name of [KEY_FILE, SECRET_FILE, CONFIG_FILE]) await removeTempSiblings(join(dir, name));
  await writeFileAtomic(join(dir, KEY_FILE), keys.privateKey);
  await writeFileAtomic(join(dir, SECRET_FILE), `${clusterSecret}\n`);
  await saveConfig(dir, config);
  return loadNodeHome(dir);
}

export async function saveConfig(home: string, config: NodeConfig): Promise<void> {
  const file = join(resolve(home), CONFIG_FILE);
  validateConfig(config, file);
  await writeFileAtomic(file, `${JSON.stringify(config, null, 2)}\n`);
}

/** Adds (or replaces, by id) a known peer in the node's config. */
export async function addPeer(home: string, peer: PeerConfig): Promise<NodeConfig> {
  const { config } = await loadNodeHome(home);
  const checked = peerOf(peer, 'peer', 0);
  const next: NodeConfig = { ...config, peers: [...config.peers.filter((p) => p.id !== checked.id), checked] };
  await saveConfig(home, next);
  return next;
}

/** What replication reports (the daemon counts it in its metrics). */
export type ReplicationEvent =
  | { readonly kind: 'start' }
  | { readonly kind: 'bytes'; readonly n: number }
  | { readonly kind: 'done'; readonly seconds: number }
  | { readonly kind: 'error'; readonly code: string }
  | { readonly kind: 'retry' };

export interface LocalNode {
  readonly node: NodeHome;
  replication(event: ReplicationEvent): void;
  /** Connections to other nodes kept between pushes (peer-clients.ts). */
  readonly peers: PeerClients;
}

/**
 * The node this process runs as, while a daemon runs in it: what a command run inside the
 * daemon (`send --to`) authenticates to other nodes with, and where it reports. Undefined in a
 * plain CLI process.
 */
let current: LocalNode | undefined;

export function setLocalNode(node: LocalNode | undefined): void {
  current = node;
}

export function localNode(): LocalNode | undefined {
  return current;
}

const RUN_FILE = 'daemon.json';

/** What a running daemon leaves in its home: its pid and the URL it really listens at (port 0 picks one). */
export interface RunFile {
  readonly pid: number;
  readonly url: string;
}

export async function writeRunFile(home: string, run: RunFile): Promise<void> {
  await writeFileAtomic(join(resolve(home), RUN_FILE), `${JSON.stringify(run)}\n`);
}

export async function removeRunFile(home: string): Promise<void> {
  await rm(join(resolve(home), RUN_FILE), { force: true });
}

/** The run file of the daemon running in `home`, if its process lives. */
export async function runningDaemon(home: string): Promise<RunFile | undefined> {
  const text = await readFile(join(resolve(home), RUN_FILE), 'utf8').catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return null;
    throw e;
  });
  if (text === null) return undefined;
  try {
    const run = JSON.parse(text) as Partial<RunFile>;
    if (typeof run.pid === 'number' && typeof run.url === 'string' && processAlive(run.pid)) return { pid: run.pid, url: run.url };
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e;
  }
  return undefined;
}

/** The URL of the daemon running in `home`: from its run file while its process lives, else the advertised one. */
export async function daemonUrl(node: NodeHome): Promise<string> {
  const run = await runningDaemon(node.home);
  return run === undefined ? node.config.advertise : parseNodeUrl(run.url).href;
}
