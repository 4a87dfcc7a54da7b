// The client end of an RPC connection: connect() opens ws:// or wss://, checks the server's HELLO,
// authenticates with a token or node credentials, checks the server's proof, and returns an
// RpcClient whose calls carry deadlines, cancellation and streams both ways. Invariants: every
// call settles exactly once (result, server error, deadline, abort, or connection loss); output
// chunks reach the caller in order and before the call resolves; credentials are sent only to a
// server whose key matches its id (and expectNodeId). Used by the CLI, the client library and the
// daemon's links to its peers.

import { WebSocket } from 'ws';
import { MirrorpoolError, limits as LIMITS, mpError } from '../../lib/index.js';
import { Deadlines, type RpcLimits, Wire, type WireOwner, resolveLimits } from './connection.js';
import { type FrameErrorReason, NO_EVENTS, type TransportEvents } from './events.js';
import { type Frame, ID_MAX } from './frames.js';
import { type AuthFrame, type ClientCredentials, type HelloFrame, authError, checkHello, checkWelcome, makeAuth } from './handshake.js';
import { checkNodeKeys } from './identity.js';
import { InStream, OutStream } from './streams.js';

export interface ConnectOptions {
  /** PEM for wss:// with a private CA. */
  readonly ca?: string | Buffer;
  readonly limits?: Partial<RpcLimits>;
  /** Refuse (EAUTH) a server that is not this node. */
  readonly expectNodeId?: string;
  /** Connect + handshake; default 10 s. */
  readonly timeoutMs?: number;
  readonly events?: TransportEvents;
}

export interface CallOptions {
  readonly deadlineMs?: number;
  /** Abort → CANCEL frame, the promise rejects ECANCELED. */
  readonly signal?: AbortSignal;
  /**
   * Streamed to the handler's ctx.input with backpressure; each chunk is copied before the next is
   * asked for (the source may reuse its buffer).
   */
  readonly input?: AsyncIterable<Uint8Array>;
  /** Receives the handler's ctx.write chunks in order; credit is granted after it resolves. */
  readonly output?: (chunk: Uint8Array) => Promise<void> | void;
}

export interface RpcClient {
  /** The server node's identity as it proved it. */
  readonly server: { readonly id: string; readonly publicKey: string };
  /** Rejects with the MirrorpoolError the server sent. */
  call<T = unknown>(method: string, params?: unknown, options?: CallOptions): Promise<T>;
  close(): Promise<void>;
  readonly closed: Promise<void>;
}

const CONNECT_TIMEOUT_MS_DEFAULT = 10_000;
/** The client gives the server this long past the deadline to answer ETIMEDOUT itself. */
const DEADLINE_GRACE_MS = 500;

interface ClientCall {
  readonly id: number;
  readonly method: string;
  readonly startedMs: number;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
  readonly output: InStream;
  /** Whether the caller passed an output callback (else output is dropped as it comes). */
  readonly reading: boolean;
  readonly input: OutStream | undefined;
  readonly deadlineMs: number;
  /** performance.now() at which the client gives up waiting: the deadline plus the grace. */
  readonly expiresAt: number;
  unlisten: () => void;
  result: { readonly value: unknown } | undefined;
  settled: boolean;
}

const noop = (): void => undefined;

class ClientConnection implements WireOwner {
  readonly wire: Wire;
  readonly ready: Promise<RpcClient>;
  private state: 'connecting' | 'hello' | 'welcome' | 'open' | 'closed' = 'connecting';
  private hello: HelloFrame | undefined;
  private auth: AuthFrame | undefined;
  private connectError: MirrorpoolError | undefined;
  private closeError: MirrorpoolError | undefined;
  private readonly calls = new Map<number, ClientCall>();
  private lastId = 0;
  private readonly deadlines = new Deadlines((now) => this.expire(now));
  private readonly timer: NodeJS.Timeout;
  private settleReady!: { resolve: (c: RpcClient) => void; reject: (e: unknown) => void };

  constructor(ws: WebSocket, private readonly url: string, private readonly credentials: ClientCredentials,
    private readonly options: ConnectOptions, private readonly limits: RpcLimits, private readonly events: TransportEvents) {
    this.ready = new Promise((resolve, reject) => (this.settleReady = { resolve, reject }));
    this.wire = new Wire(ws, limits, events, this);
    ws.on('open', () => {
      this.state = 'hello';
      events.connectionOpened();
    });
    const timeoutMs = options.timeoutMs ?? CONNECT_TIMEOUT_MS_DEFAULT;
    this.timer = setTimeout(() => {
      this.connectError ??= mpError('ETIMEDOUT', `connecting to ${url} took longer than ${timeoutMs} ms`, { url, timeoutMs });
      this.wire.terminate();
    }, timeoutMs);
  }

