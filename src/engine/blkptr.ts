// The on-disk block pointer codec: a BlockPointer (types.ts) <-> its fixed 128 bytes, and arrays
// of them (the body of an indirect block). Decode trusts nothing: every field is range-checked and
// garbage is EPROTO, so a bad parent block can never yield a pointer that reads wild offsets.
// An all-zero pointer is the never-written hole (HOLE in types.ts), so a zero-filled indirect
// block is a valid array of holes. Called by dnode.ts, tree.ts, label.ts (the uberblock's root
// pointer) and block-io.ts.
//
// Byte layout (little-endian, sizes in 512-byte sectors where that saves room):
//   0 / 16 / 32   DVA 0..2, 16 bytes each: vdev u32, asize sectors u32, offset sectors u64
//                 (slots past the DVA count are all zero)
//   48 DVA count u8   49 type u8   50 level u8   51 checksum kind u8 (0 only in a hole)
//   52..55 reserved (zero)
//   56 lsize sectors u32   60 psize sectors u32
//   64 birth txg u64   72 fill u64   80..95 reserved (zero)   96..127 checksum (32 bytes)

import {
  CHECKSUM_BYTES,
  ChecksumKind,
  assert,
  limits,
  mpError,
} from '../lib/index.js';
import { type BlockPointer, BlockType, type Dva, HOLE, type Txg, layout } from './types.js';

/** A DVA names one of at most this many top-level vdevs. */
export const TOP_VDEVS_MAX = 256;
/** Highest pointer level (0 = data); far above what any tree needs, but bounded. */
export const BLKPTR_LEVEL_MAX = 15;
/** Largest block (lsize/psize/asize): one Disk I/O. */
export const BLOCK_BYTES_MAX = limits.diskIoBytesMax;

const SECTOR = layout.sectorBytes;
const BP_BYTES = layout.blockPointerBytes;
const DVA_BYTES = 16;
const OFF_COUNT = 48;
const OFF_TYPE = 49;
const OFF_LEVEL = 50;
const OFF_CKSUM_KIND = 51;
const OFF_LSIZE = 56;
const OFF_PSIZE = 60;
const OFF_BIRTH = 64;
const OFF_FILL = 72;
const OFF_CHECKSUM = 96;
const RESERVED: readonly (readonly [number, number])[] = [
  [52, 56],
  [80, 96],
];

const BLOCK_TYPE_IDS: ReadonlySet<number> = new Set(Object.values(BlockType));
const CHECKSUM_KIND_IDS: ReadonlySet<number> = new Set(Object.values(ChecksumKind));

function isSizeBytes(n: number, allowZero: boolean): boolean {
  return Number.isSafeInteger(n) && n % SECTOR === 0 && n <= BLOCK_BYTES_MAX && (allowZero ? n >= 0 : n > 0);
}

function isZero(bytes: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (bytes[i] !== 0) return false;
  return true;
}

/**
 * Why `bp` is not a valid pointer, or null when it is. Shared by encode (a bad pointer there is a
 * programmer error) and decode (bad bytes are EPROTO), so the two can never disagree.
 */
export function blockPointerProblem(bp: BlockPointer): string | null {
  const hole = bp.dvas.length === 0;
  if (bp.dvas.length > layout.dvasMax) return `${bp.dvas.length} DVAs (at most ${layout.dvasMax})`;
  if (!BLOCK_TYPE_IDS.has(bp.type)) return `unknown block type ${bp.type}`;
  if (!Number.isInteger(bp.level) || bp.level < 0 || bp.level > BLKPTR_LEVEL_MAX) return `level ${bp.level}`;
  if (!Number.isSafeInteger(bp.birth) || bp.birth < 0) return `birth txg ${bp.birth}`;
  if (!Number.isSafeInteger(bp.fill) || bp.fill < 0) return `fill ${bp.fill}`;
  if (bp.checksum.length !== CHECKSUM_BYTES) return `checksum of ${bp.checksum.length} bytes`;
  if (!isSizeBytes(bp.lsize, hole)) return `lsize ${bp.lsize}`;
  if (!isSizeBytes(bp.psize, hole)) return `psize ${bp.psize}`;
  if (hole) return holeProblem(bp);
  if (!CHECKSUM_KIND_IDS.has(bp.checksumKind)) return `unknown checksum kind ${bp.checksumKind}`;
  if (bp.type === BlockType.none) return 'a written block of type none';
  if (bp.birth === 0) return 'a written block born in txg 0';
  // No compression field exists yet: physical bytes are the logical bytes.
  if (bp.psize !== bp.lsize) return `psize ${bp.psize} differs from lsize ${bp.lsize}`;
  return dvasProblem(bp.dvas, bp.psize);
}

