// The Disk interface: one vdev's bytes, as the engine sees them. FileDisk (file-disk.ts) is the
// real one, SimDisk (sim-disk.ts) the simulated one with crashes and faults; disk.contract.ts
// runs one suite against both.
//
// Rules every implementation keeps:
// - Offsets and lengths are multiples of limits.sectorBytes, within [0, size()], and a single I/O
//   is at most limits.diskIoBytesMax. Anything else is EINVAL and touches nothing.
// - A write is volatile until a later sync() resolves: a crash may keep, drop or tear it (sector
//   granularity). sync() makes durable every write and resize that resolved before sync() began.
// - Buffers: read() returns a new buffer the caller owns, or fills and returns the one it is given
//   (`into`, exactly the length read: a reader that reuses its buffers). write() may use `data`
//   until its promise resolves; the caller must not change it before then, and owns it again
//   afterwards. The same holds for the parts given to writev(), which is write() of the parts back
//   to back: one I/O, checked and torn as the write of their concatenation would be (the parts
//   themselves may be of any length).
// - Ordering: two overlapping writes in flight at once have no defined order; callers never issue
//   them. A read that overlaps an in-flight write may see either version.
// - Errors: EINVAL (bad range or argument), EIO (device error), ENOSPC (write or resize could not
//   get space), ENOTSUP (resize of a block device). No other codes.

import { concatBytes } from './bytes.js';
import { mpError } from './errors.js';
import { limits } from './limits.js';

export interface Disk {
  /** Addressable bytes, a multiple of limits.sectorBytes. */
  size(): number;
  /** Reads [offset, offset+length) into a new buffer, or into `into` (exactly `length` bytes). */
  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array>;
  write(offset: number, data: Uint8Array): Promise<void>;
  /** write() of `parts` back to back from `offset`, without gathering them first where the disk can. */
  writev(offset: number, parts: readonly Uint8Array[]): Promise<void>;
  /**
   * write() that is durable when it resolves, without making other writes durable (an intent log
   * block must not wait for a txg's data). A crash while it is in flight may keep, drop or tear it.
   */
  writeDurable(offset: number, data: Uint8Array): Promise<void>;
  sync(): Promise<void>;
  /** Grows (with zeros) or shrinks the disk; volatile until sync(). */
  resize(bytes: number): Promise<void>;
  close(): Promise<void>;
}

function isSectorMultiple(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0 && n % limits.sectorBytes === 0;
}

/** Validates one I/O's range against a disk of `size` bytes; EINVAL if it is not allowed. */
export function checkDiskRange(offset: number, length: number, size: number): void {
  const details = { offset, length, size };
  if (!isSectorMultiple(offset) || !isSectorMultiple(length)) {
    throw mpError('EINVAL', `disk I/O must be whole ${limits.sectorBytes}-byte sectors`, details);
  }
  if (length > limits.diskIoBytesMax) {
    throw mpError('EINVAL', `disk I/O of ${length} bytes exceeds ${limits.diskIoBytesMax}`, details);
  }
  if (offset + length > size) {
    throw mpError('EINVAL', `disk I/O [${offset}, ${offset + length}) is past the end (${size})`, details);
  }
}

/** Validates a read's `into` buffer against its length; EINVAL if it is not exactly that long. */
export function checkReadInto(length: number, into: Uint8Array | undefined): void {
  if (into !== undefined && into.length !== length) {
    throw mpError('EINVAL', `a read of ${length} bytes was given a buffer of ${into.length}`, { length, intoBytes: into.length });
  }
}

/** writev() for a disk that writes only whole buffers: write() of the parts gathered into one. */
export function writeGathered(disk: Pick<Disk, 'write'>, offset: number, parts: readonly Uint8Array[]): Promise<void> {
  return disk.write(offset, parts.length === 1 && parts[0] !== undefined ? parts[0] : concatBytes(parts));
}

/** Validates a new disk size; EINVAL if it is not allowed. */
export function checkDiskSize(bytes: number, maxBytes: number = limits.diskBytesMax): void {
  if (!isSectorMultiple(bytes) || bytes > maxBytes) {
    throw mpError('EINVAL', `disk size must be whole sectors up to ${maxBytes} bytes, got ${bytes}`, { bytes });
  }
}
