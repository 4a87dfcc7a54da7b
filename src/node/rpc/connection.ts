// What both ends of an RPC connection share: limits, the call context handlers see, and Wire —
// one websocket carrying frames (frames.ts). Wire owns sending (size checks against the peer's
// frame limit, DATA frames batched into reused buffers by DataWriter (data-writer.ts) or, when
// ws's internals are not as expected, copied into pooled buffers and sent through ws, a bound on
// bytes handed to the socket but not yet flushed), receiving (DATA frames read off the socket by
// DataReader (data-reader.ts) when ws allows, everything else through ws; strict decode, errors
// routed to the owner), connection-level failure (FAIL frame, then close) and the error that
// ends the connection. Invariants: after fail() or close nothing more is delivered to the owner; `closed`
// resolves once, after owner.closed() ran. Owned by ServerConnection (server.ts) and
// ClientConnection (client.ts), which also keep their calls' deadlines on one Deadlines timer per
// connection.

import type { ServerOptions, WebSocket } from 'ws';
import { type MirrorpoolError, assert, hasCode, limits as LIMITS, mpError } from '../../lib/index.js';
import type { FrameErrorReason, TransportEvents } from './events.js';
import { type ControlFrame, DATA_HEADER_BYTES, FRAME_BYTES_MIN, type Frame, decodeFrame, encodeFrame, writeDataHeader } from './frames.js';
import { DataReader } from './data-reader.js';
import { DataWriter } from './data-writer.js';
import type { Principal } from './handshake.js';
import type { Scope } from './tokens.js';

export interface RpcLimits {
  /** Largest frame accepted (ws maxPayload is set from it). */
  readonly frameBytesMax: number;
  /** Concurrent requests per connection; more → that request gets EBUSY at once. */
  readonly inflightMax: number;
  /** Credit window per stream direction. */
  readonly streamWindowBytes: number;
  readonly handshakeTimeoutMs: number;
  readonly deadlineMsDefault: number;
  readonly deadlineMsMax: number;
}

export const RPC_LIMITS: RpcLimits = Object.freeze({
  frameBytesMax: LIMITS.rpcFrameBytesMax,
  inflightMax: LIMITS.rpcInflightMax,
  streamWindowBytes: LIMITS.rpcStreamWindowBytes,
  handshakeTimeoutMs: LIMITS.rpcHandshakeTimeoutMs,
  deadlineMsDefault: LIMITS.rpcDeadlineMsDefault,
  deadlineMsMax: LIMITS.rpcDeadlineMsMax,
});

/** Window cost of one DATA frame on top of its payload: bounds queued frames per stream. */
export const DATA_FRAME_COST_BYTES = 1024;
const TIMER_MS_MAX = 0x7fff_ffff;

/** Defaults overridden by `partial`; EINVAL for values out of range. */
export function resolveLimits(partial: Partial<RpcLimits> = {}): RpcLimits {
  const l = { ...RPC_LIMITS, ...partial };
  const check = (name: keyof RpcLimits, min: number, max: number): void => {
    const v = l[name];
    if (!Number.isSafeInteger(v) || v < min || v > max) throw mpError('EINVAL', `rpc limit ${name} must be an integer in [${min}, ${max}], got ${v}`, { [name]: v });
  };
  check('frameBytesMax', FRAME_BYTES_MIN, TIMER_MS_MAX);
  check('inflightMax', 1, 1_000_000);
  check('streamWindowBytes', 16 * DATA_FRAME_COST_BYTES, 2 ** 32 - 1);
  check('handshakeTimeoutMs', 1, TIMER_MS_MAX);
  check('deadlineMsMax', 1, TIMER_MS_MAX);
  check('deadlineMsDefault', 1, l.deadlineMsMax);
  return Object.freeze(l);
}

/** Options for the daemon's WebSocketServer (it calls handleUpgrade, then serveConnection). */
export function wsServerOptions(partial?: Partial<RpcLimits>): ServerOptions {
  const l = resolveLimits(partial);
  return { noServer: true, maxPayload: l.frameBytesMax, perMessageDeflate: false, skipUTF8Validation: true };
}

