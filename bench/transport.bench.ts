// The RPC transport (src/node/rpc) against the sockets under it, measured in this run on
// 127.0.0.1. Both ends of every connection live in one process (they share its event loop), for
// the RPC side and its peer alike. Figures:
//   1. a node→node stream, server→client: the handler's ctx.write of one reused 1 MiB buffer, the
//      caller's `output` callback consuming, node credentials (two node keys, a cluster secret,
//      knownNodes) — against a raw `net` socket pair pushing the same bytes in 1 MiB writes that
//      respect backpressure (write() returning false, then 'drain'): target >= 0.6x, stretch 0.8x;
//   2. the client→server stream (the direction ws masks) with bufferutil as installed, against
//      the same raw pair: target >= 0.5x; and that stream in a child process started with
//      WS_NO_BUFFER_UTIL=1 (ws masks in JavaScript), against the same child with bufferutil as
//      installed: <= 1x, informational — it records what masking costs without bufferutil;
//   3. the server→client stream over wss:// (a throwaway P-256 certificate made with openssl),
//      against raw `tls` sockets with the same certificate: target >= 0.85x;
//   4. sequential small calls (`echo`), one at a time, against a plain ws client whose server
//      echoes each small binary message back: calls (messages) per second, target >= 0.7x;
//   5. the same with 32 calls (messages) in flight: target >= 0.5x.
// Each side of a stream pair moves 1 GiB in all (fewer when the warm-up says the RPC side would
// take longer than ~20 s, never fewer than 256 MiB), each side of a call pair runs ~2 s in all.
// The sides alternate (A, B, A, B ...) over 8 short rounds and the median of each side counts, so
// noise on the machine hits both; the two children of figure 2 alternate the same way, after all
// rounds of the in-process pair (see streamPair).
// Every loop is bounded in count. TRANSPORT_FIGURES (a comma list of down, up, wss, calls; all
// when unset) runs a subset while iterating; reported figures come from full runs.
//
// @libp2p/tcp is not a dependency and is not measured: its transport is a raw TCP socket with a
// stream muxer and encryption (noise) on top, so the raw-TCP peer here is an upper bound of what
// it can reach on the same machine.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { createRequire } from 'node:module';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, sep } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { WebSocket, WebSocketServer } from 'ws';
import {
  type ClientCredentials, type MethodSpec, type RpcClient, type ServerAuth, connect, generateNodeKeys, serveConnection, wsServerOptions,
} from '../src/node/rpc/index.js';
import { type Figure, figure, fullGc, GiB, median, MiB } from './harness.js';

const SUITE = 'transport';
const HOST = '127.0.0.1';
/** Every stream write, RPC or raw, is this one buffer. */
const CHUNK = MiB;
/** Bytes each side of a stream pair moves in all, split over STREAM_ROUNDS runs. */
const STREAM_BYTES = GiB;
const STREAM_BYTES_MIN = 256 * MiB;
/** When the RPC side would take longer than this for STREAM_BYTES, both sides move fewer. */
const STREAM_MS_BUDGET = 20_000;
/** Also the probe that sizes the streams. */
const WARMUP_BYTES = 128 * MiB;
const CHILD_WARMUP_BYTES = 64 * MiB;
// Many short rounds rather than a few long ones: load from other processes comes in bursts of a
// second or two, and short alternating runs put both sides of a pair under the same bursts.
const STREAM_ROUNDS = 8;
const CALL_ROUNDS = 8;
/** Per round and side: ~2 s in all. */
const CALL_MS = 250;
const CALLS_MAX = 400_000;
const WARMUP_CALLS = 2_000;
const INFLIGHT = 32;
/** Small enough to be a control message, about the size of an echo REQ frame. */
const PING = Buffer.alloc(16, 0x5a);
const DEADLINE_MS = 600_000;
const CHILD_TIMEOUT_MS = 300_000;
const CHILD_FLAG = '--transport-child-push';
/** This file once built (dist/bench/transport.bench.js): the child runs it with CHILD_FLAG. */
const SELF = fileURLToPath(import.meta.url);
const requireHere = createRequire(import.meta.url);
const ONLY = process.env['TRANSPORT_FIGURES']?.split(',').map((s) => s.trim()).filter((s) => s !== '');
const wanted = (name: 'down' | 'up' | 'wss' | 'calls'): boolean => ONLY === undefined || ONLY.length === 0 || ONLY.includes(name);

