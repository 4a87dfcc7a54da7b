// Stream bytes onto a websocket's socket without ws's Sender: DATA frames (frames.ts), each one
// RFC 6455 binary message (FIN, opcode 2, no extension bits, client frames masked with a fresh
// random key), several to a batch, built in a reused buffer and handed to the socket in one write.
// ws's Sender writes a header and a payload as two writes (TLS joins them again into a fresh
// buffer) and, client-side, masks into a fresh buffer per frame; fresh memory is what costs here.
// Over TLS every frame is exactly one TLS record (16 KiB of plaintext), so the receiver (its
// DataReader, data-reader.ts, or ws) reads each frame in one piece and never joins it from
// several socket reads; batches are smaller there (see DataWriter.ready).
// Invariants: a batch buffer returns to the pool only in the socket's write callback; bytes reach
// the socket in the order of every send on that websocket (ws writes synchronously when no
// extension is negotiated, which DataWriter.attach checks). Used by Wire (connection.ts).

import { randomFillSync } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import type { WebSocket } from 'ws';
import { assert, limits as LIMITS } from '../../lib/index.js';
import { DATA_HEADER_BYTES, writeDataHeader } from './frames.js';

/** TLS plaintext record size: a websocket frame of exactly this many bytes is one record. */
export const TLS_RECORD_BYTES = 16 * 1024;
const MASK_KEY_BYTES = 4;
/** Largest websocket frame header: 2 bytes, a 64-bit length, a masking key. */
const WS_HEADER_BYTES_MAX = 2 + 8 + MASK_KEY_BYTES;
const RANDOM_POOL_BYTES = 8 * 1024;

type MaskFn = (source: Uint8Array, mask: Uint8Array, output: Uint8Array, offset: number, length: number) => void;

/** XORs `length` bytes of `source` with the 4-byte `mask` into `output` at `offset` (RFC 6455 5.3). */
export function maskInJs(source: Uint8Array, mask: Uint8Array, output: Uint8Array, offset: number, length: number): void {
  output.set(source.subarray(0, length), offset);
  xorMask(output.subarray(offset, offset + length), mask);
}

/** XORs `bytes` in place with the 4-byte `mask`, its byte 0 against mask byte 0 (RFC 6455 5.3). */
export function xorMask(bytes: Uint8Array, mask: Uint8Array): void {
  const length = bytes.length;
  let i = 0;
  // Word at a time over the 4-aligned middle of `bytes`; the mask word is rotated to line up.
  const head = Math.min(length, (4 - (bytes.byteOffset & 3)) & 3);
  for (; i < head; i++) bytes[i]! ^= mask[i & 3]!;
  const words = (length - i) >>> 2;
  if (words > 0) {
    const rotated = new Uint8Array([mask[i & 3]!, mask[(i + 1) & 3]!, mask[(i + 2) & 3]!, mask[(i + 3) & 3]!]);
    const key = new Uint32Array(rotated.buffer)[0]!;
    const view = new Uint32Array(bytes.buffer, bytes.byteOffset + i, words);
    for (let w = 0; w < words; w++) view[w]! ^= key;
    i += words * 4;
  }
  for (; i < length; i++) bytes[i]! ^= mask[i & 3]!;
}

/**
 * bufferutil's exports when it is installed and not turned off (WS_NO_BUFFER_UTIL, as ws allows),
 * else null: it is optional, and without it masking and unmasking stay in JavaScript.
 */
export function nativeBufferUtil(): { readonly mask?: unknown; readonly unmask?: unknown } | null {
  if (process.env['WS_NO_BUFFER_UTIL'] !== undefined && process.env['WS_NO_BUFFER_UTIL'] !== '') return null;
  try {
    return createRequire(import.meta.url)('bufferutil') as { mask?: unknown; unmask?: unknown };
  } catch (e) {
    if ((e as { code?: unknown }).code !== 'MODULE_NOT_FOUND') throw e;
    return null;
  }
}

/** bufferutil's native mask when there is one, else maskInJs. */
function loadMask(): MaskFn {
  const native = nativeBufferUtil()?.mask;
  return typeof native === 'function' ? (native as MaskFn) : maskInJs;
}

let maskFn: MaskFn | undefined;
const turned = new Uint8Array(MASK_KEY_BYTES);
let randomPool: Buffer | undefined;
let randomAt = RANDOM_POOL_BYTES;

