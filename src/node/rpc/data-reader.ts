// Stream bytes off a websocket's socket without ws's Receiver: the reading half of
// data-writer.ts. A DataReader sees every socket read before ws does, splits it at frame
// boundaries and takes for itself only the frames that are plainly DATA messages: FIN set, no
// extension bits, opcode 2 (binary), masked exactly when the peer is a client, a payload of at
// most payloadBytesMax starting with the DATA marker, and ws's Receiver idle (every byte handed
// to it handled, no fragmented message open). Everything else — control frames, other messages,
// fragments, oversized or malformed frames — goes to ws's Receiver unchanged and whole, so ws
// answers it exactly as before (same errors, same close codes, same limits); once ws stops
// reading (an error, a close frame) the rest of the bytes are dropped, as ws drops them.
// Per frame this skips ws's stream write, its header parse into sliced buffers and its
// 'message' event; a frame that lies within one socket read is handed out as a view of that read
// (ws does the same), one cut across reads is joined into a new buffer (ws does the same),
// allocated when its header arrives: payloadBytesMax bounds that memory per connection.
//
// Buffer ownership: a message handed to `data` belongs to the receiver for good. It is a view of
// a socket read (Node allocates every read afresh unless a socket is made with `onread`, which
// ws and this project never do) or a buffer allocated for it alone; DataReader never writes to
// it again. Nothing is reused because the receiver may queue a message for as long as
// its stream window lets it (streams.ts), with nothing telling the reader when it is done. The
// only reused memory is a header stash of a few bytes, never handed out (bytes from it that go to
// ws are copied). Masked payloads are unmasked in place, in the socket read, as ws does.
// Invariants: bytes reach ws's Receiver in socket order and messages reach `data` in socket
// order interleaved with ws's own events; a DATA frame is taken only at a frame boundary where ws
// has nothing pending. Used by Wire (connection.ts).

import { Writable } from 'node:stream';
import type { WebSocket } from 'ws';
import { assert } from '../../lib/index.js';
import { nativeBufferUtil, xorMask } from './data-writer.js';
import { DATA_MARKER } from './frames.js';

/** Largest websocket frame header (2 bytes, a 64-bit length, a masking key) and one payload byte. */
const STASH_BYTES = 2 + 8 + 4 + 1;
/** ws refuses frames longer than 2^53 - 1 bytes; the high word of a 64-bit length stays below this. */
const LENGTH_HIGH_LIMIT = 2 ** 21;

/** Where a DataReader sends what it reads. */
export interface DataReaderTarget {
  /** A whole DATA message (its websocket payload, unmasked); the target owns it from now on. */
  data(message: Buffer): void;
  /** Bytes for ws's Receiver, in socket order. */
  forward(bytes: Buffer): void;
  /** Whether ws's Receiver handled everything forwarded and sits between messages. */
  idle(): boolean;
  /** Whether ws stopped reading this socket (an error or a close frame). */
  stopped(): boolean;
}

export interface DataReaderOptions {
  /** Whether frames from the peer are masked (the peer is a client). */
  readonly masked: boolean;
  /** Largest payload DataReader takes itself; larger frames go to ws, which applies its limit. */
  readonly payloadBytesMax: number;
}

const AT_FRAME = 0;
const FORWARDING = 1;
const JOINING = 2;
const STOPPED = 3;

type UnmaskFn = (buffer: Uint8Array, mask: Uint8Array) => void;

/** bufferutil's native unmask when there is one, else xorMask. */
function loadUnmask(): UnmaskFn {
  const native = nativeBufferUtil()?.unmask;
  return typeof native === 'function' ? (native as UnmaskFn) : xorMask;
}

let unmaskFn: UnmaskFn | undefined;

/** Private fields of ws 8's Receiver that DataReader relies on, checked before use. */
interface ReceiverInternals {
  readonly _state?: unknown;
  readonly _bufferedBytes?: unknown;
  readonly _fragmented?: unknown;
  readonly _errored?: unknown;
  readonly _maxPayload?: unknown;
  readonly _allowSynchronousEvents?: unknown;
  readonly writableLength: number;
  readonly writableEnded: boolean;
  readonly writableNeedDrain: boolean;
  readonly destroyed: boolean;
  write: (chunk: Buffer) => boolean;
}

/** Private fields of ws 8's WebSocket that DataReader relies on, checked before use. */
interface WsInternals {
  readonly _receiver?: unknown;
  readonly _isServer?: unknown;
}