const BUF = Buffer.alloc(CHUNK);
for (let i = 0; i < CHUNK; i++) BUF[i] = (i * 2654435761) >>> 24;

function log(line: string): void {
  process.stderr.write(`  transport: ${line}\n`);
}

const mibPerSecond = (bytes: number, ms: number): number => bytes / MiB / (ms / 1000);

/** Whether ws loaded bufferutil (it decides once, when it is first imported). */
function bufferutilLoaded(): boolean {
  return Object.keys(requireHere.cache).some((k) => k.includes(`${sep}bufferutil${sep}`));
}

/** Bytes per run of a stream pair, from the warm-up of its RPC side (WARMUP_BYTES in `ms`). */
function runBytes(warmupMs: number): number {
  const unit = STREAM_ROUNDS * CHUNK;
  const fit = Math.floor((WARMUP_BYTES / warmupMs) * STREAM_MS_BUDGET / unit) * unit;
  return Math.max(STREAM_BYTES_MIN, Math.min(STREAM_BYTES, fit)) / STREAM_ROUNDS;
}

// ---- Servers ----------------------------------------------------------------------------------

interface Listener {
  readonly port: number;
  close(): Promise<void>;
}

/** Closes what was opened, last first; failures are reported, not thrown over the real error. */
class Resources {
  private readonly closers: (() => Promise<void>)[] = [];

  add<T extends { close(): Promise<void> }>(r: T): T {
    this.closers.push(() => r.close());
    return r;
  }

  async close(): Promise<void> {
    for (const close of this.closers.splice(0).reverse()) {
      try {
        await close();
      } catch (e) {
        log(`cleanup failed: ${String(e)}`);
      }
    }
  }
}

/** An http(s) server on 127.0.0.1 handing each websocket upgrade to `onSocket` (as the daemon does). */
async function wsListener(server: http.Server | https.Server, onSocket: (ws: WebSocket) => Promise<void> | void): Promise<Listener> {
  const wss = new WebSocketServer(wsServerOptions());
  const sockets = new Set<WebSocket>();
  const ended: Promise<void>[] = [];
  server.on('upgrade', (req: http.IncomingMessage, socket, head: Buffer) => {
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.add(ws);
      ws.on('close', () => sockets.delete(ws));
      const done = onSocket(ws);
      if (done !== undefined) ended.push(done);
    });
  });
  server.listen(0, HOST);
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    port,
    close: async () => {
      for (const ws of sockets) ws.terminate();
      await Promise.all(ended);
      await new Promise<void>((done) => wss.close(() => done()));
      server.closeAllConnections();
      await new Promise<void>((done, fail) => server.close((e) => (e === undefined ? done() : fail(e))));
    },
  };
}

interface TlsFiles {
  readonly key: string;
  readonly cert: string;
}

/** A self-signed P-256 certificate for 127.0.0.1, valid one day, made in `dir`. */
async function makeCertificate(dir: string): Promise<TlsFiles> {
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert,
    ], { stdio: 'ignore' });
  } catch (e) {
    throw new Error(`bench: openssl could not make a test certificate (is it installed?): ${String(e)}`);
  }
  return { key: await readFile(key, 'utf8'), cert: await readFile(cert, 'utf8') };
}

interface Cluster {
  readonly auth: ServerAuth;
  readonly credentials: ClientCredentials;
}

/** Two nodes of one cluster: the server and the peer that connects to it. */
function cluster(): Cluster {
  const clusterSecret = randomBytes(32).toString('base64url');
  const server = generateNodeKeys();
  const peer = generateNodeKeys();
  const members = new Map([[server.id, server.publicKey], [peer.id, peer.publicKey]]);
  return {
    auth: { keys: server, clusterSecret, knownNodes: (id) => members.get(id), now: () => Date.now() },
    credentials: { kind: 'node', keys: peer, clusterSecret },
  };
}

function byteCount(params: unknown): number {
  const bytes = (params as { bytes?: unknown } | null)?.bytes;
  if (typeof bytes !== 'number' || !Number.isSafeInteger(bytes) || bytes <= 0 || bytes % CHUNK !== 0 || bytes > 4 * GiB) {
    throw new Error(`bench: bad byte count ${String(bytes)}`);
  }
  return bytes;
}

