// Reading a space map back: slot headers, the map, the log, each from the first copy, asking the
// other copies (VdevIo accept) only when the bytes are damaged, because every rejected copy counts
// a checksum error on the vdev. The first copy's bytes come from one read of the metaslab's whole
// reserved area (loadReads). I/O errors gain the metaslab's name. Used by SpaceMap.load
// (space-map.ts), which owns the protocol; these helpers only fetch and verify.

import { type MirrorpoolError, assert, bytesEqual, fletcher4, hasCode, mpError, readU64 } from '../lib/index.js';
import type { VdevIo } from './types.js';
import { RangeTree } from './range-tree.js';
import {
  MapState, SECTOR_BYTES, type SlotHeader, type SpaceMapLayout, type SpaceMapState, decodeSlotHeader,
  forEachMapRun, slotHeaderIntact,
} from './space-map-format.js';

/** Bytes read at once while scanning a log at load. */
export const LOG_READ_CHUNK_BYTES = 64 * 1024;

/**
 * The reads of one load, served from a copy of the span (all of the reserved area, or of the
 * newer slot; see loadSpan) taken with one read of the first copy, and from the headers the span
 * was chosen by: a load is otherwise five or more small reads, each waiting for the one before
 * (192 metaslabs of a 3 GiB vdev took about half of an import). Reads with an accept check (other
 * copies wanted) and reads outside what was read go to `io`. When the span cannot be read in one
 * piece (EIO), every read goes to `io`, so the error a load reports names the part that failed.
 * The bytes returned are views of the copies: read only, and gone once the load ends when the
 * span is read into `into` (a buffer loads take turns with).
 */
export async function loadReads(io: VdevIo, span: LoadSpan, into?: Uint8Array): Promise<VdevIo> {
  let area: Uint8Array;
  try {
    area = await io.read(span.start, span.bytes, undefined, into);
  } catch (e) {
    if (!hasCode(e, 'EIO')) throw e;
    return io;
  }
  const pieces = [{ start: span.start, bytes: area }, ...span.known];
  return {
    index: io.index,
    asizeBytes: io.asizeBytes,
    read: (offset, length, accept, into) => {
      const piece = pieces.find((p) => offset >= p.start && offset + length <= p.start + p.bytes.length);
      if (accept !== undefined || into !== undefined || piece === undefined) return io.read(offset, length, accept, into);
      return Promise.resolve(piece.bytes.subarray(offset - piece.start, offset - piece.start + length));
    },
    write: () => {
      throw new Error('space map load: the reads of a load do not write');
    },
  };
}

/**
 * Whether the slot's map is all free, known from its header alone: the first sum of fletcher-4
 * over the map's 32-bit words cannot wrap (fewer than 2^32 words of less than 2^32 each), so it
 * is zero only when every word is, and the whole checksum of a zero map is zero.
 */
export function mapIsFree(h: SlotHeader): boolean {
  return allZero(h.mapChecksum);
}

/** The fletcher-4 of an all-zero map of any size: what a header names a free map by. */
export const FREE_MAP_CHECKSUM: Uint8Array = new Uint8Array(32);

/**
 * What a load reads at once, [start, start + bytes), and what it has read already: the first
 * copy's two slot headers, when it chose the span by them.
 */
export interface LoadSpan {
  readonly start: number;
  readonly bytes: number;
  readonly known: readonly { readonly start: number; readonly bytes: Uint8Array }[];
}

/** Reserved areas up to this size are read whole by a load; a larger one only in its newer slot. */
export const LOAD_WHOLE_AREA_BYTES_MAX = 256 * 1024;

/**
 * The span of the reserved area a load reads at once (loadReads): all of it when small, else the
 * slot the first copy's two headers name (its header, map and first LOG_READ_CHUNK_BYTES of log):
 * of a 1 GiB metaslab's 2 MiB that is 577 KiB. Any doubt (a header damaged or unreadable on the
 * first copy, no usable slot) means the whole area, and the load's own checks speak.
 */
