// The on-disk form of a durable log (durable-log.ts): log blocks written back to back inside
// extents, and the table of extents kept in the MOS.
//
// Log block (little-endian, a whole number of sectors, zero padded):
//   0 magic "MPLOGBLK" | 8 log guid u64 | 16 extent generation u64 | 24 first record seq u64 |
//   32 record count u32 | 36 payload bytes u32 | 40..63 reserved | 64 fletcher-4 (32 bytes) of
//   the block's first 96 + payload bytes with this field zeroed | 96.. payload: each record as
//   [length u32][bytes].
// A block is valid only with the right magic, log guid, extent generation, first seq and
// checksum: the end of the log is the first block that is not, so no pointer to the end is ever
// written. A torn block fails its checksum; a stale block from an earlier use of the same space
// has another generation.
//
// Extent table entry (EXTENT_ENTRY_BYTES): 0 vdev u32 | 4 reserved | 8 offset u64 | 16 bytes u64 |
//   24 generation u64 | 32 txg that allocated it u64.

import { assert, bytesEqual, fletcher4, mpError, readU64, readU64Number, writeU64, writeU64Number } from '../lib/index.js';
import { type Txg, layout, txg } from './types.js';

export const LOG_BLOCK_HEADER_BYTES = 96;
export const EXTENT_ENTRY_BYTES = 40;
const MAGIC = new TextEncoder().encode('MPLOGBLK');
const CHECKSUM_AT = 64;
const CHECKSUM_BYTES = 32;

export interface LogExtent {
  readonly vdev: number;
  readonly offset: number;
  readonly bytes: number;
  readonly gen: bigint;
  /** The txg that allocated it (its space is freed as born then). */
  readonly txg: Txg;
}

export interface LogRecord {
  readonly seq: number;
  readonly data: Uint8Array;
}

/** Bytes one record of `length` adds to a block (its length prefix and bytes). */
export function recordBytes(length: number): number {
  return 4 + length;
}

/** Bytes on disk of a block whose header and records take `raw` bytes. */
export function blockBytesOf(raw: number): number {
  return Math.ceil(raw / layout.sectorBytes) * layout.sectorBytes;
}

/** Bytes a block holding records of these lengths takes on disk. */
export function blockBytesFor(lengths: readonly number[]): number {
  return blockBytesOf(LOG_BLOCK_HEADER_BYTES + lengths.reduce((s, n) => s + recordBytes(n), 0));
}

export function encodeLogBlock(guid: bigint, gen: bigint, records: readonly LogRecord[]): Uint8Array {
  return encodeLogBlockInto(new Uint8Array(blockBytesFor(records.map((r) => r.data.length))), guid, gen, records);
}

/**
 * encodeLogBlock into the start of `target` (a buffer the writer reuses: fresh memory costs more
 * to touch than the copy); returns the block, a view of `target`. Every byte of the block is
 * written, so what the buffer held before never reaches disk.
 */
export function encodeLogBlockInto(target: Uint8Array, guid: bigint, gen: bigint, records: readonly LogRecord[]): Uint8Array {
  const first = records[0];
  if (first === undefined) throw mpError('EINVAL', 'a log block holds at least one record', {});
  let raw = LOG_BLOCK_HEADER_BYTES;
  for (const r of records) raw += recordBytes(r.data.length);
  const out = target.subarray(0, blockBytesOf(raw));
  assert(out.length === blockBytesOf(raw), 'the log block buffer holds the block');
  const view = new DataView(out.buffer, out.byteOffset, out.length);
  out.fill(0, 0, LOG_BLOCK_HEADER_BYTES);
  out.set(MAGIC, 0);
  writeU64(out, 8, guid);
  writeU64(out, 16, gen);
  writeU64Number(out, 24, first.seq);
  view.setUint32(32, records.length, true);
  let at = LOG_BLOCK_HEADER_BYTES;
  for (const r of records) {
    view.setUint32(at, r.data.length, true);
    out.set(r.data, at + 4);
    at += 4 + r.data.length;
  }
  assert(at === raw);
  out.fill(0, at);
  view.setUint32(36, at - LOG_BLOCK_HEADER_BYTES, true);
  out.set(fletcher4(out.subarray(0, at)), CHECKSUM_AT);
  return out;
}