const METHODS: Record<string, MethodSpec> = {
  /** Streams `bytes` to the caller, one reused buffer at a time. */
  pull: {
    scope: 'ro',
    handler: async (params, ctx) => {
      const bytes = byteCount(params);
      for (let i = 0; i < bytes / CHUNK; i++) await ctx.write(BUF);
      return { bytes };
    },
  },
  /** Takes the caller's stream and says how many bytes it was. */
  push: {
    scope: 'rw',
    handler: async (_params, ctx) => {
      let bytes = 0;
      for await (const chunk of ctx.input) bytes += chunk.length;
      return { bytes };
    },
  },
  echo: { scope: 'ro', handler: async (params) => params },
};

async function rpcServer(auth: ServerAuth, tlsFiles?: TlsFiles): Promise<Listener & { readonly url: string }> {
  const server = tlsFiles === undefined ? http.createServer() : https.createServer({ key: tlsFiles.key, cert: tlsFiles.cert });
  const listener = await wsListener(server, (ws) => serveConnection(ws, {
    auth, methods: (name) => (Object.hasOwn(METHODS, name) ? METHODS[name] : undefined),
  }).closed);
  return { ...listener, url: `${tlsFiles === undefined ? 'ws' : 'wss'}://${HOST}:${listener.port}` };
}

// ---- The RPC side -----------------------------------------------------------------------------

/** Server→client: wall ms of a `pull` call of `bytes`. */
async function rpcPull(client: RpcClient, bytes: number): Promise<number> {
  let got = 0;
  const start = performance.now();
  const result = await client.call<{ bytes: number }>('pull', { bytes }, {
    deadlineMs: DEADLINE_MS,
    output: (chunk) => {
      got += chunk.length;
    },
  });
  const ms = performance.now() - start;
  if (got !== bytes || result.bytes !== bytes) throw new Error(`bench: pull of ${bytes} bytes delivered ${got}`);
  return ms;
}

async function* chunks(bytes: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes / CHUNK; i++) yield BUF;
}

/** Client→server: wall ms of a `push` call of `bytes`. */
async function rpcPush(client: RpcClient, bytes: number): Promise<number> {
  const start = performance.now();
  const result = await client.call<{ bytes: number }>('push', null, { deadlineMs: DEADLINE_MS, input: chunks(bytes) });
  const ms = performance.now() - start;
  if (result.bytes !== bytes) throw new Error(`bench: push of ${bytes} bytes delivered ${result.bytes}`);
  return ms;
}

// ---- The raw peers ----------------------------------------------------------------------------

interface RawPair {
  /** Wall ms for `bytes` written by one end in CHUNK writes (with backpressure) to arrive at the other. */
  push(from: 'server' | 'client', bytes: number): Promise<number>;
  close(): Promise<void>;
}

/** Counts what arrives on `socket`; `expect(n)` resolves once exactly n more bytes came. */
function counter(socket: net.Socket): { expect(bytes: number): Promise<void> } {
  let got = 0;
  let want = 0;
  let waiter: { resolve(): void; reject(e: unknown): void } | undefined;
  socket.on('data', (d: Buffer) => {
    got += d.length;
    if (got > want) waiter?.reject(new Error(`bench: raw socket got ${got} bytes, expected ${want}`));
    else if (got === want) waiter?.resolve();
  });
  socket.on('error', (e) => waiter?.reject(e));
  socket.on('close', () => waiter?.reject(new Error('bench: raw socket closed')));
  return {
    expect: (bytes) => {
      got = 0;
      want = bytes;
      return new Promise((resolve, reject) => (waiter = { resolve, reject }));
    },
  };
}

async function writeAll(socket: net.Socket, bytes: number): Promise<void> {
  for (let i = 0; i < bytes / CHUNK; i++) {
    if (!socket.write(BUF)) await once(socket, 'drain');
  }
}