  frame(f: Frame): void {
    if (f.kind === 'fail') {
      const error = new MirrorpoolError(f.error.code, f.error.message, f.error.details);
      if (this.state !== 'open') this.connectError ??= error;
      return this.wire.remoteFailure(error);
    }
    if (this.state === 'hello' && f.kind === 'hello') return this.onHello(f);
    if (this.state === 'welcome' && f.kind === 'welcome') return this.onWelcome(f);
    if (this.state !== 'open') return this.protocolError('bad-shape', `unexpected ${f.kind} frame during the handshake`);
    switch (f.kind) {
      case 'result': return this.onResult(f.id, f.result);
      case 'error': return this.onError(f.id, new MirrorpoolError(f.error.code, f.error.message, f.error.details));
      case 'data': return this.onData(f.id, f.payload);
      case 'credit': return this.onCredit(f.id, f.bytes);
      default: return this.protocolError('bad-shape', `unexpected ${f.kind} frame from a server`);
    }
  }

  badFrame(error: MirrorpoolError, reason: FrameErrorReason): void {
    this.events.frameError(reason);
    if (this.state !== 'open') this.connectError ??= error;
    this.wire.fail(error);
  }

  socketError(error: Error): void {
    if (this.state === 'connecting') this.connectError ??= connectFailure(error, this.url);
  }

  closed(error: MirrorpoolError): void {
    clearTimeout(this.timer);
    this.deadlines.stop();
    const wasOpen = this.state !== 'connecting';
    const handshaking = this.state !== 'open';
    this.state = 'closed';
    this.closeError = error;
    if (handshaking) {
      this.settleReady.reject(this.connectError ?? (error.code === 'ECANCELED'
        ? mpError('EIO', `connection to ${this.url} closed during the handshake`, { url: this.url })
        : error));
    }
    for (const call of [...this.calls.values()]) this.finish(call, error);
    if (wasOpen) this.events.connectionClosed();
  }

  private protocolError(reason: FrameErrorReason, message: string): void {
    this.badFrame(mpError('EPROTO', message, { reason }), reason);
  }

  private onHello(hello: HelloFrame): void {
    try {
      checkHello(hello, this.options.expectNodeId);
    } catch (e) {
      return this.handshakeFailed(e);
    }
    this.hello = hello;
    this.wire.peerFrameBytesMax = hello.frameBytesMax;
    this.auth = makeAuth(this.credentials, hello, this.limits.frameBytesMax);
    this.state = 'welcome';
    this.wire.send(this.auth);
  }

  private onWelcome(welcome: Extract<Frame, { kind: 'welcome' }>): void {
    const hello = this.hello!;
    try {
      checkWelcome(this.credentials, hello, this.auth!, welcome);
    } catch (e) {
      return this.handshakeFailed(e);
    }
    clearTimeout(this.timer);
    this.state = 'open';
    this.settleReady.resolve({
      server: { id: hello.nodeId, publicKey: hello.publicKey },
      call: <T>(method: string, params?: unknown, options?: CallOptions) => this.call(method, params, options ?? {}) as Promise<T>,
      close: () => {
        this.wire.close(1000, 'client closed');
        return this.wire.closed;
      },
      closed: this.wire.closed,
    });
  }

  private handshakeFailed(e: unknown): void {
    if (!(e instanceof MirrorpoolError) || e.code !== 'EAUTH') throw e;
    const reason = e.details.reason;
    if (reason === 'node-signature' || reason === 'cluster-secret' || reason === 'unknown-node') this.events.authFailure(reason);
    this.connectError ??= e;
    this.wire.fail(e, 1008);
  }