export class DataReader {
  private state = AT_FRAME;
  /** Header bytes of the next frame when a socket read ended inside them. */
  private readonly stash = Buffer.allocUnsafe(STASH_BYTES);
  private stashed = 0;
  /** FORWARDING: bytes of the current frame still to hand to ws (Infinity: ws refuses it anyway). */
  private forwardBytes = 0;
  /** JOINING: the message being joined from several reads, and how much of it arrived. */
  private joined: Buffer | undefined;
  private joinedBytes = 0;
  private readonly mask = Buffer.alloc(4);
  // The header parsed last (parse()).
  private headerBytes = 0;
  private payloadBytes = 0;
  private fast = false;

  constructor(private readonly target: DataReaderTarget, private readonly options: DataReaderOptions) {
    assert(Number.isSafeInteger(options.payloadBytesMax) && options.payloadBytesMax >= 1, 'payloadBytesMax out of range');
  }

  /**
   * Reads `ws`'s socket from now on, handing DATA messages to `data`; false (and nothing changes)
   * when ws is not as this file expects or not between frames, and then ws reads everything.
   */
  static attach(ws: WebSocket, data: (message: Buffer) => void, payloadBytesMax: number): boolean {
    const internals = ws as unknown as WsInternals;
    if (ws.readyState !== ws.OPEN || ws.extensions !== '' || typeof internals._isServer !== 'boolean') return false;
    return DataReader.attachToReceiver(internals._receiver, { masked: internals._isServer, payloadBytesMax }, data);
  }

  /** attach() on ws's Receiver itself (tests drive a bare Receiver); `masked`: it is a server's. */
  static attachToReceiver(candidate: unknown, options: DataReaderOptions, data: (message: Buffer) => void): boolean {
    const receiver = candidate as ReceiverInternals | null | undefined;
    if (typeof receiver !== 'object' || receiver === null || receiver.write !== Writable.prototype.write) return false;
    if (receiver._state !== 0 || receiver._bufferedBytes !== 0 || receiver._fragmented !== 0 || receiver._errored !== false) return false;
    if (receiver._allowSynchronousEvents !== true || typeof receiver._maxPayload !== 'number' || receiver.writableLength !== 0) return false;
    if (receiver.destroyed || receiver.writableEnded) return false;
    const wsMax = receiver._maxPayload > 0 ? receiver._maxPayload : Infinity;
    const write = receiver.write;
    const target: DataReaderTarget = {
      data,
      forward: (bytes) => void write.call(receiver, bytes),
      idle: () => receiver._state === 0 && receiver._bufferedBytes === 0 && receiver._fragmented === 0 && receiver.writableLength === 0,
      stopped: () => receiver._errored !== false || receiver.destroyed || receiver.writableEnded,
    };
    const reader = new DataReader(target, { masked: options.masked, payloadBytesMax: Math.min(options.payloadBytesMax, wsMax) });
    // ws writes each socket read to its Receiver (and, when the socket closes, what is left in
    // it); the Receiver's own write stays what forward() calls.
    receiver.write = (chunk: Buffer): boolean => {
      reader.push(chunk);
      return !receiver.writableNeedDrain;
    };
    return true;
  }

  /** The next bytes read from the socket. */
  push(chunk: Buffer): void {
    if (this.state !== STOPPED && this.target.stopped()) this.state = STOPPED;
    let at = 0;
    while (at < chunk.length) {
      switch (this.state) {
        case STOPPED: return;
        case FORWARDING: at = this.forwardFrom(chunk, at); break;
        case JOINING: at = this.join(chunk, at); break;
        default: at = this.stashed === 0 ? this.frameAt(chunk, at) : this.frameFromStash(chunk, at);
      }
    }
  }

  /** A frame starts at `chunk[at]`. */
  private frameAt(chunk: Buffer, at: number): number {
    if (!this.parse(chunk, at, chunk.length)) {
      chunk.copy(this.stash, 0, at);
      this.stashed = chunk.length - at;
      return chunk.length;
    }
    if (!this.fast) {
      this.startForwarding(this.headerBytes + this.payloadBytes);
      return at;
    }
    const start = at + this.headerBytes;
    const end = start + this.payloadBytes;
    if (end > chunk.length) {
      this.startJoining(chunk, start);
      return start;
    }
    const message = chunk.subarray(start, end);
    if (this.options.masked) (unmaskFn ??= loadUnmask())(message, chunk.subarray(start - 4, start));
    this.target.data(message);
    return end;
  }

