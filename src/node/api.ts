// The daemon's RPC methods: their names, the scope each needs, the shapes of their parameters
// and results, and the checks the daemon applies to parameters that arrive off the wire (any
// field of the wrong type, or too long, is EINVAL and nothing runs). The daemon's handlers
// (daemon-methods.ts) and the typed client (client.ts) both import these, so the two sides
// agree by construction.

import { mpError } from '../lib/index.js';
import { type Scope, isScope } from './rpc/tokens.js';

/** Longest command line `cli.run` accepts: arguments, and bytes per argument. */
const ARGV_MAX = 256;
const ARG_CHARS_MAX = 64 * 1024;
const NAME_CHARS_MAX = 2048;
const TOKEN_CHARS_MAX = 8192;

/**
 * cli.run's response stream carries the command's stdout and stderr as a sequence of sections:
 * a 5-byte header (channel u8, length u32 big-endian) and that many bytes. The transport is a
 * byte stream (it may split or join writes), so the reader parses headers across chunks.
 */
export const CHANNEL_STDOUT = 1;
export const CHANNEL_STDERR = 2;
export const SECTION_HEADER_BYTES = 5;

export function sectionHeader(channel: number, length: number): Uint8Array {
  const h = new Uint8Array(SECTION_HEADER_BYTES);
  h[0] = channel;
  new DataView(h.buffer).setUint32(1, length);
  return h;
}

/** Splits a stream of sections back into (channel, bytes) pieces; EPROTO for a bad channel. */
export class SectionReader {
  private readonly header = new Uint8Array(SECTION_HEADER_BYTES);
  private headerFill = 0;
  private channel = 0;
  private left = 0;

  constructor(private readonly deliver: (channel: number, bytes: Uint8Array) => Promise<void> | void) {}

  async push(chunk: Uint8Array): Promise<void> {
    for (let at = 0; at < chunk.length; ) {
      if (this.left === 0) {
        const n = Math.min(SECTION_HEADER_BYTES - this.headerFill, chunk.length - at);
        this.header.set(chunk.subarray(at, at + n), this.headerFill);
        this.headerFill += n;
        at += n;
        if (this.headerFill < SECTION_HEADER_BYTES) return;
        this.headerFill = 0;
        this.channel = this.header[0] ?? 0;
        this.left = new DataView(this.header.buffer).getUint32(1);
        if (this.channel !== CHANNEL_STDOUT && this.channel !== CHANNEL_STDERR) throw mpError('EPROTO', `output section on unknown channel ${this.channel}`);
        continue;
      }
      const n = Math.min(this.left, chunk.length - at);
      this.left -= n;
      await this.deliver(this.channel, chunk.subarray(at, at + n));
      at += n;
    }
  }

  /** At the end of the stream: EPROTO if a section was cut. */
  finish(): void {
    if (this.left !== 0 || this.headerFill !== 0) throw mpError('EPROTO', 'command output ended inside a section');
  }
}

export interface NodeStatus {
  readonly nodeId: string;
  readonly publicKey: string;
  readonly url: string;
  readonly version: string;
  readonly startedAt: string;
  readonly uptimeSeconds: number;
  readonly connections: number;
  readonly pools: readonly { readonly name: string; readonly guid: string; readonly lastSyncedTxg: number }[];
  readonly poolFailures: readonly { readonly pool: string; readonly code: string; readonly message: string }[];
  readonly peers: readonly { readonly id: string; readonly url?: string }[];
}

export interface RunParams { readonly argv: readonly string[]; readonly stdin: boolean }
export interface RunResult { readonly exitCode: number }
export interface TokenParams { readonly scope: Scope; readonly ttlMs: number }
export interface TokenResult { readonly token: string; readonly scope: Scope; readonly expiresAt: number }
export interface SendParams { readonly snapshot?: string; readonly from?: string; readonly token?: string }
export interface SendResult { readonly bytes: number }
export interface ReceiveParams { readonly dataset: string; readonly force: boolean; readonly resumable: boolean }
export interface ReceiveResultWire { readonly snapshot: string; readonly records: number; readonly dataBytes: number }
export interface ResumeTokenParams { readonly dataset: string }
export interface ResumeTokenResult { readonly token: string | null }

/** Method name → its parameters and result, for the typed client. */
export interface Methods {
  'node.status': { params: Record<string, never>; result: NodeStatus };
  'token.create': { params: TokenParams; result: TokenResult };
  'cli.run': { params: RunParams; result: RunResult };
  'stream.send': { params: SendParams; result: SendResult };
  'stream.receive': { params: ReceiveParams; result: ReceiveResultWire };
  'stream.resumeToken': { params: ResumeTokenParams; result: ResumeTokenResult };
}
export type MethodName = keyof Methods;

/** The least scope each method needs; cli.run checks its command's own scope on top (commandScope). */
export const METHOD_SCOPES: Readonly<Record<MethodName, Scope>> = {
  'node.status': 'ro',
  'token.create': 'admin',
  'cli.run': 'ro',
  'stream.send': 'ro',
  'stream.receive': 'rw',
  'stream.resumeToken': 'ro',
};