export interface CallContext {
  readonly principal: Principal;
  readonly method: string;
  /** Aborted on cancel, deadline, or connection loss. */
  readonly signal: AbortSignal;
  /** Bytes the caller streams with the request (empty if it sent none); iterating grants credit. */
  readonly input: AsyncIterable<Uint8Array>;
  /** Response stream bytes; resolves when the peer's window allows; rejects ECANCELED once the call ended. */
  write(chunk: Uint8Array): Promise<void>;
}

export type Handler = (params: unknown, ctx: CallContext) => Promise<unknown>;

export interface MethodSpec {
  readonly scope: Scope;
  readonly handler: Handler;
}

/** The side of a connection that gets what Wire receives. */
export interface WireOwner {
  frame(frame: Frame): void;
  /** A frame that failed to decode (EPROTO with details.reason). */
  badFrame(error: MirrorpoolError, reason: FrameErrorReason): void;
  /** A socket error (TLS, refused, reset, websocket protocol violation). */
  socketError(error: Error): void;
  /** The connection is gone; `error` is what pending work fails with. */
  closed(error: MirrorpoolError): void;
}

// Without a DataWriter, DATA frames of at least POOLED_MIN bytes are copied into buffers reused
// across connections: fresh memory is costly to touch, a reused buffer is not. The pool keeps
// enough buffers for one connection's unflushed bytes; more connections sending at once allocate
// the rest.
const POOL_BUFFER_BYTES = LIMITS.rpcDataChunkBytes + DATA_HEADER_BYTES;
const POOLED_MIN = 16 * 1024;
const POOL_BUFFERS_MAX = Math.ceil(LIMITS.rpcSendBufferedBytesMax / LIMITS.rpcDataChunkBytes) + 8;
const pool: Buffer[] = [];

export class Wire {
  /** Largest message the peer accepts; set by the handshake. */
  peerFrameBytesMax = FRAME_BYTES_MIN;
  readonly closed: Promise<void>;
  private unflushedBytes = 0;
  /** Made on first use; null when ws cannot have one (its Sender carries DATA then). */
  private writer: DataWriter | null | undefined;
  private readonly drainWaiters = new Set<() => void>();
  private failure: MirrorpoolError | undefined;
  private done = false;
  private resolveClosed!: () => void;