  private call(method: string, params: unknown, options: CallOptions): Promise<unknown> {
    if (this.closeError !== undefined) return Promise.reject(this.closeError);
    const deadlineMs = options.deadlineMs ?? this.limits.deadlineMsDefault;
    if (!Number.isSafeInteger(deadlineMs) || deadlineMs < 1 || deadlineMs > this.limits.deadlineMsMax) {
      return Promise.reject(mpError('EINVAL', `deadlineMs must be an integer in [1, ${this.limits.deadlineMsMax}]`, { deadlineMs }));
    }
    if (typeof method !== 'string' || method.length === 0 || method.length > LIMITS.rpcMethodNameLengthMax) {
      return Promise.reject(mpError('EINVAL', `method must be a name of 1 to ${LIMITS.rpcMethodNameLengthMax} characters`, { method: String(method).slice(0, 200) }));
    }
    if (options.signal?.aborted === true) return Promise.reject(canceled(method));
    if (this.lastId >= ID_MAX) return Promise.reject(mpError('EBUSY', 'this connection used up its request ids; reconnect', { method }));
    const id = this.lastId + 1;
    const window = this.limits.streamWindowBytes;
    try {
      // The whole output window goes with the request: no CREDIT frame follows it.
      this.wire.send({ kind: 'req', id, method, params, deadlineMs, hasInput: options.input !== undefined, outputCredit: window });
    } catch (e) {
      if (e instanceof MirrorpoolError) return Promise.reject(e);
      throw e;
    }
    this.lastId = id;
    return new Promise((resolve, reject) => {
      const startedMs = performance.now();
      const reading = options.output !== undefined;
      const call: ClientCall = {
        id, method, startedMs, resolve, reject, result: undefined, settled: false, unlisten: noop,
        output: new InStream(this.wire, id, window, !reading), reading,
        input: options.input !== undefined ? new OutStream(this.wire, id) : undefined,
        deadlineMs, expiresAt: startedMs + deadlineMs + DEADLINE_GRACE_MS,
      };
      this.start(call, options);
    });
  }

  private start(call: ClientCall, options: CallOptions): void {
    this.calls.set(call.id, call);
    call.output.open(true);
    this.deadlines.add(call.expiresAt);
    const signal = options.signal;
    if (signal !== undefined) {
      const onAbort = (): void => this.abandon(call, canceled(call.method));
      signal.addEventListener('abort', onAbort, { once: true });
      call.unlisten = () => signal.removeEventListener('abort', onAbort);
    }
    if (options.output !== undefined) this.pumpOutput(call, options.output);
    if (options.input !== undefined) this.pumpInput(call, options.input);
  }

  /** Abandons the calls whose deadline (plus grace) passed; the earliest deadline left. */
  private expire(now: number): number {
    let next = Infinity;
    for (const call of [...this.calls.values()]) {
      if (call.expiresAt <= now) {
        const { method, deadlineMs } = call;
        this.abandon(call, mpError('ETIMEDOUT', `${method} did not answer within ${deadlineMs} ms`, { method, deadlineMs }));
      } else if (call.expiresAt < next) {
        next = call.expiresAt;
      }
    }
    return next;
  }

  private pumpOutput(call: ClientCall, sink: (chunk: Uint8Array) => Promise<void> | void): void {
    const output = call.output;
    const run = async (): Promise<void> => {
      for (;;) {
        let chunk = output.take();
        if (chunk === undefined) {
          const next = await output.next();
          if (next.done === true) return;
          chunk = next.value;
        }
        const pending = sink(chunk);
        if (pending !== undefined) await pending;
      }
    };
    run().then(() => {
      if (call.result !== undefined) this.finish(call, undefined, call.result.value);
    }, (e: unknown) => this.abandon(call, e));
  }

  private pumpInput(call: ClientCall, input: AsyncIterable<Uint8Array>): void {
    const stream = call.input!;
    const run = async (): Promise<void> => {
      for await (const chunk of input) {
        if (!(chunk instanceof Uint8Array)) throw mpError('EINVAL', `input of ${call.method} yielded something other than a Uint8Array`);
        await stream.write(chunk);
      }
      if (!call.settled) this.wire.send({ kind: 'end', id: call.id });
    };
    run().then(noop, (e: unknown) => this.abandon(call, e));
  }

  /** Ends a call on this side: tells the server (CANCEL) unless it already answered. */
  private abandon(call: ClientCall, error: unknown): void {
    if (call.settled) return;
    if (call.result === undefined) this.wire.send({ kind: 'cancel', id: call.id });
    this.finish(call, error);
  }

  private finish(call: ClientCall, error: unknown, value?: unknown): void {
    if (call.settled) return;
    call.settled = true;
    call.unlisten();
    this.calls.delete(call.id);
    const ended = (): MirrorpoolError => mpError('ECANCELED', `call ${call.method} ended`, { method: call.method });
    call.output.fail(ended);
    call.input?.end(ended);
    const code = error === undefined ? 'OK' : error instanceof MirrorpoolError ? error.code : 'EIO';
    this.events.request(call.method, code, (performance.now() - call.startedMs) / 1000);
    if (error === undefined) call.resolve(value);
    else call.reject(error);
  }

  private live(id: number, what: string): ClientCall | undefined {
    const call = this.calls.get(id);
    if (call === undefined && id > this.lastId) this.protocolError('unknown-stream', `${what} for request ${id}, which was never sent`);
    return call;
  }