function nextMaskKey(key: Uint8Array): void {
  if (randomAt + MASK_KEY_BYTES > RANDOM_POOL_BYTES) {
    randomPool ??= Buffer.allocUnsafeSlow(RANDOM_POOL_BYTES);
    randomFillSync(randomPool);
    randomAt = 0;
  }
  key.set(randomPool!.subarray(randomAt, randomAt + MASK_KEY_BYTES));
  randomAt += MASK_KEY_BYTES;
}

/** Header bytes of a websocket frame with `payloadBytes` of payload. */
export function wsHeaderBytes(payloadBytes: number, masked: boolean): number {
  const length = payloadBytes < 126 ? 0 : payloadBytes < 65536 ? 2 : 8;
  return 2 + length + (masked ? MASK_KEY_BYTES : 0);
}

/** Stream bytes of a DATA frame that makes a websocket frame of exactly `frameBytes`. */
export function chunkBytesFor(frameBytes: number, masked: boolean): number {
  let chunk = frameBytes - wsHeaderBytes(frameBytes, masked) - DATA_HEADER_BYTES;
  // A shorter length field may fit the smaller payload: grow the chunk by what it saves.
  while (wsHeaderBytes(DATA_HEADER_BYTES + chunk + 1, masked) + DATA_HEADER_BYTES + chunk + 1 <= frameBytes) chunk++;
  return chunk;
}

/**
 * Writes one binary websocket message holding DATA for `id` with `chunk` at `target[at]`; the
 * bytes written. `key` is the masking key (client frames) or undefined (server frames).
 */
export function writeDataMessage(target: Uint8Array, at: number, id: number, chunk: Uint8Array, key: Uint8Array | undefined): number {
  const payloadBytes = DATA_HEADER_BYTES + chunk.length;
  target[at] = 0x82;
  let p = at + 2;
  if (payloadBytes < 126) {
    target[at + 1] = payloadBytes;
  } else if (payloadBytes < 65536) {
    target[at + 1] = 126;
    target[p++] = payloadBytes >>> 8;
    target[p++] = payloadBytes & 0xff;
  } else {
    target[at + 1] = 127;
    const high = Math.floor(payloadBytes / 2 ** 32);
    for (const word of [high, payloadBytes >>> 0]) {
      target[p++] = word >>> 24;
      target[p++] = (word >>> 16) & 0xff;
      target[p++] = (word >>> 8) & 0xff;
      target[p++] = word & 0xff;
    }
  }
  writeDataHeader(target.subarray(p + (key === undefined ? 0 : MASK_KEY_BYTES)), id);
  if (key === undefined) {
    target.set(chunk, p + DATA_HEADER_BYTES);
    return p + payloadBytes - at;
  }
  target[at + 1]! |= 0x80;
  target.set(key, p);
  p += MASK_KEY_BYTES;
  for (let i = 0; i < DATA_HEADER_BYTES; i++) target[p + i]! ^= key[i & 3]!;
  // The chunk starts at payload byte 5: the key, turned by one byte, lines up with it.
  turned[0] = key[1]!;
  turned[1] = key[2]!;
  turned[2] = key[3]!;
  turned[3] = key[0]!;
  maskFn ??= loadMask();
  if (chunk.length > 0) maskFn(chunk, turned, target, p + DATA_HEADER_BYTES, chunk.length);
  return p + payloadBytes - at;
}

/** Private fields of ws 8 that DataWriter relies on, checked before use. */
interface WsInternals {
  readonly _socket?: unknown;
  readonly _isServer?: unknown;
  readonly _sender?: { readonly _state?: unknown; readonly _queue?: unknown };
}

/** Reused batch buffers by size, shared by the connections of this process. */
const pools = new Map<number, Buffer[]>();
/** Batch buffers kept per size: what two connections streaming at once hold (two each). */
const POOL_BUFFERS_MAX = 4;

export class DataWriter {
  /** Stream bytes per DATA frame. */
  readonly chunkBytes: number;
  /** Stream bytes per batch (one socket write). */
  readonly batchBytes: number;
  /** Batches handed to the socket and not yet flushed. */
  pending = 0;
  /** Batches that may be pending at once (see ready). */
  readonly pendingMax: number;
  private readonly bufferBytes: number;
  private readonly key: Uint8Array | undefined;
  private readonly pool: Buffer[];