function holeProblem(bp: BlockPointer): string | null {
  if (bp.checksumKind !== 0 && !CHECKSUM_KIND_IDS.has(bp.checksumKind)) return `unknown checksum kind ${bp.checksumKind}`;
  if (bp.psize !== 0 && bp.psize !== bp.lsize) return `hole psize ${bp.psize}`;
  if (bp.fill !== 0) return `hole with fill ${bp.fill}`;
  if (!isZero(bp.checksum, 0, CHECKSUM_BYTES)) return 'hole with a checksum';
  return null;
}

function dvasProblem(dvas: readonly Dva[], psize: number): string | null {
  for (let i = 0; i < dvas.length; i++) {
    const d = dvas[i] as Dva;
    if (!Number.isInteger(d.vdev) || d.vdev < 0 || d.vdev >= TOP_VDEVS_MAX) return `DVA ${i}: vdev ${d.vdev}`;
    if (!isSizeBytes(d.asize, false) || d.asize < psize) return `DVA ${i}: asize ${d.asize} for psize ${psize}`;
    if (!Number.isSafeInteger(d.offset) || d.offset < 0 || d.offset % SECTOR !== 0) return `DVA ${i}: offset ${d.offset}`;
    if (d.offset + d.asize > limits.diskBytesMax) return `DVA ${i}: offset ${d.offset} beyond 2^53`;
    for (let j = 0; j < i; j++) {
      const e = dvas[j];
      assert(e !== undefined);
      if (e.vdev === d.vdev && d.offset < e.offset + e.asize && e.offset < d.offset + d.asize) {
        return `DVAs ${j} and ${i} overlap`;
      }
    }
  }
  return null;
}

/** Writes `bp` into `out` at `at` (128 bytes; every byte of the slot is written). */
export function encodeBlockPointerInto(bp: BlockPointer, out: Uint8Array, at: number): void {
  const problem = blockPointerProblem(bp);
  assert(problem === null, `encodeBlockPointer: invalid pointer: ${problem}`);
  assert(Number.isInteger(at) && at >= 0 && at + BP_BYTES <= out.length, 'encodeBlockPointer: slot out of range');
  // One view and no per-field helpers: indirect blocks encode 128 pointers each, every txg.
  out.fill(0, at, at + BP_BYTES);
  const view = new DataView(out.buffer, out.byteOffset + at, BP_BYTES);
  for (let i = 0; i < bp.dvas.length; i++) {
    const d = bp.dvas[i] as Dva;
    view.setUint32(i * DVA_BYTES, d.vdev, true);
    view.setUint32(i * DVA_BYTES + 4, d.asize / SECTOR, true);
    setU64(view, i * DVA_BYTES + 8, d.offset / SECTOR);
  }
  out[at + OFF_COUNT] = bp.dvas.length;
  out[at + OFF_TYPE] = bp.type;
  out[at + OFF_LEVEL] = bp.level;
  out[at + OFF_CKSUM_KIND] = bp.checksumKind;
  view.setUint32(OFF_LSIZE, bp.lsize / SECTOR, true);
  view.setUint32(OFF_PSIZE, bp.psize / SECTOR, true);
  setU64(view, OFF_BIRTH, bp.birth);
  setU64(view, OFF_FILL, bp.fill);
  out.set(bp.checksum, at + OFF_CHECKSUM);
}

/** A safe non-negative integer (checked by blockPointerProblem) as a little-endian u64. */
function setU64(view: DataView, field: number, value: number): void {
  view.setUint32(field, value % 0x1_0000_0000, true);
  view.setUint32(field + 4, Math.floor(value / 0x1_0000_0000), true);
}

export function encodeBlockPointer(bp: BlockPointer): Uint8Array {
  const out = new Uint8Array(BP_BYTES);
  encodeBlockPointerInto(bp, out, 0);
  return out;
}

function garbage(why: string, at: number): Error {
  return mpError('EPROTO', `invalid block pointer: ${why}`, { at });
}

/** Reads a u64 field that must stay below 2^53; EPROTO (with the pointer's position) otherwise. */
function u64(view: DataView, field: number, at: number): number {
  const hi = view.getUint32(field + 4, true);
  if (hi > 0x1fffff) throw garbage(`64-bit field at ${field - at} exceeds 2^53`, at);
  return hi * 0x1_0000_0000 + view.getUint32(field, true);
}

/** Decodes the 128 bytes at `at` of `bytes`; EPROTO if they are not a valid pointer. */
export function decodeBlockPointerAt(bytes: Uint8Array, at: number): BlockPointer {
  if (!Number.isInteger(at) || at < 0 || at + BP_BYTES > bytes.length) {
    throw mpError('EPROTO', `block pointer at ${at} is outside ${bytes.length} bytes`, { at, length: bytes.length });
  }
  return decodeSlot(bytes, new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), at);
}

