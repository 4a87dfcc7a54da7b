// Byte helpers shared by every layer: comparison, hex, concatenation and 64-bit little-endian
// fields. 64-bit values are bigint at the API (guids, checksum words) and exact; offsets that fit a
// JS number use the *Number variants, which refuse values above 2^53.

import { mpError } from './errors.js';

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

export function fromHex(hex: string): Uint8Array {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) {
    throw mpError('EINVAL', 'not a hex string of whole bytes', { length: hex.length });
  }
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

/**
 * A copy of `bytes` (a plain Uint8Array, whatever `bytes` is: Buffer.prototype.slice would
 * return a view). Faster than allocating and then setting: the new memory is not zeroed first,
 * which on this kind of VM costs more than the copy for buffers of 128 KiB and up.
 */
export function copyBytes(bytes: Uint8Array, start = 0, end = bytes.length): Uint8Array {
  return Uint8Array.prototype.slice.call(bytes, start, end);
}

export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) total += p.length;
  if (parts.length === 1 && parts[0] !== undefined) return copyBytes(parts[0]);
  const out = new Uint8Array(total);
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

function view(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

function checkField(buf: Uint8Array, offset: number, size: number): void {
  if (!Number.isInteger(offset) || offset < 0 || offset + size > buf.length) {
    throw mpError('EINVAL', `field of ${size} bytes at ${offset} is outside a buffer of ${buf.length}`, {
      offset,
      size,
      length: buf.length,
    });
  }
}

export function readU64(buf: Uint8Array, offset: number): bigint {
  checkField(buf, offset, 8);
  return view(buf).getBigUint64(offset, true);
}

export function writeU64(buf: Uint8Array, offset: number, value: bigint): void {
  checkField(buf, offset, 8);
  if (value < 0n || value > 0xffff_ffff_ffff_ffffn) {
    throw mpError('EINVAL', `value ${value} does not fit 64 unsigned bits`, { offset });
  }
  view(buf).setBigUint64(offset, value, true);
}

/** Reads a u64 that must be a safe integer (offsets, sizes, txgs); EPROTO otherwise. */
export function readU64Number(buf: Uint8Array, offset: number): number {
  checkField(buf, offset, 8);
  const v = view(buf);
  const lo = v.getUint32(offset, true);
  const hi = v.getUint32(offset + 4, true);
  if (hi > 0x1fffff) throw mpError('EPROTO', `64-bit field at ${offset} exceeds 2^53`, { offset });
  return hi * 0x1_0000_0000 + lo;
}

export function writeU64Number(buf: Uint8Array, offset: number, value: number): void {
  checkField(buf, offset, 8);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw mpError('EINVAL', `value ${value} is not a non-negative safe integer`, { offset });
  }
  const v = view(buf);
  v.setUint32(offset, value % 0x1_0000_0000, true);
  v.setUint32(offset + 4, Math.floor(value / 0x1_0000_0000), true);
}

/** `parts` without their first `n` bytes (views, no copy). */
export function skipBytes(parts: readonly Uint8Array[], n: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let skip = n;
  for (const p of parts) {
    if (skip >= p.length) {
      skip -= p.length;
      continue;
    }
    out.push(skip > 0 ? p.subarray(skip) : p);
    skip = 0;
  }
  return out;
}
