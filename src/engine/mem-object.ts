// MemObject: an ObjectAccess over a growable in-memory byte array, for structures built inside
// objects (the ZAP first) to be tested and used without a DMU. It follows the ObjectAccess
// contract: reads past size() return zeros, writes past the end grow the object (the gap reads
// as zeros), truncate makes everything past the new size a hole. Buffers never alias: read()
// returns a copy, write() copies its input. It counts I/O so tests can bound an operation's work.

import { mpError } from '../lib/index.js';
import type { ObjectAccess } from './types.js';

/** Largest MemObject: it lives in one JS array buffer. */
export const MEM_OBJECT_BYTES_MAX = 1024 * 1024 * 1024;

export interface MemObjectStats {
  reads: number;
  writes: number;
  readBytes: number;
  writtenBytes: number;
}

function checkRange(offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw mpError('EINVAL', 'object range must be non-negative integers', { offset, length });
  }
  if (offset + length > MEM_OBJECT_BYTES_MAX) {
    throw mpError('EINVAL', `object range ends past ${MEM_OBJECT_BYTES_MAX} bytes`, { offset, length });
  }
}

/** Runs `fn` now; its result or its throw becomes the promise's outcome. */
function settle<T>(fn: () => T): Promise<T> {
  return new Promise<T>((resolve) => resolve(fn()));
}

export class MemObject implements ObjectAccess {
  private buf: Uint8Array;
  private length = 0;
  readonly stats: MemObjectStats = { reads: 0, writes: 0, readBytes: 0, writtenBytes: 0 };

  /** An object holding a copy of `initial` (empty by default). */
  constructor(initial: Uint8Array = new Uint8Array(0)) {
    this.buf = new Uint8Array(Math.max(4096, initial.length));
    this.buf.set(initial);
    this.length = initial.length;
  }

  size(): number {
    return this.length;
  }

  read(offset: number, length: number): Promise<Uint8Array> {
    return settle(() => {
      checkRange(offset, length);
      const out = new Uint8Array(length);
      if (offset < this.length) out.set(this.buf.subarray(offset, Math.min(this.length, offset + length)));
      this.stats.reads++;
      this.stats.readBytes += length;
      return out;
    });
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    return settle(() => {
      checkRange(offset, data.length);
      const end = offset + data.length;
      this.reserve(end);
      this.buf.set(data, offset);
      if (end > this.length) this.length = end;
      this.stats.writes++;
      this.stats.writtenBytes += data.length;
    });
  }

  truncate(size: number): Promise<void> {
    return settle(() => {
      checkRange(size, 0);
      if (size < this.length) this.buf.fill(0, size, this.length);
      else this.reserve(size);
      this.length = size;
    });
  }

  /** A copy of the object's bytes. */
  bytes(): Uint8Array {
    return this.buf.slice(0, this.length);
  }

  private reserve(bytes: number): void {
    if (bytes <= this.buf.length) return;
    // Bytes past `length` are always zero (truncate clears them), so growth keeps holes zero.
    const next = new Uint8Array(Math.min(MEM_OBJECT_BYTES_MAX, Math.max(bytes, this.buf.length * 2)));
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }
}