/** One connected pair of plain TCP or TLS sockets on 127.0.0.1. */
async function rawPair(tlsFiles?: TlsFiles): Promise<RawPair> {
  const server = tlsFiles === undefined ? net.createServer() : tls.createServer({ key: tlsFiles.key, cert: tlsFiles.cert });
  const accepted = new Promise<net.Socket>((resolve) => server.once(tlsFiles === undefined ? 'connection' : 'secureConnection', resolve));
  server.listen(0, HOST);
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const client = tlsFiles === undefined ? net.connect(port, HOST) : tls.connect({ host: HOST, port, ca: tlsFiles.cert });
  await once(client, tlsFiles === undefined ? 'connect' : 'secureConnect');
  const serverSide = await accepted;
  // ws does the same to its sockets.
  client.setNoDelay(true);
  serverSide.setNoDelay(true);
  const ends = { server: { socket: serverSide, count: counter(serverSide) }, client: { socket: client, count: counter(client) } };
  return {
    push: async (from, bytes) => {
      const [src, dst] = from === 'server' ? [ends.server, ends.client] : [ends.client, ends.server];
      const start = performance.now();
      const arrived = dst.count.expect(bytes);
      await Promise.all([writeAll(src.socket, bytes), arrived]);
      return performance.now() - start;
    },
    close: async () => {
      client.destroy();
      serverSide.destroy();
      await new Promise<void>((done, fail) => server.close((e) => (e === undefined ? done() : fail(e))));
    },
  };
}

interface RawEcho {
  /** Sends PING and resolves when it came back (messages come back in order). */
  readonly request: () => Promise<void>;
  close(): Promise<void>;
}

/** A plain ws server that echoes every message, and one plain ws client connected to it. */
async function rawEcho(): Promise<RawEcho> {
  const listener = await wsListener(http.createServer(), (ws) => {
    ws.on('message', (data: Buffer, isBinary: boolean) => ws.send(data, { binary: isBinary }));
  });
  const ws = new WebSocket(`ws://${HOST}:${listener.port}/`, { perMessageDeflate: false, skipUTF8Validation: true });
  await once(ws, 'open');
  const waiters: { resolve(): void; reject(e: unknown): void }[] = [];
  ws.on('message', () => waiters.shift()?.resolve());
  ws.on('close', () => {
    for (const w of waiters.splice(0)) w.reject(new Error('bench: echo socket closed'));
  });
  return {
    request: () => new Promise<void>((resolve, reject) => {
      waiters.push({ resolve, reject });
      ws.send(PING);
    }),
    close: async () => {
      const closed = once(ws, 'close');
      ws.close();
      await closed;
      await listener.close();
    },
  };
}

/** Requests per second with `inflight` of them outstanding, for ~`ms` and at most CALLS_MAX. */
async function callRate(request: () => Promise<void>, inflight: number, ms: number): Promise<number> {
  let started = 0;
  let done = 0;
  const start = performance.now();
  let stop = false;
  const worker = async (): Promise<void> => {
    while (!stop && started < CALLS_MAX) {
      started++;
      await request();
      done++;
      if (performance.now() - start >= ms) stop = true;
    }
  };
  await Promise.all(Array.from({ length: inflight }, worker));
  return done / ((performance.now() - start) / 1000);
}

async function warmCalls(request: () => Promise<void>): Promise<void> {
  for (let i = 0; i < WARMUP_CALLS; i++) await request();
}

// ---- The children with and without bufferutil ------------------------------------------------
// Both masking variants run the same way, each in a fresh process with only this file loaded:
// the parent has whatever run.js imported for other suites, which moves stream figures by itself.

interface ChildReport {
  readonly mibPerSecond: number;
  readonly bufferutil: boolean;
}

/** Child mode: the client→server stream of `bytes`, after a warm-up; prints a ChildReport. */
async function childPush(bytes: number): Promise<void> {
  const c = cluster();
  const resources = new Resources();
  try {
    const server = resources.add(await rpcServer(c.auth));
    const client = resources.add(await connect(server.url, c.credentials));
    await rpcPush(client, CHILD_WARMUP_BYTES);
    fullGc();
    const ms = await rpcPush(client, bytes);
    const report: ChildReport = { mibPerSecond: mibPerSecond(bytes, ms), bufferutil: bufferutilLoaded() };
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } finally {
    await resources.close();
  }
}

/**
 * Runs childPush in a fresh process — with this process's environment (bufferutil as installed)
 * or with WS_NO_BUFFER_UTIL=1 — and returns its MiB/s.
 */