export function isMethodName(name: string): name is MethodName {
  return Object.hasOwn(METHOD_SCOPES, name);
}

function invalid(field: string, why: string): Error {
  return mpError('EINVAL', `parameter ${field} ${why}`, { field });
}

function record(params: unknown): Record<string, unknown> {
  if (typeof params !== 'object' || params === null || Array.isArray(params)) throw invalid('params', 'must be a map');
  return params as Record<string, unknown>;
}

function text(v: unknown, field: string, max: number): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > max) throw invalid(field, `must be a string of 1 to ${max} characters`);
  return v;
}

function optText(v: unknown, field: string, max: number): string | undefined {
  return v === undefined || v === null ? undefined : text(v, field, max);
}

function flag(v: unknown, field: string): boolean {
  if (v === undefined) return false;
  if (typeof v !== 'boolean') throw invalid(field, 'must be true or false');
  return v;
}

export function runParams(params: unknown): RunParams {
  const p = record(params);
  const argv = p['argv'];
  if (!Array.isArray(argv) || argv.length > ARGV_MAX) throw invalid('argv', `must be a list of at most ${ARGV_MAX} strings`);
  for (const [i, a] of argv.entries()) {
    if (typeof a !== 'string' || a.length > ARG_CHARS_MAX) throw invalid(`argv[${i}]`, `must be a string of at most ${ARG_CHARS_MAX} characters`);
  }
  return { argv: argv as string[], stdin: flag(p['stdin'], 'stdin') };
}

export function tokenParams(params: unknown): TokenParams {
  const p = record(params);
  if (!isScope(p['scope'])) throw invalid('scope', 'must be admin, rw, ro or metrics');
  const ttlMs = p['ttlMs'];
  if (typeof ttlMs !== 'number' || !Number.isSafeInteger(ttlMs) || ttlMs < 1000 || ttlMs > TOKEN_TTL_MS_MAX) {
    throw invalid('ttlMs', `must be an integer from 1000 to ${TOKEN_TTL_MS_MAX}`);
  }
  return { scope: p['scope'], ttlMs };
}

/** Longest life of a token: a year. */
export const TOKEN_TTL_MS_MAX = 366 * 24 * 3600 * 1000;

export function sendParams(params: unknown): SendParams {
  const p = record(params);
  const snapshot = optText(p['snapshot'], 'snapshot', NAME_CHARS_MAX);
  const from = optText(p['from'], 'from', NAME_CHARS_MAX);
  const token = optText(p['token'], 'token', TOKEN_CHARS_MAX);
  if ((snapshot === undefined) === (token === undefined)) throw invalid('snapshot', 'or token must be given, not both');
  if (token !== undefined && from !== undefined) throw invalid('from', 'cannot go with a token');
  return { ...(snapshot === undefined ? {} : { snapshot }), ...(from === undefined ? {} : { from }), ...(token === undefined ? {} : { token }) };
}

export function receiveParams(params: unknown): ReceiveParams {
  const p = record(params);
  return { dataset: text(p['dataset'], 'dataset', NAME_CHARS_MAX), force: flag(p['force'], 'force'), resumable: flag(p['resumable'], 'resumable') };
}

export function resumeTokenParams(params: unknown): ResumeTokenParams {
  return { dataset: text(record(params)['dataset'], 'dataset', NAME_CHARS_MAX) };
}

const ADMIN_POOL_VERBS = new Set(['create', 'import', 'export', 'add', 'attach', 'detach', 'reguid', 'checkpoint', 'debug']);
const RW_POOL_VERBS = new Set(['sync', 'scrub']);
const RO_DATASET_VERBS = new Set(['list', 'get']);
const RO_VERBS = new Set(['get', 'read', 'ls', 'send', 'help']);

/**
 * The scope a command line needs on a daemon. Reading is ro; changing data or datasets is rw;
 * pool administration and tokens are admin. `send --to` pushes to another node with this node's
 * identity, so it needs rw. Anything unrecognised needs admin (the command parser rejects it
 * anyway, after the check).
 */
export function commandScope(argv: readonly string[]): Scope {
  const [verb, sub] = argv;
  if (argv.length === 0 || argv.includes('--help') || argv.includes('-h') || argv.includes('-V') || argv.includes('--version')) return 'ro';
  if (verb === undefined || verb.startsWith('-')) return 'admin';
  if (verb === 'pool') return sub !== undefined && ADMIN_POOL_VERBS.has(sub) ? 'admin' : sub !== undefined && RW_POOL_VERBS.has(sub) ? 'rw' : 'ro';
  if (verb === 'dataset') return sub !== undefined && RO_DATASET_VERBS.has(sub) ? 'ro' : 'rw';
  if (verb === 'send') return argv.some((a) => a === '--to' || a.startsWith('--to=')) ? 'rw' : 'ro';
  if (RO_VERBS.has(verb)) return 'ro';
  if (['put', 'write', 'truncate', 'rm', 'recv', 'receive', 'snapshot', 'rollback', 'bookmark', 'clone', 'hold', 'release'].includes(verb)) return 'rw';
  return 'admin';
}