/**
 * Decodes one slot, `view` covering all of `bytes`. Reading a large object decodes whole indirect
 * blocks by the thousand, so this allocates only the pointer's own objects (no view or subarray
 * per field), and the never-written hole (all zeros, most of a sparse indirect block) is the
 * shared HOLE. Every check of blockPointerProblem still runs on every other pointer.
 */
function decodeSlot(bytes: Uint8Array, view: DataView, at: number): BlockPointer {
  if (isZero(bytes, at, at + BP_BYTES)) return HOLE;
  for (const [from, to] of RESERVED) if (!isZero(bytes, at + from, at + to)) throw garbage(`reserved bytes ${from}..${to} set`, at);
  const count = bytes[at + OFF_COUNT] ?? 0;
  if (count > layout.dvasMax) throw garbage(`${count} DVAs`, at);
  if (!isZero(bytes, at + count * DVA_BYTES, at + layout.dvasMax * DVA_BYTES)) throw garbage('data in an unused DVA slot', at);
  const dvas: Dva[] = [];
  for (let i = 0; i < count; i++) {
    const base = at + i * DVA_BYTES;
    const offsetSectors = u64(view, base + 8, at);
    if (offsetSectors > limits.diskBytesMax / SECTOR) throw garbage(`DVA ${i} offset beyond 2^53`, at);
    dvas.push({ vdev: view.getUint32(base, true), asize: view.getUint32(base + 4, true) * SECTOR, offset: offsetSectors * SECTOR });
  }
  const bp: BlockPointer = {
    dvas,
    lsize: view.getUint32(at + OFF_LSIZE, true) * SECTOR,
    psize: view.getUint32(at + OFF_PSIZE, true) * SECTOR,
    type: (bytes[at + OFF_TYPE] ?? 0) as BlockType,
    level: bytes[at + OFF_LEVEL] ?? 0,
    checksumKind: bytes[at + OFF_CKSUM_KIND] ?? 0,
    birth: u64(view, at + OFF_BIRTH, at) as Txg,
    fill: u64(view, at + OFF_FILL, at),
    checksum: bytes.slice(at + OFF_CHECKSUM, at + OFF_CHECKSUM + CHECKSUM_BYTES),
  };
  const problem = blockPointerProblem(bp);
  if (problem !== null) throw garbage(problem, at);
  return bp;
}

export function decodeBlockPointer(bytes: Uint8Array): BlockPointer {
  if (bytes.length !== BP_BYTES) {
    throw mpError('EPROTO', `a block pointer is ${BP_BYTES} bytes, got ${bytes.length}`, { length: bytes.length });
  }
  return decodeBlockPointerAt(bytes, 0);
}

/**
 * Encodes pointers back to back. With `totalBytes` (a multiple of 128, at least the pointers'
 * size) the rest is zero-filled: never-written holes, as an indirect block needs. The shared
 * HOLE (all zeros, most slots of a sparse indirect block) is left as the zero fill.
 */
export function encodeBlockPointers(bps: readonly BlockPointer[], totalBytes = bps.length * BP_BYTES): Uint8Array {
  assert(
    Number.isSafeInteger(totalBytes) && totalBytes % BP_BYTES === 0 && totalBytes >= bps.length * BP_BYTES,
    `encodeBlockPointers: ${bps.length} pointers do not fit ${totalBytes} bytes`,
  );
  const out = new Uint8Array(totalBytes);
  for (let i = 0; i < bps.length; i++) {
    const bp = bps[i] as BlockPointer;
    if (bp !== HOLE) encodeBlockPointerInto(bp, out, i * BP_BYTES);
  }
  return out;
}

/** Decodes an array of pointers (an indirect block); EPROTO on a partial pointer or any bad one. */
export function decodeBlockPointerArray(bytes: Uint8Array): BlockPointer[] {
  if (bytes.length % BP_BYTES !== 0) {
    throw mpError('EPROTO', `${bytes.length} bytes is not a whole number of block pointers`, { length: bytes.length });
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: BlockPointer[] = [];
  for (let at = 0; at < bytes.length; at += BP_BYTES) out.push(decodeSlot(bytes, view, at));
  return out;
}

/** Field-by-field equality (tests, and callers checking a pointer did not change). */
export function blockPointersEqual(a: BlockPointer, b: BlockPointer): boolean {
  if (a.dvas.length !== b.dvas.length) return false;
  for (const [i, d] of a.dvas.entries()) {
    const e = b.dvas[i];
    if (e === undefined || e.vdev !== d.vdev || e.offset !== d.offset || e.asize !== d.asize) return false;
  }
  return (
    a.lsize === b.lsize &&
    a.psize === b.psize &&
    a.type === b.type &&
    a.level === b.level &&
    a.checksumKind === b.checksumKind &&
    a.birth === b.birth &&
    a.fill === b.fill &&
    a.checksum.length === b.checksum.length &&
    a.checksum.every((x, i) => x === b.checksum[i])
  );
}