  constructor(
    readonly ws: WebSocket,
    readonly limits: RpcLimits,
    readonly events: TransportEvents,
    private readonly owner: WireOwner,
  ) {
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data: Buffer, isBinary: boolean) => this.receive(data, isBinary));
    ws.on('error', (e: Error) => this.onError(e));
    ws.on('close', (code: number) => this.onClose(code));
    if (ws.readyState === ws.OPEN) this.attachReader();
    else if (ws.readyState === ws.CONNECTING) ws.once('open', () => this.attachReader());
    if (ws.readyState === ws.CLOSED) queueMicrotask(() => this.onClose(1006));
  }

  /**
   * DATA frames skip ws's Receiver from now on (data-reader.ts), unless ws is not as expected.
   * Only frames up to what a sender of this project makes: DataReader allocates a frame cut
   * across socket reads when its header arrives, and a larger frame (which other senders may
   * make, up to frameBytesMax) goes to ws, which holds only the bytes that came.
   */
  private attachReader(): void {
    const payloadBytesMax = Math.min(this.limits.frameBytesMax, DATA_HEADER_BYTES + LIMITS.rpcDataChunkBytes);
    DataReader.attach(this.ws, (message) => this.receive(message, true), payloadBytesMax);
  }

  get open(): boolean {
    return !this.done && this.failure === undefined && this.ws.readyState === this.ws.OPEN;
  }

  /** Stream bytes per DATA frame: what the peer accepts, and what suits the socket. */
  get dataChunkBytes(): number {
    const peerMax = Math.min(LIMITS.rpcDataChunkBytes, this.peerFrameBytesMax - DATA_HEADER_BYTES);
    return this.dataWriter()?.chunkBytes ?? peerMax;
  }

  /** Most stream bytes one sendData takes. */
  get dataBatchBytes(): number {
    return this.dataWriter()?.batchBytes ?? this.dataChunkBytes;
  }

  /** Credit that `bytes` of stream cost, sent by sendData (DATA_FRAME_COST_BYTES per frame). */
  dataCost(bytes: number): number {
    return bytes + Math.ceil(bytes / this.dataChunkBytes) * DATA_FRAME_COST_BYTES;
  }

  /** The most stream bytes, up to `wanted`, that one sendData may carry within `credit`. */
  dataBytesWithin(credit: number, wanted: number): number {
    const per = this.dataChunkBytes;
    const whole = Math.floor(credit / (per + DATA_FRAME_COST_BYTES));
    const rest = credit - whole * (per + DATA_FRAME_COST_BYTES);
    const n = Math.min(wanted, this.dataBatchBytes, whole * per + Math.max(0, rest - DATA_FRAME_COST_BYTES));
    assert(n <= 0 || this.dataCost(n) <= credit, 'DATA beyond the credit');
    return Math.max(0, n);
  }

  /** False while too many stream bytes wait in the socket to be flushed. */
  get writable(): boolean {
    return this.unflushedBytes < LIMITS.rpcSendBufferedBytesMax && this.writer?.ready !== false;
  }

  /** Calls `wake` when bytes were flushed or the connection closed; returns the unsubscribe. */
  whenWritable(wake: () => void): () => void {
    this.drainWaiters.add(wake);
    return () => this.drainWaiters.delete(wake);
  }

  /** Sends a control frame; EINVAL when it is larger than the peer accepts (nothing is sent). */
  send(frame: ControlFrame): void {
    const bytes = encodeFrame(frame);
    if (bytes.length > this.peerFrameBytesMax) {
      throw mpError('EINVAL', `${frame.kind} frame of ${bytes.length} bytes is larger than the peer's limit of ${this.peerFrameBytesMax} bytes`, {
        bytes: bytes.length, frameBytesMax: this.peerFrameBytesMax,
      });
    }
    if (!this.open) return;
    this.events.bytes('out', bytes.length);
    this.ws.send(bytes);
  }

  /**
   * Sends `chunk` (at most dataBatchBytes) as DATA frames of dataChunkBytes; the caller keeps
   * `chunk` (it is copied). Returns the credit the frames cost (dataCost).
   */
  sendData(id: number, chunk: Uint8Array): number {
    assert(chunk.length > 0 && chunk.length <= this.dataBatchBytes, 'DATA chunk out of range');
    const cost = this.dataCost(chunk.length);
    if (!this.open) return cost;
    const writer = this.dataWriter();
    if (writer?.usable === true) {
      const size = chunk.length + Math.ceil(chunk.length / writer.chunkBytes) * DATA_HEADER_BYTES;
      this.events.bytes('out', size);
      this.unflushedBytes += size;
      writer.write(id, chunk, () => this.flushed(size));
      return cost;
    }
    for (let offset = 0; offset < chunk.length; offset += this.dataChunkBytes) this.sendFrame(id, chunk.subarray(offset, offset + this.dataChunkBytes));
    return cost;
  }

  /** One DATA frame through ws's Sender, copied into a pooled buffer when large. */
  private sendFrame(id: number, chunk: Uint8Array): void {
    const size = DATA_HEADER_BYTES + chunk.length;
    const pooled = chunk.length >= POOLED_MIN && size <= POOL_BUFFER_BYTES;
    const buf = pooled ? (pool.pop() ?? Buffer.allocUnsafe(POOL_BUFFER_BYTES)) : Buffer.allocUnsafe(size);
    writeDataHeader(buf, id);
    buf.set(chunk, DATA_HEADER_BYTES);
    this.unflushedBytes += size;
    this.events.bytes('out', size);
    this.ws.send(buf.subarray(0, size), () => {
      if (pooled && pool.length < POOL_BUFFERS_MAX) pool.push(buf);
      this.flushed(size);
    });
  }

  private flushed(bytes: number): void {
    this.unflushedBytes -= bytes;
    assert(this.unflushedBytes >= 0, 'more bytes flushed than sent');
    if (this.drainWaiters.size > 0 && this.writable) for (const wake of [...this.drainWaiters]) wake();
  }

  /** The DataWriter of this connection once it is open, when ws allows one. */
  private dataWriter(): DataWriter | undefined {
    if (this.writer === undefined && this.ws.readyState === this.ws.OPEN) {
      const peerMax = Math.min(LIMITS.rpcDataChunkBytes, this.peerFrameBytesMax - DATA_HEADER_BYTES);
      this.writer = DataWriter.attach(this.ws, peerMax) ?? null;
    }
    return this.writer ?? undefined;
  }

  /** Ends the connection because of `error`: FAIL frame to the peer, then close. */
  fail(error: MirrorpoolError, closeCode = 1002): void {
    if (this.failure !== undefined || this.done) return;
    if (this.ws.readyState === this.ws.OPEN) {
      const bytes = encodeFrame({ kind: 'fail', error: error.toWire() });
      this.events.bytes('out', bytes.length);
      this.ws.send(bytes);
    }
    this.failure = error;
    this.close(closeCode, error.code);
  }

  /** Closes the connection; `reason` shows in the peer's close event. */
  close(code = 1000, reason = ''): void {
    if (this.ws.readyState === this.ws.CONNECTING) {
      this.ws.terminate();
      return;
    }
    if (this.ws.readyState === this.ws.OPEN) this.ws.close(code, reason.slice(0, 120));
  }

  /** Drops the connection without a closing handshake (the peer may be unresponsive). */
  terminate(): void {
    this.ws.terminate();
  }

  /** Records the error pending work fails with, when the peer told us why it closes. */
  remoteFailure(error: MirrorpoolError): void {
    if (this.failure === undefined) this.failure = error;
    this.close(1000, error.code);
  }

  private receive(data: Buffer, isBinary: boolean): void {
    if (this.done || this.failure !== undefined) return;
    this.events.bytes('in', data.length);
    let frame: Frame;
    try {
      if (!isBinary) throw mpError('EPROTO', 'text message on an RPC connection', { reason: 'bad-shape' });
      frame = decodeFrame(data);
    } catch (e) {
      if (!hasCode(e, 'EPROTO')) throw e;
      this.owner.badFrame(e, e.details.reason === 'not-msgpack' ? 'not-msgpack' : 'bad-shape');
      return;
    }
    this.owner.frame(frame);
  }

  private onError(e: Error): void {
    const code = (e as { code?: unknown }).code;
    if (code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
      this.events.frameError('oversized');
      this.failure ??= oversized(this.limits.frameBytesMax);
    } else if (typeof code === 'string' && code.startsWith('WS_ERR_')) {
      this.events.frameError('bad-shape');
      this.failure ??= mpError('EPROTO', `websocket protocol error: ${e.message}`, { reason: 'bad-shape' });
    }
    this.owner.socketError(e);
  }

  private onClose(code: number): void {
    if (this.done) return;
    this.done = true;
    for (const wake of [...this.drainWaiters]) wake();
    const error = this.failure ?? (code === 1009
      ? oversized(this.peerFrameBytesMax)
      : mpError('ECANCELED', 'connection closed', { reason: 'connection closed', closeCode: code }));
    this.owner.closed(error);
    this.resolveClosed();
  }
}

