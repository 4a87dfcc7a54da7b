// Test support for the RPC transport tests: a real http(s) server on 127.0.0.1 with a
// WebSocketServer({noServer: true}) that hands each upgrade to serveConnection, a TransportEvents
// that records everything, a small cluster of keys and tokens, and a raw ws client that speaks the
// frames by hand. Used only by tests: src/node/rpc/*.test.ts and src/node/peer-clients.test.ts.

import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { expect } from 'vitest';
import { type ErrorCode, MirrorpoolError, hasCode } from '../../lib/index.js';
import { type MethodSpec, type RpcLimits, wsServerOptions } from './connection.js';
import type { AuthFailureReason, FrameErrorReason, TransportEvents } from './events.js';
import { type Frame, decodeFrame, encodeFrame } from './frames.js';
import type { ServerAuth } from './handshake.js';
import { type NodeKeys, generateNodeKeys } from './identity.js';
import { type RpcSession, serveConnection } from './server.js';
import { type Scope, createToken } from './tokens.js';

export class RecordingEvents implements TransportEvents {
  opened = 0;
  closed = 0;
  readonly requests: { method: string; code: string; seconds: number }[] = [];
  readonly authFailures: AuthFailureReason[] = [];
  readonly frameErrors: FrameErrorReason[] = [];
  bytesIn = 0;
  bytesOut = 0;

  connectionOpened(): void {
    this.opened++;
  }
  connectionClosed(): void {
    this.closed++;
  }
  request(method: string, code: string, seconds: number): void {
    this.requests.push({ method, code, seconds });
  }
  bytes(direction: 'in' | 'out', n: number): void {
    if (direction === 'in') this.bytesIn += n;
    else this.bytesOut += n;
  }
  authFailure(reason: AuthFailureReason): void {
    this.authFailures.push(reason);
  }
  frameError(reason: FrameErrorReason): void {
    this.frameErrors.push(reason);
  }
  codes(method?: string): string[] {
    return this.requests.filter((r) => method === undefined || r.method === method).map((r) => r.code);
  }
}

export interface TestCluster {
  readonly secret: string;
  readonly server: NodeKeys;
  readonly peer: NodeKeys;
  readonly auth: ServerAuth;
  token(scope: Scope, ttlMs?: number): string;
}

export function testCluster(): TestCluster {
  const secret = 'test-cluster-secret';
  const server = generateNodeKeys();
  const peer = generateNodeKeys();
  const members = new Map([[server.id, server.publicKey], [peer.id, peer.publicKey]]);
  return {
    secret, server, peer,
    auth: { keys: server, clusterSecret: secret, knownNodes: (id) => members.get(id), now: () => Date.now() },
    token: (scope, ttlMs = 60_000) => createToken(secret, scope, { ttlMs, now: Date.now() }),
  };
}

export interface TestServer {
  readonly url: string;
  readonly events: RecordingEvents;
  readonly sessions: RpcSession[];
  readonly sockets: WebSocket[];
  /** The first message each client sent (its AUTH frame). */
  readonly firstMessages: Buffer[];
  close(): Promise<void>;
}

export interface TestServerOptions {
  readonly auth: ServerAuth;
  readonly methods: Record<string, MethodSpec>;
  readonly limits?: Partial<RpcLimits>;
  readonly onInternalError?: (e: unknown, method: string) => void;
  readonly tls?: { readonly key: string; readonly cert: string };
}