export async function loadSpan(
  io: VdevIo, msStart: number, l: SpaceMapLayout, ubTxg: number, wholeAreaBytesMax = LOAD_WHOLE_AREA_BYTES_MAX,
): Promise<LoadSpan> {
  const whole = { start: msStart, bytes: l.reservedBytes, known: [] };
  if (l.reservedBytes <= wholeAreaBytesMax) return whole;
  try {
    const heads = await Promise.all([0, 1].map((slot) => io.read(msStart + slot * l.slotBytes, SECTOR_BYTES)));
    const headers = heads.map((b) => (allZero(b) ? null : slotHeaderIntact(b) ? decodeSlotHeader(l, b, {}) : undefined));
    if (headers.includes(undefined)) return whole;
    const slot = pickSlot(headers as (SlotHeader | null)[], ubTxg, {});
    const known = heads.map((bytes, i) => ({ start: msStart + i * l.slotBytes, bytes }));
    const log = Math.min(l.logBytes, LOG_READ_CHUNK_BYTES);
    const header = headers[slot];
    const slotStart = msStart + slot * l.slotBytes;
    // An all-free map is never read: only the start of the log.
    if (header !== null && header !== undefined && mapIsFree(header)) return { start: slotStart + SECTOR_BYTES + l.mapBytes, bytes: log, known };
    return { start: slotStart, bytes: SECTOR_BYTES + l.mapBytes + log, known };
  } catch (e) {
    if (hasCode(e, 'EIO') || hasCode(e, 'EPROTO')) return whole;
    throw e;
  }
}

/** Reads with an accept check; null when copies were read but none was accepted (ECKSUM). */
export async function readAccepted(
  io: VdevIo, offset: number, length: number, accept: (b: Uint8Array) => boolean, where: Record<string, unknown>,
): Promise<Uint8Array | null> {
  try {
    return await io.read(offset, length, accept);
  } catch (e) {
    if (hasCode(e, 'ECKSUM')) return null;
    throw withWhere(e, where);
  }
}

function withWhere(e: unknown, where: Record<string, unknown>): unknown {
  if (!hasCode(e, 'EIO')) return e;
  const err: MirrorpoolError = e;
  return mpError('EIO', `space map unreadable: ${err.message}`, { ...err.details, ...where }, e);
}

export function allZero(b: Uint8Array): boolean {
  for (const x of b) if (x !== 0) return false;
  return true;
}

/**
 * A slot header from the first copy; other copies are asked only when that one is damaged (an
 * erased, all-zero header is simply absent: asking would count checksum errors on every import).
 */
export async function readSlotHeader(io: VdevIo, msStart: number, l: SpaceMapLayout, slot: number, where: Record<string, unknown>): Promise<SlotHeader | null> {
  const at = { ...where, slot };
  const offset = msStart + slot * l.slotBytes;
  let b: Uint8Array | null = await readPlain(io, offset, SECTOR_BYTES, at);
  if (allZero(b)) return null;
  if (!slotHeaderIntact(b)) b = await readAccepted(io, offset, SECTOR_BYTES, slotHeaderIntact, at);
  return b === null ? null : decodeSlotHeader(l, b, at);
}

/** The slot a handoff record points to, on whichever copy has it; null when none does. */
export async function findNewerSlot(
  io: VdevIo, msStart: number, l: SpaceMapLayout, slot: number, generation: number, baseTxg: number, where: Record<string, unknown>,
): Promise<SlotHeader | null> {
  const at = { ...where, slot };
  const accept = (b: Uint8Array): boolean => {
    if (!slotHeaderIntact(b)) return false;
    return readU64(b, 8) === BigInt(generation) && readU64(b, 16) === BigInt(baseTxg);
  };
  const b = await readAccepted(io, msStart + slot * l.slotBytes, SECTOR_BYTES, accept, at);
  return b === null ? null : decodeSlotHeader(l, b, at);
}

export async function readPlain(io: VdevIo, offset: number, length: number, where: Record<string, unknown>): Promise<Uint8Array> {
  try {
    return await io.read(offset, length);
  } catch (e) {
    throw withWhere(e, where);
  }
}

