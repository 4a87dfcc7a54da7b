// The on-disk byte layout of a metaslab's space map, and the one state transition both writing
// and replaying apply (applyChanges). space-map.ts owns the protocol: which slot is live, when to
// append, when to condense, how load treats crashes. This file is pure and does no I/O.
// Little-endian throughout; one sector = 512 bytes.
//
// Reserved area at the start of every metaslab: slot A then slot B, each
//   [header: 1 sector][map: mapBytes][log: logBytes]
// mapBytes = ceil(2 bits * sectors of the metaslab / 8) rounded up to a sector;
// logBytes = max(LOG_BYTES_MIN, mapBytes) unless a test shrinks it. Nothing here is allocatable.
//
// Slot header (first 104 bytes of its sector, the rest zero):
//   0 u32 magic 'MPSM'      4 u16 version (1)     6 u16 flags (0)
//   8 u64 generation       16 u64 base txg        24 u64 metaslab bytes
//  32 u32 mapBytes         36 u32 logBytes
//  40 [32] fletcher-4 of the map bytes
//  72 [32] fletcher-4 of header bytes [0, 72)
//
// Map: 2 bits per sector of the metaslab (sector i: byte i>>2, bits 2*(i&3)), the state at base
// txg B: 0 free, 1 allocated, 2 freed in txg B-1, 3 freed in txg B. Frees younger than TXG_DEFER
// must stay deferred across a condense, hence the two "freed" states (this is why the map has 2
// bits per sector, not 1). Sectors of the reserved area are 0.
//
// Log record (sector-aligned, one or more sectors):
//   0 u32 magic 'MPSL'      4 u16 version (1)     6 u16 flags (1 = handoff)
//   8 u32 sectors          12 u32 alloc count     16 u32 free count   20 u32 payload bytes
//  24 u64 txg              32 u64 generation (must equal the slot's)
//  40 [32] fletcher-4 of bytes [128, sectors*512) (payload and zero padding)
//  72 [32] fletcher-4 of header bytes [0, 72)
// 128 payload: the allocs, then the frees, each list ascending; per range two LEB128 varints:
//     sectors from the end of the previous range of the list (from the metaslab start for the
//     first), and the length in sectors. Offsets are relative to the metaslab start.
// A handoff record (no payload) is written into the old slot when a condense moves the log to
// the other slot: it says "a newer slot exists from this txg on".

import { bytesEqual, fletcher4, mpError, readU64, readU64Number, writeU64Number } from '../lib/index.js';
import { assert } from '../lib/index.js';
import { layout } from './types.js';
import { type Range, RangeTree } from './range-tree.js';

/** Txgs a freed range stays unallocatable after the txg that freed it (see metaslab.ts). */
export const TXG_DEFER = 2;
export const SECTOR_BYTES = layout.sectorBytes;
export const SLOT_MAGIC = 0x4d50534d; // 'MPSM'
export const RECORD_MAGIC = 0x4d50534c; // 'MPSL'
export const SPACE_MAP_VERSION = 1;
export const RECORD_HEADER_BYTES = 128;
export const RECORD_FLAG_HANDOFF = 1;
/** Smallest log area: room for a few small records before a condense. */
export const LOG_BYTES_MIN = 8 * SECTOR_BYTES;

export const MapState = { free: 0, allocated: 1, freedPrev: 2, freedBase: 3 } as const;

const HEADER_SUM_AT = 72;
const BODY_SUM_AT = 40;

/** Where everything of one metaslab's space map lies, from its size alone. */
export interface SpaceMapLayout {
  readonly msBytes: number;
  /** Sectors of the metaslab (bits of the map / 2). */
  readonly sectors: number;
  readonly mapBytes: number;
  readonly logBytes: number;
  /** Header + map + log. */
  readonly slotBytes: number;
  /** Both slots: the metaslab's first reservedBytes are never allocatable. */
  readonly reservedBytes: number;
}