/**
 * The block at `at` in `bytes` if it is the valid continuation of the log (guid, generation and
 * first seq as expected), else null: the log ends before it.
 */
export function decodeLogBlock(
  bytes: Uint8Array,
  at: number,
  expect: { guid: bigint; gen: bigint; seq: number },
): { records: LogRecord[]; bytes: number } | null {
  if (at + LOG_BLOCK_HEADER_BYTES > bytes.length) return null;
  const head = bytes.subarray(at, at + LOG_BLOCK_HEADER_BYTES);
  if (!bytesEqual(head.subarray(0, 8), MAGIC)) return null;
  if (readU64(head, 8) !== expect.guid || readU64(head, 16) !== expect.gen || readU64Number(head, 24) !== expect.seq) return null;
  const view = new DataView(head.buffer, head.byteOffset, LOG_BLOCK_HEADER_BYTES);
  const count = view.getUint32(32, true);
  const payload = view.getUint32(36, true);
  const end = at + LOG_BLOCK_HEADER_BYTES + payload;
  if (count === 0 || end > bytes.length) return null;
  const copy = bytes.slice(at, end);
  copy.fill(0, CHECKSUM_AT, CHECKSUM_AT + CHECKSUM_BYTES);
  if (!bytesEqual(fletcher4(copy), head.subarray(CHECKSUM_AT, CHECKSUM_AT + CHECKSUM_BYTES))) return null;
  const records: LogRecord[] = [];
  let p = LOG_BLOCK_HEADER_BYTES;
  const cv = new DataView(copy.buffer);
  for (let i = 0; i < count; i++) {
    if (p + 4 > copy.length) return null;
    const len = cv.getUint32(p, true);
    if (p + 4 + len > copy.length) return null;
    records.push({ seq: expect.seq + i, data: copy.slice(p + 4, p + 4 + len) });
    p += 4 + len;
  }
  if (p !== copy.length) return null;
  return { records, bytes: Math.ceil((end - at) / layout.sectorBytes) * layout.sectorBytes };
}

export function encodeExtents(extents: readonly LogExtent[]): Uint8Array {
  const out = new Uint8Array(extents.length * EXTENT_ENTRY_BYTES);
  const view = new DataView(out.buffer);
  extents.forEach((e, i) => {
    const at = i * EXTENT_ENTRY_BYTES;
    view.setUint32(at, e.vdev, true);
    writeU64Number(out, at + 8, e.offset);
    writeU64Number(out, at + 16, e.bytes);
    writeU64(out, at + 24, e.gen);
    writeU64Number(out, at + 32, e.txg);
  });
  return out;
}

export function decodeExtents(bytes: Uint8Array, where: Record<string, unknown>): LogExtent[] {
  if (bytes.length % EXTENT_ENTRY_BYTES !== 0) throw mpError('EPROTO', 'log extent table has a partial entry', where);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const out: LogExtent[] = [];
  for (let at = 0; at < bytes.length; at += EXTENT_ENTRY_BYTES) {
    const e = {
      vdev: view.getUint32(at, true),
      offset: readU64Number(bytes, at + 8),
      bytes: readU64Number(bytes, at + 16),
      gen: readU64(bytes, at + 24),
      txg: txg(readU64Number(bytes, at + 32)),
    };
    if (e.bytes === 0 || e.offset % layout.sectorBytes !== 0 || e.bytes % layout.sectorBytes !== 0 || e.gen === 0n) {
      throw mpError('EPROTO', 'log extent table entry is invalid', { ...where, entry: at / EXTENT_ENTRY_BYTES });
    }
    out.push(e);
  }
  return out;
}