  /** A frame started in an earlier read, with `stashed` header bytes; `chunk[at]` goes on. */
  private frameFromStash(chunk: Buffer, at: number): number {
    const before = this.stashed;
    const added = chunk.copy(this.stash, before, at, at + STASH_BYTES - before);
    if (!this.parse(this.stash, 0, before + added)) {
      this.stashed = before + added;
      return at + added;
    }
    this.stashed = 0;
    // Deciding needs at most the header and one payload byte: no payload byte came before `at`.
    assert(before <= this.headerBytes, 'a frame decided too late');
    if (this.fast) {
      this.startJoining(this.stash, this.headerBytes);
      return at + this.headerBytes - before;
    }
    // ws may keep what it is given: it gets a copy of the stash, then the rest from `chunk`.
    this.target.forward(Buffer.from(this.stash.subarray(0, before)));
    if (this.target.stopped()) {
      this.state = STOPPED;
      return chunk.length;
    }
    this.startForwarding(this.headerBytes + this.payloadBytes - before);
    return at;
  }

  private startForwarding(bytes: number): void {
    this.state = FORWARDING;
    this.forwardBytes = bytes;
  }

  /** A DATA frame's header ends at `header[headerEnd]` and its payload spans later reads. */
  private startJoining(header: Buffer, headerEnd: number): void {
    if (this.options.masked) header.copy(this.mask, 0, headerEnd - 4, headerEnd);
    this.joined = Buffer.allocUnsafe(this.payloadBytes);
    this.joinedBytes = 0;
    this.state = JOINING;
  }

  private join(chunk: Buffer, at: number): number {
    const joined = this.joined!;
    const n = chunk.copy(joined, this.joinedBytes, at, at + joined.length - this.joinedBytes);
    this.joinedBytes += n;
    if (this.joinedBytes < joined.length) return at + n;
    this.joined = undefined;
    this.state = AT_FRAME;
    if (this.options.masked) (unmaskFn ??= loadUnmask())(joined, this.mask);
    this.target.data(joined);
    return at + n;
  }

  private forwardFrom(chunk: Buffer, at: number): number {
    const n = Math.min(this.forwardBytes, chunk.length - at);
    this.forwardBytes -= n;
    if (this.forwardBytes === 0) this.state = AT_FRAME;
    this.target.forward(at === 0 && n === chunk.length ? chunk : chunk.subarray(at, at + n));
    if (this.target.stopped()) {
      this.state = STOPPED;
      return chunk.length;
    }
    return at + n;
  }

  /**
   * Parses the frame header at `bytes[at]` (up to `end`) into headerBytes, payloadBytes and fast
   * (whether DataReader takes the frame); false when more bytes are needed to decide.
   */
  private parse(bytes: Uint8Array, at: number, end: number): boolean {
    if (end - at < 2) return false;
    const b0 = bytes[at]!;
    const b1 = bytes[at + 1]!;
    const masked = (b1 & 0x80) !== 0;
    let length = b1 & 0x7f;
    let header = 2;
    if (length === 126) {
      if (end - at < 4) return false;
      length = (bytes[at + 2]! << 8) | bytes[at + 3]!;
      header = 4;
    } else if (length === 127) {
      if (end - at < 10) return false;
      const high = ((bytes[at + 2]! << 24) >>> 0) + (bytes[at + 3]! << 16) + (bytes[at + 4]! << 8) + bytes[at + 5]!;
      const low = ((bytes[at + 6]! << 24) >>> 0) + (bytes[at + 7]! << 16) + (bytes[at + 8]! << 8) + bytes[at + 9]!;
      length = high < LENGTH_HIGH_LIMIT ? high * 2 ** 32 + low : Infinity;
      header = 10;
    }
    if (masked) header += 4;
    this.headerBytes = header;
    this.payloadBytes = length;
    // FIN, no RSV bits, binary; masked as the peer must; within the limit; not empty.
    if (b0 !== 0x82 || masked !== this.options.masked || length > this.options.payloadBytesMax || length === 0) {
      // ws gets it whole: only its length matters here.
      this.fast = false;
      return true;
    }
    if (end - at < header + 1) return false;
    const first = bytes[at + header]! ^ (masked ? bytes[at + header - 4]! : 0);
    this.fast = first === DATA_MARKER && this.target.idle();
    return true;
  }
}