export function spaceMapLayout(msBytes: number, logBytes?: number): SpaceMapLayout {
  assert(Number.isSafeInteger(msBytes) && msBytes > 0 && msBytes % SECTOR_BYTES === 0, `space map: bad metaslab size ${msBytes}`);
  const sectors = msBytes / SECTOR_BYTES;
  const mapBytes = roundUp(Math.ceil(sectors / 4), SECTOR_BYTES);
  const log = logBytes ?? Math.max(LOG_BYTES_MIN, mapBytes);
  assert(log % SECTOR_BYTES === 0 && log >= 2 * SECTOR_BYTES, `space map: bad log size ${log}`);
  const slotBytes = SECTOR_BYTES + mapBytes + log;
  return { msBytes, sectors, mapBytes, logBytes: log, slotBytes, reservedBytes: 2 * slotBytes };
}

export function roundUp(n: number, unit: number): number {
  return Math.ceil(n / unit) * unit;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

// --- slot header ---------------------------------------------------------------------------------

export interface SlotHeader {
  readonly generation: number;
  readonly baseTxg: number;
  readonly mapChecksum: Uint8Array;
}

export function encodeSlotHeader(l: SpaceMapLayout, h: SlotHeader): Uint8Array {
  const b = new Uint8Array(SECTOR_BYTES);
  const v = view(b);
  v.setUint32(0, SLOT_MAGIC, true);
  v.setUint16(4, SPACE_MAP_VERSION, true);
  writeU64Number(b, 8, h.generation);
  writeU64Number(b, 16, h.baseTxg);
  writeU64Number(b, 24, l.msBytes);
  v.setUint32(32, l.mapBytes, true);
  v.setUint32(36, l.logBytes, true);
  b.set(h.mapChecksum, 40);
  b.set(fletcher4(b.subarray(0, HEADER_SUM_AT)), HEADER_SUM_AT);
  return b;
}

/** Magic and header checksum hold: the sector is a slot header as written (never throws). */
export function slotHeaderIntact(b: Uint8Array): boolean {
  if (b.length < SECTOR_BYTES || view(b).getUint32(0, true) !== SLOT_MAGIC) return false;
  return bytesEqual(fletcher4(b.subarray(0, HEADER_SUM_AT)), b.subarray(HEADER_SUM_AT, HEADER_SUM_AT + 32));
}

/** Decodes an intact header; EPROTO when it does not describe this layout. */
export function decodeSlotHeader(l: SpaceMapLayout, b: Uint8Array, where: Record<string, unknown>): SlotHeader {
  assert(slotHeaderIntact(b), 'decodeSlotHeader: header not intact');
  const v = view(b);
  const version = v.getUint16(4, true);
  const msBytes = readU64Number(b, 24);
  const mapBytes = v.getUint32(32, true);
  const logBytes = v.getUint32(36, true);
  if (version !== SPACE_MAP_VERSION || msBytes !== l.msBytes || mapBytes !== l.mapBytes || logBytes !== l.logBytes) {
    throw mpError('EPROTO', 'space map slot header does not match the metaslab layout', {
      ...where, version, msBytes, mapBytes, logBytes, expected: l,
    });
  }
  return { generation: readU64Number(b, 8), baseTxg: readU64Number(b, 16), mapChecksum: b.slice(40, 72) };
}

// --- log records ---------------------------------------------------------------------------------

export interface RecordHeader {
  readonly flags: number;
  readonly sectors: number;
  readonly allocCount: number;
  readonly freeCount: number;
  readonly payloadBytes: number;
  readonly txg: number;
  readonly generation: number;
}

export interface RecordChanges {
  readonly allocs: readonly Range[];
  readonly frees: readonly Range[];
}

function varintBytes(n: number): number {
  let bytes = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    bytes++;
  }
  return bytes;
}

function putVarint(b: Uint8Array, at: number, n: number): number {
  while (n >= 128) {
    b[at++] = (n % 128) | 128;
    n = Math.floor(n / 128);
  }
  b[at++] = n;
  return at;
}

/** Relative sector pairs (gap, length) of one ascending list. */
function listPairs(msStart: number, list: readonly Range[]): number[] {
  const out: number[] = [];
  let prevEnd = 0;
  for (const r of list) {
    const s = (r.start - msStart) / SECTOR_BYTES;
    const n = r.size / SECTOR_BYTES;
    assert(Number.isInteger(s) && Number.isInteger(n) && n > 0 && s >= prevEnd, 'space map record: ranges unaligned or unsorted');
    out.push(s - prevEnd, n);
    prevEnd = s + n;
  }
  return out;
}