  private onResult(id: number, value: unknown): void {
    const call = this.live(id, 'RESULT');
    if (call === undefined || call.result !== undefined) return;
    call.result = { value };
    call.output.end();
    // Without a reader the output is already dropped: nothing to wait for.
    if (!call.reading) this.finish(call, undefined, value);
  }

  private onError(id: number, error: MirrorpoolError): void {
    const call = this.live(id, 'ERROR');
    if (call === undefined || call.result !== undefined) return;
    this.finish(call, error);
  }

  private onData(id: number, payload: Uint8Array): void {
    const call = this.live(id, 'DATA');
    if (call === undefined) return;
    const pushed = call.output.push(payload);
    if (pushed === 'window-exceeded') this.protocolError('window-exceeded', `DATA for request ${id} beyond the granted window`);
    else if (pushed === 'ended') this.protocolError('unknown-stream', `DATA for request ${id} after its RESULT`);
  }

  private onCredit(id: number, bytes: number): void {
    const call = this.live(id, 'CREDIT');
    if (call === undefined) return;
    if (call.input === undefined) return this.protocolError('unknown-stream', `CREDIT for request ${id}, which has no input stream`);
    call.input.grant(bytes);
  }
}

function canceled(method: string): MirrorpoolError {
  return mpError('ECANCELED', `${method} was canceled`, { method, reason: 'canceled by caller' });
}

const TLS_CODES = new Set(['DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'CERT_UNTRUSTED',
  'CERT_REJECTED', 'CERT_SIGNATURE_FAILURE', 'ERR_TLS_CERT_ALTNAME_INVALID']);

/** What a socket error before the websocket opened means to the caller. */
function connectFailure(e: Error, url: string): MirrorpoolError {
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string' && TLS_CODES.has(code)) {
    return authError('tls-certificate', `the TLS certificate of ${url} is not trusted (${code}: ${e.message}); pass the CA that signed it`, { url, tlsCode: code });
  }
  if (/handshake has timed out/i.test(e.message)) return mpError('ETIMEDOUT', `websocket handshake with ${url} timed out`, { url });
  const status = /Unexpected server response: (\d+)/.exec(e.message)?.[1];
  if (status !== undefined) return mpError('EIO', `${url} answered HTTP ${status} instead of opening a websocket`, { url, status: Number(status) });
  return mpError('EIO', `cannot connect to ${url}: ${e.message}`, { url, ...(typeof code === 'string' ? { cause: code } : {}) });
}

/** ws:// or wss:// URL with /rpc as the path when it names none. */
export function rpcUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch (e) {
    throw mpError('EINVAL', `not a URL: ${String(url).slice(0, 200)}`, { url }, e);
  }
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw mpError('EINVAL', `RPC URLs start with ws:// or wss://, got ${u.protocol}`, { url });
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/rpc';
  return u.toString();
}

function checkCredentials(credentials: ClientCredentials): void {
  if (credentials.kind === 'token') {
    if (typeof credentials.token !== 'string' || credentials.token.length === 0 || credentials.token.length > LIMITS.rpcTokenLengthMax) {
      throw mpError('EINVAL', 'the token must be a non-empty string of at most 1024 characters');
    }
    return;
  }
  if (credentials.kind !== 'node') throw mpError('EINVAL', 'credentials are either a token or node keys');
  checkNodeKeys(credentials.keys);
  if (typeof credentials.clusterSecret !== 'string' || credentials.clusterSecret.length === 0) throw mpError('EINVAL', 'the cluster secret must be a non-empty string');
}

/** Opens an authenticated RPC connection. EIO when unreachable, ETIMEDOUT, EAUTH when refused. */
export async function connect(url: string, credentials: ClientCredentials, options: ConnectOptions = {}): Promise<RpcClient> {
  const limits = resolveLimits(options.limits);
  const target = rpcUrl(url);
  checkCredentials(credentials);
  const timeoutMs = options.timeoutMs ?? CONNECT_TIMEOUT_MS_DEFAULT;
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 0x7fff_ffff) throw mpError('EINVAL', 'timeoutMs must be a positive integer', { timeoutMs });
  const ws = new WebSocket(target, {
    maxPayload: limits.frameBytesMax, perMessageDeflate: false, skipUTF8Validation: true, followRedirects: false,
    handshakeTimeout: timeoutMs, ...(options.ca !== undefined ? { ca: options.ca } : {}),
  });
  return new ClientConnection(ws, target, credentials, options, limits, options.events ?? NO_EVENTS).ready;
}