async function pushInChild(bufferutil: boolean, bytes: number): Promise<number> {
  const env = bufferutil ? process.env : { ...process.env, WS_NO_BUFFER_UTIL: '1' };
  const child = spawn(process.execPath, [SELF, CHILD_FLAG, String(bytes)], { env, stdio: ['ignore', 'pipe', 'inherit'], timeout: CHILD_TIMEOUT_MS });
  let out = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => (out += d));
  const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
  const which = bufferutil ? 'bufferutil' : 'WS_NO_BUFFER_UTIL=1';
  if (code !== 0) throw new Error(`bench: the ${which} child failed (${code ?? signal})`);
  const report = JSON.parse(out) as ChildReport;
  if (report.bufferutil !== (bufferutil && bufferutilLoaded())) throw new Error(`bench: the ${which} child masked the other way (${out.trim()})`);
  if (typeof report.mibPerSecond !== 'number' || !(report.mibPerSecond > 0)) throw new Error(`bench: bad child report ${out}`);
  return report.mibPerSecond;
}

// ---- The suite --------------------------------------------------------------------------------

interface Pair {
  readonly bytes: number;
  readonly rpc: number;
  readonly raw: number;
}

type Extras = Readonly<Record<string, (bytes: number) => Promise<number>>>;

/**
 * Warms both sides up (the RPC warm-up sizes the stream), then runs them interleaved; medians in
 * MiB/s. Then `extras` (already in MiB/s) run interleaved among themselves, STREAM_ROUNDS times;
 * medians too. The extras are child processes, and a run in this process right after a child
 * exits was measured at half speed (the RPC side; the next run is back to normal): run between
 * the rounds, they taxed whichever side came next, which was always the RPC side.
 */
async function streamPair(what: string, rpc: (bytes: number) => Promise<number>, raw: (bytes: number) => Promise<number>,
  extras: Extras = {}): Promise<Pair & { readonly extras: Readonly<Record<string, number>> }> {
  const warmMs = await rpc(WARMUP_BYTES);
  await raw(WARMUP_BYTES);
  const bytes = runBytes(warmMs);
  log(`${what}: warm-up ${mibPerSecond(WARMUP_BYTES, warmMs).toFixed(0)} MiB/s; ${STREAM_ROUNDS} runs of ${bytes / MiB} MiB per side`);
  const rpcRates: number[] = [];
  const rawRates: number[] = [];
  for (let round = 0; round < STREAM_ROUNDS; round++) {
    fullGc();
    rpcRates.push(mibPerSecond(bytes, await rpc(bytes)));
    fullGc();
    rawRates.push(mibPerSecond(bytes, await raw(bytes)));
    log(`${what} round ${round + 1}: rpc ${rpcRates[round]!.toFixed(0)} MiB/s, raw ${rawRates[round]!.toFixed(0)} MiB/s`);
  }
  const extraRates = new Map(Object.keys(extras).map((name) => [name, [] as number[]]));
  for (let round = 0; round < STREAM_ROUNDS && extraRates.size > 0; round++) {
    const line: string[] = [];
    for (const [name, measure] of Object.entries(extras)) {
      const r = await measure(bytes);
      extraRates.get(name)!.push(r);
      line.push(`${name} ${r.toFixed(0)} MiB/s`);
    }
    log(`${what} round ${round + 1}: ${line.join(', ')}`);
  }
  const medians = Object.fromEntries([...extraRates].map(([name, rates]) => [name, median(rates)]));
  return { bytes: bytes * STREAM_ROUNDS, rpc: median(rpcRates), raw: median(rawRates), extras: medians };
}

async function callPair(what: string, rpc: () => Promise<void>, raw: () => Promise<void>, inflight: number): Promise<{ rpc: number; raw: number }> {
  await warmCalls(rpc);
  await warmCalls(raw);
  const rpcRates: number[] = [];
  const rawRates: number[] = [];
  for (let round = 0; round < CALL_ROUNDS; round++) {
    rpcRates.push(await callRate(rpc, inflight, CALL_MS));
    rawRates.push(await callRate(raw, inflight, CALL_MS));
    log(`${what} round ${round + 1}: rpc ${rpcRates[round]!.toFixed(0)}/s, raw ws ${rawRates[round]!.toFixed(0)}/s`);
  }
  return { rpc: median(rpcRates), raw: median(rawRates) };
}

const size = (bytes: number): string => (bytes % GiB === 0 ? `${bytes / GiB} GiB` : `${bytes / MiB} MiB`);