/**
 * The deadlines of one connection's calls on a single timer, armed for the earliest of them: a
 * timer per call costs more than the calls themselves. The owner keeps each call's deadline
 * (performance.now() milliseconds); `expire` ends the calls whose deadline is at or before `nowMs`
 * and returns the earliest deadline left (Infinity for none). A deadline never fires early. The
 * timer is unref'd: an open connection keeps the process alive by itself.
 */
export class Deadlines {
  private timer: NodeJS.Timeout | undefined;
  private armedAt = Infinity;
  private stopped = false;

  constructor(private readonly expire: (nowMs: number) => number) {}

  /** A call ends at `atMs` unless it settles first. */
  add(atMs: number): void {
    if (atMs < this.armedAt && !this.stopped) this.arm(atMs);
  }

  /** The connection is gone: no more expiries. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.armedAt = -Infinity;
  }

  private arm(atMs: number): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.armedAt = atMs;
    const delay = Math.min(TIMER_MS_MAX, Math.max(1, Math.ceil(atMs - performance.now())));
    this.timer = setTimeout(this.fire, delay);
    this.timer.unref();
  }

  private readonly fire = (): void => {
    this.timer = undefined;
    this.armedAt = Infinity;
    const next = this.expire(performance.now());
    if (next < this.armedAt && !this.stopped) this.arm(next);
  };
}

function oversized(frameBytesMax: number): MirrorpoolError {
  return mpError('EPROTO', `frame larger than ${frameBytesMax} bytes`, { reason: 'oversized', frameBytesMax });
}
