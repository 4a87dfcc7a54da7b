// Frames -> records for byte streams. Fed chunks of any size (push), it returns whole records in
// order (next), checking the framing, every record (stream-format.ts), the sequence
// (stream-order.ts) and the END checksum; `records(source)` does the same over an async iterable.
//
// Errors: EPROTO for bad framing, a malformed record, a record out of order, or input that ends
// before END; ENOTSUP for a newer version or unknown feature; ECKSUM for a WRITE whose data does
// not match its checksum or an END whose checksum does not match the records before it. The first
// error is sticky: every later call throws it again.
//
// Memory: at most one frame (limits.streamRecordBytesMax, refused from its length prefix before
// anything is allocated) plus the caller's current chunk, which the decoder references without
// copying until next() returns undefined. A frame that lies whole in one chunk is decoded where it
// lies, so its record's byte fields (a WRITE's data) are views into the caller's chunk: the caller
// keeps the chunk unchanged while it uses those records (receiveStream hands a chunk back to its
// producer only after its records are applied). A frame split across chunks is gathered into a
// buffer of its own: a fresh array, or one from the caller's frameBuffer (receiveStream reuses
// them once their records are applied).

import { MirrorpoolError, assert, bytesEqual, limits, mpError } from '../lib/index.js';
import { StreamChecksum, decodeRecord } from './stream-format.js';
import { FRAME_PREFIX_BYTES } from './stream-encoder.js';
import { StreamOrder } from './stream-order.js';
import { RecordKind, emptyRecordCounts, recordKindName } from './stream-record.js';
import type { BeginRecord, RecordCounts, StreamRecord } from './stream-record.js';

export interface StreamDecoderOptions {
  /** Largest frame accepted; at most (and by default) limits.streamRecordBytesMax. */
  readonly recordBytesMax?: number;
  /** Bytes after END are left for takeRest() (another stream follows) instead of EPROTO. */
  readonly stopAtEnd?: boolean;
  /**
   * A buffer of exactly `bytes` to gather a frame split across chunks into (a fresh array when
   * absent). The decoder fills it and returns the frame's record with views into it (see
   * `gathered`); the caller must not touch it while it uses that record.
   */
  readonly frameBuffer?: (bytes: number) => Uint8Array;
}

const EMPTY = new Uint8Array(0);

export class StreamDecoder {
  private readonly recordBytesMax: number;
  private readonly stopAtEnd: boolean;
  private readonly order = new StreamOrder('EPROTO');
  private readonly running = new StreamChecksum();
  private readonly recordCounts = emptyRecordCounts();
  private readonly prefix = new Uint8Array(FRAME_PREFIX_BYTES);
  private readonly prefixView = new DataView(this.prefix.buffer);
  private prefixFill = 0;
  private frame: Uint8Array | undefined;
  private frameFill = 0;
  private chunk: Uint8Array = EMPTY;
  private chunkPos = 0;
  private consumed = 0;
  private failure: MirrorpoolError | undefined;
  private readonly frameBuffer: (bytes: number) => Uint8Array;
  private lastGathered: Uint8Array | undefined;

  constructor(options: StreamDecoderOptions = {}) {
    this.stopAtEnd = options.stopAtEnd ?? false;
    this.frameBuffer = options.frameBuffer ?? ((bytes) => new Uint8Array(bytes));
    this.recordBytesMax = options.recordBytesMax ?? limits.streamRecordBytesMax;
    assert(Number.isSafeInteger(this.recordBytesMax) && this.recordBytesMax >= 1 &&
      this.recordBytesMax <= limits.streamRecordBytesMax, 'recordBytesMax out of range');
  }

  /** BEGIN, once decoded. */
  get begin(): BeginRecord | undefined {
    return this.order.begin;
  }

  /** True once END has been decoded and verified. */
  get ended(): boolean {
    return this.order.ended;
  }

  /** Bytes of the whole frames decoded so far: the stream offset after the last record returned. */
  get consumedBytes(): number {
    return this.consumed;
  }

  get counts(): Readonly<RecordCounts> {
    return this.recordCounts;
  }

  /**
   * The buffer the record next() returned last was gathered into (a frame split across chunks),
   * or undefined when that record was decoded in place in a chunk.
   */
  get gathered(): Uint8Array | undefined {
    return this.lastGathered;
  }

  /** Bytes held right now: the partial frame and prefix, and the unread rest of the current chunk. */
  get bufferedBytes(): number {
    return this.prefixFill + (this.frame?.length ?? 0) + (this.chunk.length - this.chunkPos);
  }

  /** Hands over the next chunk; call only after next() has returned undefined. */
  push(chunk: Uint8Array): void {
    assert(this.chunkPos === this.chunk.length, 'StreamDecoder.push before the previous chunk was consumed');
    this.chunk = chunk;
    this.chunkPos = 0;
  }