export async function startServer(options: TestServerOptions): Promise<TestServer> {
  const events = new RecordingEvents();
  const sessions: RpcSession[] = [];
  const sockets: WebSocket[] = [];
  const firstMessages: Buffer[] = [];
  const wss = new WebSocketServer(wsServerOptions(options.limits));
  const server = options.tls === undefined ? http.createServer() : https.createServer({ key: options.tls.key, cert: options.tls.cert });
  server.on('upgrade', (req, socket, head) => {
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.push(ws);
      ws.once('message', (data: Buffer) => firstMessages.push(data));
      sessions.push(serveConnection(ws, {
        auth: options.auth,
        methods: (name) => (Object.hasOwn(options.methods, name) ? options.methods[name] : undefined),
        events,
        ...(options.limits !== undefined ? { limits: options.limits } : {}),
        ...(options.onInternalError !== undefined ? { onInternalError: options.onInternalError } : {}),
      }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `${options.tls === undefined ? 'ws' : 'wss'}://127.0.0.1:${port}`,
    events, sessions, sockets, firstMessages,
    close: async () => {
      for (const ws of sockets) ws.terminate();
      await Promise.all(sessions.map((s) => s.closed));
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A websocket that speaks frames by hand: for tests of what a misbehaving peer sends. */
export class RawPeer {
  readonly frames: Frame[] = [];
  readonly raw: Buffer[] = [];
  readonly closed: Promise<number>;
  private waiters: (() => void)[] = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      this.raw.push(data);
      try {
        this.frames.push(decodeFrame(data));
      } catch (e) {
        if (!hasCode(e, 'EPROTO')) throw e;
      }
      for (const wake of this.waiters.splice(0)) wake();
    });
    this.closed = new Promise((resolve) => ws.on('close', (code: number) => resolve(code)));
  }

  static async open(url: string, options: { maxPayload?: number } = {}): Promise<RawPeer> {
    const ws = new WebSocket(`${url}/rpc`, { maxPayload: options.maxPayload ?? 64 * 1024 * 1024 });
    const peer = new RawPeer(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return peer;
  }

  /** The next frame of `kind` (waits for it). */
  async next<K extends Frame['kind']>(kind: K, from = 0): Promise<Extract<Frame, { kind: K }>> {
    for (;;) {
      const found = this.frames.slice(from).find((f) => f.kind === kind);
      if (found !== undefined) return found as Extract<Frame, { kind: K }>;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  send(frame: Parameters<typeof encodeFrame>[0]): void {
    this.ws.send(encodeFrame(frame));
  }

  sendRaw(bytes: Uint8Array | string): void {
    this.ws.send(bytes);
  }

  /** Authenticates with a token like a client would (without checking the server). */
  async loginWithToken(token: string): Promise<void> {
    const hello = await this.next('hello');
    this.send({ kind: 'auth-token', token, nonce: hello.nonce, frameBytesMax: 64 * 1024 * 1024 });
    await this.next('welcome');
  }
}

export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** The error a promise rejects with (fails the test when it resolves). */
export async function rejection(p: Promise<unknown>): Promise<MirrorpoolError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof MirrorpoolError) return e;
    throw e;
  }
  throw new Error('expected a rejection');
}

/** Resolves once the event loop went round once: lets a slow consumer be slow without a timer. */
export const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Matches a MirrorpoolError with `code` in toThrow(). */
export const withCode = (code: ErrorCode): Error => expect.objectContaining({ name: 'MirrorpoolError', code }) as Error;

/**
 * Chunks of the given sizes, chunk i filled with the byte i + 1 (odd sizes make writes end
 * mid-frame); `whole` is all of them back to back, `chunks()` yields them, and `receives` is a
 * method answering whether its input was exactly `whole`.
 */
export function sizedChunks(sizes: readonly number[]): { whole: Buffer; chunks: () => AsyncGenerator<Uint8Array>; receives: MethodSpec } {
  const parts = sizes.map((n, i) => Buffer.alloc(n, i + 1));
  const whole = Buffer.concat(parts);
  return {
    whole,
    chunks: () => (async function* () {
      for (const part of parts) yield await Promise.resolve(part);
    })(),
    receives: {
      scope: 'rw',
      handler: async (_p, ctx) => {
        const got: Buffer[] = [];
        for await (const chunk of ctx.input) got.push(Buffer.from(chunk));
        return Buffer.concat(got).equals(whole);
      },
    },
  };
}