export async function run(): Promise<Figure[]> {
  const figures: Figure[] = [];
  const c = cluster();
  const masking = bufferutilLoaded() ? 'bufferutil' : 'bufferutil not installed';
  log(`ws masks with ${masking}`);
  const dir = await mkdtemp(join(tmpdir(), 'mirrorpool-bench-transport-'));
  try {
    // 1 and 2: plain ws:// against plain TCP.
    if (wanted('down') || wanted('up')) {
      const resources = new Resources();
      try {
        const server = resources.add(await rpcServer(c.auth));
        const client = resources.add(await connect(server.url, c.credentials));
        const raw = resources.add(await rawPair());
        if (wanted('down')) {
          const down = await streamPair('server→client', (n) => rpcPull(client, n), (n) => raw.push('server', n));
          figures.push(figure({
            suite: SUITE, name: `node→node stream, server→client, ${size(down.bytes)} per side (stretch 0.8x)`,
            value: down.rpc, unit: 'MiB/s', versus: { label: 'raw TCP', value: down.raw }, target: { op: '>=', ratio: 0.6 },
          }));
        }
        if (wanted('up')) {
          const up = await streamPair('client→server', (n) => rpcPush(client, n), (n) => raw.push('client', n), {
            [`child, ${masking}`]: (n) => pushInChild(true, n),
            'child, WS_NO_BUFFER_UTIL=1': (n) => pushInChild(false, n),
          });
          figures.push(figure({
            suite: SUITE, name: `node→node stream, client→server (masked), ${masking}, ${size(up.bytes)} per side`,
            value: up.rpc, unit: 'MiB/s', versus: { label: 'raw TCP', value: up.raw }, target: { op: '>=', ratio: 0.5 },
          }));
          figures.push(figure({
            suite: SUITE, name: `client→server, WS_NO_BUFFER_UTIL=1 (child process, informational), ${size(up.bytes)} per side`,
            value: up.extras['child, WS_NO_BUFFER_UTIL=1']!, unit: 'MiB/s',
            versus: { label: `${masking}, child process`, value: up.extras[`child, ${masking}`]! }, target: { op: '<=', ratio: 1 },
          }));
        }
      } finally {
        await resources.close();
      }
    }
    // 3: wss:// against plain TLS with the same certificate.
    if (wanted('wss')) {
      const files = await makeCertificate(dir);
      const resources = new Resources();
      try {
        const server = resources.add(await rpcServer(c.auth, files));
        const client = resources.add(await connect(server.url, c.credentials, { ca: files.cert }));
        const raw = resources.add(await rawPair(files));
        const down = await streamPair('wss:// server→client', (n) => rpcPull(client, n), (n) => raw.push('server', n));
        figures.push(figure({
          suite: SUITE, name: `node→node stream over wss://, server→client, ${size(down.bytes)} per side`,
          value: down.rpc, unit: 'MiB/s', versus: { label: 'raw TLS', value: down.raw }, target: { op: '>=', ratio: 0.85 },
        }));
      } finally {
        await resources.close();
      }
    }
    // 4 and 5: small calls against a plain ws echo.
    if (wanted('calls')) {
      const resources = new Resources();
      try {
        const server = resources.add(await rpcServer(c.auth));
        const client = resources.add(await connect(server.url, c.credentials));
        const echo = resources.add(await rawEcho());
        let n = 0;
        const call = async (): Promise<void> => {
          const sent = ++n;
          const got = await client.call<{ n: number }>('echo', { n: sent });
          if (got.n !== sent) throw new Error(`bench: echo answered ${got.n} to ${sent}`);
        };
        const one = await callPair('sequential', call, echo.request, 1);
        figures.push(figure({
          suite: SUITE, name: 'small calls, one at a time (echo)',
          value: one.rpc, unit: 'calls/s', versus: { label: 'raw ws ping-pong', value: one.raw }, target: { op: '>=', ratio: 0.7 },
        }));
        const many = await callPair(`${INFLIGHT} in flight`, call, echo.request, INFLIGHT);
        figures.push(figure({
          suite: SUITE, name: `small calls, ${INFLIGHT} in flight (echo)`,
          value: many.rpc, unit: 'calls/s', versus: { label: `raw ws echo, ${INFLIGHT} in flight`, value: many.raw }, target: { op: '>=', ratio: 0.5 },
        }));
      } finally {
        await resources.close();
      }
    }
    return figures;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// `node dist/bench/transport.bench.js --transport-child-push <bytes>`: a child of figure 2.
if (process.argv[1] !== undefined && resolve(process.argv[1]) === SELF && process.argv[2] === CHILD_FLAG) {
  await childPush(byteCount({ bytes: Number(process.argv[3]) }));
}