export function pickSlot(headers: readonly ({ baseTxg: number; generation: number } | null)[], ubTxg: number, where: Record<string, unknown>): 0 | 1 {
  const [a, b] = headers;
  const usable = (h: typeof a): h is { baseTxg: number; generation: number } => h !== null && h !== undefined && h.baseTxg <= ubTxg;
  if (usable(a) && usable(b)) {
    if (a.baseTxg === b.baseTxg || a.generation === b.generation) {
      throw mpError('EPROTO', 'both space map slots claim the same base txg or generation', { ...where, a, b });
    }
    return a.baseTxg > b.baseTxg ? 0 : 1;
  }
  if (usable(a)) return 0;
  if (usable(b)) return 1;
  throw mpError('EPROTO', 'no space map slot is valid for this txg', { ...where, a, b });
}

export async function readMap(io: VdevIo, msStart: number, l: SpaceMapLayout, slot: number, h: SlotHeader, where: Record<string, unknown>): Promise<SpaceMapState> {
  if (mapIsFree(h)) return { allocated: new RangeTree(SECTOR_BYTES), recentFrees: new Map() };
  const offset = msStart + slot * l.slotBytes + SECTOR_BYTES;
  const intact = (b: Uint8Array): boolean => bytesEqual(fletcher4(b), h.mapChecksum);
  let map: Uint8Array | null = await readPlain(io, offset, l.mapBytes, where);
  if (!intact(map)) map = await readAccepted(io, offset, l.mapBytes, intact, where);
  if (map === null) throw mpError('ECKSUM', 'space map bitmap fails its checksum on every copy', where);
  const state: SpaceMapState = { allocated: new RangeTree(SECTOR_BYTES), recentFrees: new Map() };
  const reservedSectors = l.reservedBytes / SECTOR_BYTES;
  forEachMapRun(map, l.sectors, (value, first, count) => {
    const freedTxg = value === MapState.freedPrev ? h.baseTxg - 1 : h.baseTxg;
    if (first < reservedSectors || (value !== MapState.allocated && freedTxg < 1)) {
      throw mpError('EPROTO', 'space map bitmap marks reserved sectors or frees before txg 1', { ...where, value, first, count });
    }
    const start = msStart + first * SECTOR_BYTES;
    const size = count * SECTOR_BYTES;
    if (value === MapState.allocated) {
      state.allocated.add(start, size);
    } else {
      let tree = state.recentFrees.get(freedTxg);
      if (tree === undefined) state.recentFrees.set(freedTxg, (tree = new RangeTree(SECTOR_BYTES)));
      tree.add(start, size);
    }
  });
  return state;
}

/** Reads a log in chunks from the first copy; records are re-read with an accept check only when they fail. */
export class LogReader {
  private chunkStart = 0;
  private chunk: Uint8Array = new Uint8Array(0);

  constructor(
    private readonly io: VdevIo,
    private readonly offset: number,
    private readonly sectors: number,
    private readonly where: Record<string, unknown>,
  ) {}

  offsetOf(sector: number): number {
    return this.offset + sector * SECTOR_BYTES;
  }

  async read(sector: number, count: number): Promise<Uint8Array> {
    assert(sector + count <= this.sectors, 'LogReader: past the log');
    const from = (sector - this.chunkStart) * SECTOR_BYTES;
    if (sector < this.chunkStart || from + count * SECTOR_BYTES > this.chunk.length) {
      const want = Math.max(count, LOG_READ_CHUNK_BYTES / SECTOR_BYTES);
      const n = Math.min(want, this.sectors - sector);
      try {
        this.chunk = await this.io.read(this.offsetOf(sector), n * SECTOR_BYTES);
      } catch (e) {
        throw withWhere(e, { ...this.where, logSector: sector });
      }
      this.chunkStart = sector;
      return this.chunk.subarray(0, count * SECTOR_BYTES);
    }
    return this.chunk.subarray(from, from + count * SECTOR_BYTES);
  }
}