/** Encodes a record (sector-aligned). A handoff record has empty lists and flags = handoff. */
export function encodeRecord(msStart: number, txg: number, generation: number, flags: number, c: RecordChanges): Uint8Array {
  const pairs = [...listPairs(msStart, c.allocs), ...listPairs(msStart, c.frees)];
  const payloadBytes = pairs.reduce((sum, n) => sum + varintBytes(n), 0);
  const b = new Uint8Array(roundUp(RECORD_HEADER_BYTES + payloadBytes, SECTOR_BYTES));
  let at = RECORD_HEADER_BYTES;
  for (const n of pairs) at = putVarint(b, at, n);
  const v = view(b);
  v.setUint32(0, RECORD_MAGIC, true);
  v.setUint16(4, SPACE_MAP_VERSION, true);
  v.setUint16(6, flags, true);
  v.setUint32(8, b.length / SECTOR_BYTES, true);
  v.setUint32(12, c.allocs.length, true);
  v.setUint32(16, c.frees.length, true);
  v.setUint32(20, payloadBytes, true);
  writeU64Number(b, 24, txg);
  writeU64Number(b, 32, generation);
  b.set(fletcher4(b.subarray(RECORD_HEADER_BYTES)), BODY_SUM_AT);
  b.set(fletcher4(b.subarray(0, HEADER_SUM_AT)), HEADER_SUM_AT);
  return b;
}

/** The first sector is a record header as written, of this generation (never throws). */
export function recordHeaderIntact(b: Uint8Array, generation: number): boolean {
  if (b.length < SECTOR_BYTES || view(b).getUint32(0, true) !== RECORD_MAGIC) return false;
  if (!bytesEqual(fletcher4(b.subarray(0, HEADER_SUM_AT)), b.subarray(HEADER_SUM_AT, HEADER_SUM_AT + 32))) return false;
  return readU64(b, 32) === BigInt(generation);
}

/** Decodes an intact header; EPROTO when its fields break the format. */
export function decodeRecordHeader(b: Uint8Array, where: Record<string, unknown>): RecordHeader {
  const v = view(b);
  const h: RecordHeader = {
    flags: v.getUint16(6, true),
    sectors: v.getUint32(8, true),
    allocCount: v.getUint32(12, true),
    freeCount: v.getUint32(16, true),
    payloadBytes: v.getUint32(20, true),
    txg: readU64Number(b, 24),
    generation: readU64Number(b, 32),
  };
  const fits = h.sectors >= 1 && RECORD_HEADER_BYTES + h.payloadBytes <= h.sectors * SECTOR_BYTES;
  const handoffOk = h.flags === 0 || (h.flags === RECORD_FLAG_HANDOFF && h.allocCount + h.freeCount === 0);
  if (v.getUint16(4, true) !== SPACE_MAP_VERSION || !fits || !handoffOk || h.txg === 0) {
    throw mpError('EPROTO', 'space map record header breaks the format', { ...where, ...h });
  }
  return h;
}

/** The whole record's body checksum holds (b holds exactly h.sectors sectors). */
export function recordBodyIntact(b: Uint8Array): boolean {
  return bytesEqual(fletcher4(b.subarray(RECORD_HEADER_BYTES)), b.subarray(BODY_SUM_AT, BODY_SUM_AT + 32));
}

/** Decodes the payload into absolute ranges; EPROTO when it is malformed or leaves the metaslab. */
export function decodeRecordPayload(
  l: SpaceMapLayout, msStart: number, h: RecordHeader, b: Uint8Array, where: Record<string, unknown>,
): RecordChanges {
  const end = RECORD_HEADER_BYTES + h.payloadBytes;
  let at = RECORD_HEADER_BYTES;
  const bad = (why: string): never => {
    throw mpError('EPROTO', `space map record payload: ${why}`, { ...where, txg: h.txg });
  };
  const varint = (): number => {
    let n = 0;
    for (let scale = 1; ; scale *= 128) {
      if (at >= end || scale > 2 ** 49) bad('truncated varint');
      const byte = b[at++] as number;
      n += (byte & 127) * scale;
      if (byte < 128) return n;
    }
  };
  const reservedSectors = l.reservedBytes / SECTOR_BYTES;
  const list = (count: number): Range[] => {
    const out: Range[] = [];
    let prevEnd = 0;
    for (let i = 0; i < count; i++) {
      const s = prevEnd + varint();
      const n = varint();
      if (n === 0 || s < reservedSectors || s + n > l.sectors) bad(`range [${s}, +${n}) outside the allocatable sectors`);
      out.push({ start: msStart + s * SECTOR_BYTES, size: n * SECTOR_BYTES });
      prevEnd = s + n;
    }
    return out;
  };
  const allocs = list(h.allocCount);
  const frees = list(h.freeCount);
  if (at !== end) bad('trailing bytes');
  return { allocs, frees };
}