  private constructor(readonly ws: WebSocket, private readonly socket: Duplex, masked: boolean, tls: boolean, peerChunkBytesMax: number) {
    const frameBytes: number = tls ? TLS_RECORD_BYTES : LIMITS.rpcPlainFrameBytes;
    this.chunkBytes = Math.max(1, Math.min(chunkBytesFor(frameBytes, masked), peerChunkBytesMax));
    // A batch holds at least its limit's worth of stream, so a write of rpcSendBatchBytes leaves
    // no small tail batch (over TLS: four batches of 17 frames).
    const frames = Math.ceil((tls ? LIMITS.rpcTlsSendBatchBytes : LIMITS.rpcSendBatchBytes) / this.chunkBytes);
    this.batchBytes = frames * this.chunkBytes;
    this.bufferBytes = frames * (this.chunkBytes + DATA_HEADER_BYTES + WS_HEADER_BYTES_MAX);
    this.key = masked ? new Uint8Array(MASK_KEY_BYTES) : undefined;
    this.pendingMax = tls ? 1 : 2;
    let pool = pools.get(this.bufferBytes);
    if (pool === undefined) pools.set(this.bufferBytes, (pool = []));
    this.pool = pool;
  }

  /**
   * A writer for `ws` once it is open, or undefined when ws is not as this file expects (then
   * its Sender carries the DATA frames). `peerChunkBytesMax`: stream bytes per DATA frame the peer
   * accepts.
   */
  static attach(ws: WebSocket, peerChunkBytesMax: number): DataWriter | undefined {
    const internals = ws as unknown as WsInternals;
    const socket = internals._socket;
    const sender = internals._sender;
    if (ws.readyState !== ws.OPEN || ws.extensions !== '' || typeof internals._isServer !== 'boolean') return undefined;
    if (sender === undefined || sender._state !== 0 || !Array.isArray(sender._queue)) return undefined;
    if (typeof socket !== 'object' || socket === null || typeof (socket as Duplex).write !== 'function') return undefined;
    return new DataWriter(ws, socket as Duplex, !internals._isServer, socket instanceof TLSSocket, peerChunkBytesMax);
  }

  /**
   * Whether another batch may go to the socket: on plain TCP one more may wait while one is being
   * written, never two (waiting batches reach the socket as one gathered write); on TLS one batch
   * at a time, of rpcTlsSendBatchBytes. TLS encrypts a batch the
   * moment the socket takes it, and the peer decrypts it from the kernel's buffer: the less
   * ciphertext is between the two, the more of it is still in the CPU's cache on either side.
   * Measured over wss:// on 127.0.0.1, both ends in one process (2 cores, 1 MiB L2), against a
   * raw TLS socket writing 1 MiB at a time: two 1 MiB batches in flight ran at ~0.72x, one at
   * ~0.89x, one of 256 KiB at ~1.1x (64 KiB ~1.0x, 128 KiB ~1.05x, 384 KiB ~1.1x). On plain TCP
   * the socket copies from the batch buffer itself, and neither smaller batches nor fewer in
   * flight were faster.
   */
  get ready(): boolean {
    return this.pending < this.pendingMax;
  }

  /** Whether this writer may put bytes on the socket now without passing ws's own sends. */
  get usable(): boolean {
    const sender = (this.ws as unknown as WsInternals)._sender;
    return sender !== undefined && sender._state === 0 && (sender._queue as unknown[]).length === 0 && !this.socket.destroyed;
  }

  /**
   * Writes `chunk` (at most batchBytes) as DATA frames for `id` in one socket write; calls
   * `flushed` once the socket is done with them. The caller keeps `chunk`.
   */
  write(id: number, chunk: Uint8Array, flushed: () => void): void {
    assert(chunk.length > 0 && chunk.length <= this.batchBytes, 'DATA batch out of range');
    const buf = this.pool.pop() ?? Buffer.allocUnsafeSlow(this.bufferBytes);
    let at = 0;
    for (let offset = 0; offset < chunk.length; offset += this.chunkBytes) {
      if (this.key !== undefined) nextMaskKey(this.key);
      at += writeDataMessage(buf, at, id, chunk.subarray(offset, offset + this.chunkBytes), this.key);
    }
    assert(at <= buf.length, 'DATA batch overran its buffer');
    this.pending++;
    this.socket.write(buf.subarray(0, at), () => {
      this.pending--;
      if (this.pool.length < POOL_BUFFERS_MAX) this.pool.push(buf);
      flushed();
    });
  }
}