  /** The next whole record, or undefined when the pushed bytes are used up. */
  next(): StreamRecord | undefined {
    if (this.failure !== undefined) throw this.failure;
    try {
      return this.step();
    } catch (e) {
      if (e instanceof MirrorpoolError) this.failure = e;
      throw e;
    }
  }

  /**
   * After END: the bytes of the current chunk that follow it (the next stream of a package, see
   * stream.ts), which this decoder then no longer holds. Empty when END ended the chunk.
   */
  takeRest(): Uint8Array {
    assert(this.order.ended, 'StreamDecoder.takeRest before END');
    const rest = this.chunk.subarray(this.chunkPos);
    this.chunk = EMPTY;
    this.chunkPos = 0;
    return rest;
  }

  /** Declares the end of input: EPROTO unless the stream ended with a verified END. */
  finish(): void {
    if (this.failure !== undefined) throw this.failure;
    assert(this.chunkPos === this.chunk.length, 'StreamDecoder.finish before the last chunk was consumed');
    if (!this.order.ended) {
      this.failure = mpError('EPROTO', 'stream ends before END', {
        consumedBytes: this.consumed,
        partialFrameBytes: this.prefixFill + this.frameFill,
      });
      throw this.failure;
    }
  }

  /** Every record of `source`, in order; throws as next() and finish() do. */
  async *records(source: AsyncIterable<Uint8Array>): AsyncGenerator<StreamRecord, void, undefined> {
    for await (const chunk of source) {
      this.push(chunk);
      for (let r = this.next(); r !== undefined; r = this.next()) yield r;
    }
    this.finish();
  }

  private step(): StreamRecord | undefined {
    for (;;) {
      if (this.chunkPos === this.chunk.length) {
        this.chunk = EMPTY; // drop the caller's chunk as soon as it is used up
        this.chunkPos = 0;
        return undefined;
      }
      if (this.order.ended) {
        if (this.stopAtEnd) return undefined;
        throw mpError('EPROTO', 'bytes after END', { consumedBytes: this.consumed });
      }
      if (this.frame === undefined) {
        const length = this.readPrefix();
        // A frame the chunk holds whole is decoded where it lies (its records' data are views
        // into the caller's chunk); one split across chunks is gathered into a buffer of its own.
        if (length > 0 && this.chunk.length - this.chunkPos >= length) {
          const bytes = this.chunk.subarray(this.chunkPos, this.chunkPos + length);
          this.chunkPos += length;
          this.lastGathered = undefined;
          return this.accept(bytes);
        }
        if (length > 0) {
          const frame = this.frameBuffer(length);
          assert(frame.length === length, 'frameBuffer returned a buffer of the wrong size');
          this.frame = frame;
        }
        continue;
      }
      const take = Math.min(this.frame.length - this.frameFill, this.chunk.length - this.chunkPos);
      this.frame.set(this.chunk.subarray(this.chunkPos, this.chunkPos + take), this.frameFill);
      this.frameFill += take;
      this.chunkPos += take;
      if (this.frameFill === this.frame.length) {
        const bytes = this.frame;
        this.frame = undefined;
        this.frameFill = 0;
        this.lastGathered = bytes;
        return this.accept(bytes);
      }
    }
  }

  /** Reads (more of) a length prefix; returns the frame length once it is whole, else 0. */
  private readPrefix(): number {
    const take = Math.min(FRAME_PREFIX_BYTES - this.prefixFill, this.chunk.length - this.chunkPos);
    this.prefix.set(this.chunk.subarray(this.chunkPos, this.chunkPos + take), this.prefixFill);
    this.prefixFill += take;
    this.chunkPos += take;
    if (this.prefixFill < FRAME_PREFIX_BYTES) return 0;
    const length = this.prefixView.getUint32(0, true);
    if (length === 0 || length > this.recordBytesMax) {
      throw mpError('EPROTO', `frame length ${length} is outside [1, ${this.recordBytesMax}]`,
        { consumedBytes: this.consumed, length });
    }
    this.prefixFill = 0;
    return length;
  }

  private accept(bytes: Uint8Array): StreamRecord {
    const r = decodeRecord(bytes);
    this.order.accept(r);
    if (r.kind === RecordKind.end) {
      if (!bytesEqual(this.running.digest(), r.checksum)) {
        throw mpError('ECKSUM', 'END checksum does not match the stream', { consumedBytes: this.consumed });
      }
    } else if (r.kind === RecordKind.write) {
      this.running.decodedWrite(bytes, r);
    } else {
      this.running.record(bytes);
    }
    this.consumed += FRAME_PREFIX_BYTES + bytes.length;
    this.recordCounts[recordKindName(r.kind)]++;
    return r;
  }
}