// --- the map -------------------------------------------------------------------------------------

/** Sets `count` sectors from `first` to `value` (2 bits each) in a map. */
export function setMapRun(map: Uint8Array, first: number, count: number, value: number): void {
  let s = first;
  const end = first + count;
  for (; s < end && (s & 3) !== 0; s++) setMapSector(map, s, value);
  const pattern = value * 0x55;
  for (; s + 4 <= end; s += 4) map[s >>> 2] = pattern;
  for (; s < end; s++) setMapSector(map, s, value);
}

function setMapSector(map: Uint8Array, s: number, value: number): void {
  const i = s >>> 2;
  const shift = (s & 3) * 2;
  map[i] = ((map[i] as number) & ~(3 << shift)) | (value << shift);
}

/**
 * Calls `run(value, firstSector, count)` for every maximal run of non-free sectors of the map.
 * Between runs, zero words are passed over four bytes at a time (most of a young map is free).
 */
export function forEachMapRun(map: Uint8Array, sectors: number, run: (value: number, first: number, count: number) => void): void {
  const bytes = Math.min(map.length, Math.ceil(sectors / 4));
  const words = map.byteOffset % 4 === 0 ? new Uint32Array(map.buffer, map.byteOffset, bytes >>> 2) : null;
  let value = 0;
  let start = 0;
  let i = 0;
  while (i < bytes) {
    if (value === 0) {
      if (words !== null && (i & 3) === 0) {
        let w = i >>> 2;
        const n = words.length;
        while (w + 4 <= n && ((words[w] as number) | (words[w + 1] as number) | (words[w + 2] as number) | (words[w + 3] as number)) === 0) w += 4;
        while (w < n && words[w] === 0) w++;
        i = w << 2;
        if (i >= bytes) break;
      }
      if (map[i] === 0) {
        i++;
        continue;
      }
    }
    const byte = map[i] as number;
    for (let k = 0; k < 4 && i * 4 + k < sectors; k++) {
      const v = (byte >>> (2 * k)) & 3;
      if (v === value) continue;
      const s = i * 4 + k;
      if (value !== 0) run(value, start, s - start);
      value = v;
      start = s;
    }
    i++;
  }
  if (value !== 0) run(value, start, sectors - start);
}

// --- the state a space map describes -------------------------------------------------------------

/** What a space map says after some txg: allocated ranges, and frees still within TXG_DEFER. */
export interface SpaceMapState {
  allocated: RangeTree;
  recentFrees: Map<number, RangeTree>;
}

/** Applies one txg's changes to a state; returns why they are inconsistent, or null. */
export function applyChanges(s: SpaceMapState, txg: number, allocs: readonly Range[], frees: readonly Range[]): string | null {
  for (const t of s.recentFrees.keys()) if (t <= txg - TXG_DEFER - 1) s.recentFrees.delete(t);
  if (frees.length > 0) {
    const freed = new RangeTree(SECTOR_BYTES);
    for (const r of frees) {
      if (!s.allocated.contains(r.start, r.size)) return `free of unallocated [${r.start}, +${r.size}) in txg ${txg}`;
      s.allocated.remove(r.start, r.size);
      freed.add(r.start, r.size);
    }
    s.recentFrees.set(txg, freed);
  }
  for (const r of allocs) {
    if (s.allocated.overlaps(r.start, r.size)) return `double allocation of [${r.start}, +${r.size}) in txg ${txg}`;
    for (const [t, tree] of s.recentFrees) {
      if (tree.overlaps(r.start, r.size)) return `allocation in txg ${txg} of [${r.start}, +${r.size}) freed in txg ${t}`;
    }
    s.allocated.add(r.start, r.size);
  }
  return null;
}

