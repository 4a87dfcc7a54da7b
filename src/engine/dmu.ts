// The DMU: objects as byte arrays inside an object set (after seed 002's dmu.c). Create, claim
// and free objects; read, write, freeRange and truncate bytes; bonus buffers; block size; seek
// to the next data or hole. Every change is made in a transaction (Tx) bound to the open txg and
// lands in that txg's dirty layer; changes to one object are serialized by its lock, so
// read-modify-write of partial blocks never loses a concurrent update.
// A single-block object grows its block (powers of two) up to its max block size, so small
// objects take little space and large ones get whole records.

import { assert, copyBytes, mpError } from '../lib/index.js';
import {
  BLOCK_SHIFT_MAX,
  BLOCK_SHIFT_MIN,
  BONUS_BYTES_MAX,
  ObjectType,
  capacityBlocks,
  LEVELS_MAX,
} from './dnode.js';
import { FREE_HEADER, type ObjectHeader, type ObjectSet } from './objset.js';
import { findBlock } from './tree.js';
import { blockBuffers } from './block-buffers.js';
import type { ObjectAccess, ObjectId, Txg } from './types.js';

/** A transaction: the txg its changes land in. Issued by the txg manager (txg.ts). */
export interface Tx {
  readonly txg: Txg;
}

/** Largest object: offsets stay exact and within the deepest tree at the smallest block. */
export const OBJECT_BYTES_MAX = 2 ** 50;
/** Largest single read or write through the DMU. */
export const DMU_IO_BYTES_MAX = 64 * 1024 * 1024;
/** Blocks one read fetches concurrently (a 1 MiB read of 128 KiB records is 8). */
export const READ_BLOCKS_IN_FLIGHT_MAX = 16;
/** Largest read served by one disk I/O into the returned buffer (see read). */
export const SPAN_BYTES_MAX = 4 * 1024 * 1024;

export interface CreateOptions {
  type: ObjectType;
  /** Max block size (power of two, 512 B - 1 MiB): the dataset's recordsize. */
  blockBytes: number;
  checksumKind: number;
  bonus?: Uint8Array;
  bonusType?: number;
}

export interface ObjectInfo {
  type: ObjectType;
  blockBytes: number;
  maxBlockBytes: number;
  size: number;
  blocks: number;
  bonusBytes: number;
  /** Allocated bytes as of the last sync (all copies, indirect blocks included). */
  usedBytes: number;
  levels: number;
  createdTxg: Txg;
}

function checkRange(offset: number, length: number, what: string): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw mpError('EINVAL', `${what}: offset and length must be non-negative integers`, { offset, length });
  }
  if (offset + length > OBJECT_BYTES_MAX) {
    throw mpError('EINVAL', `${what}: ends past the largest object (${OBJECT_BYTES_MAX} bytes)`, { offset, length });
  }
}

function shiftOf(bytes: number): number {
  const shift = Math.log2(bytes);
  if (!Number.isInteger(shift) || shift < BLOCK_SHIFT_MIN || shift > BLOCK_SHIFT_MAX) {
    throw mpError('EINVAL', `block size must be a power of two from 512 B to 1 MiB, got ${bytes}`, { bytes });
  }
  return shift;
}

function checkBonus(bonus: Uint8Array): void {
  if (bonus.length > BONUS_BYTES_MAX) {
    throw mpError('EINVAL', `bonus of ${bonus.length} bytes exceeds ${BONUS_BYTES_MAX}`, { bytes: bonus.length });
  }
}

async function existing(os: ObjectSet, obj: ObjectId): Promise<ObjectHeader> {
  const h = await os.header(obj);
  if (h.type === ObjectType.none) throw mpError('ENOENT', `${os.what}: object ${obj} does not exist`, { object: obj });
  return h;
}

function newHeader(tx: Tx, o: CreateOptions): ObjectHeader {
  const maxBlockShift = shiftOf(o.blockBytes);
  const bonus = o.bonus ?? new Uint8Array(0);
  checkBonus(bonus);
  assert(o.type !== ObjectType.none && o.type !== ObjectType.dnodes, 'not an object type one creates');
  return {
    type: o.type,
    blockShift: BLOCK_SHIFT_MIN,
    maxBlockShift,
    size: 0,
    blocks: 0,
    bonus: bonus.slice(),
    bonusType: o.bonusType ?? 0,
    checksumKind: o.checksumKind,
    createdTxg: tx.txg,
  };
}

export async function createObject(os: ObjectSet, tx: Tx, o: CreateOptions): Promise<ObjectId> {
  const header = newHeader(tx, o);
  const obj = await os.takeObjectNumber(tx.txg);
  await os.locked(obj, async () => {
    const current = await os.header(obj);
    assert(current.type === ObjectType.none, `object ${obj} taken from the cursor already exists`);
    install(os, tx, obj, current, header);
  });
  return obj;
}

/** Creates object `obj` at the given number (receive and the cluster choose numbers). EEXIST. */
export async function claimObject(os: ObjectSet, tx: Tx, obj: ObjectId, o: CreateOptions): Promise<void> {
  if (!Number.isSafeInteger(obj) || obj < 1) throw mpError('EINVAL', `invalid object number ${obj}`, { object: obj });
  const header = newHeader(tx, o);
  await os.locked(obj, async () => {
    const current = await os.header(obj);
    if (current.type !== ObjectType.none) throw mpError('EEXIST', `${os.what}: object ${obj} exists`, { object: obj });
    install(os, tx, obj, current, header);
    os.bumpObjectNumber(tx.txg, obj);
  });
}

function install(os: ObjectSet, tx: Tx, obj: ObjectId, current: ObjectHeader, header: ObjectHeader): void {
  const od = os.dirty(tx.txg, obj, current);
  od.replaced = true;
  od.blocks.clear();
  od.freed.length = 0;
  od.header = header;
}

export async function freeObject(os: ObjectSet, tx: Tx, obj: ObjectId): Promise<void> {
  await os.locked(obj, async () => {
    const current = await existing(os, obj);
    const od = os.dirty(tx.txg, obj, current);
    od.replaced = true;
    od.blocks.clear();
    od.freed.length = 0;
    od.header = FREE_HEADER;
  });
  os.noteFreed(obj);
}

export async function objectInfo(os: ObjectSet, obj: ObjectId): Promise<ObjectInfo> {
  const h = await existing(os, obj);
  const synced = await os.syncedDnode(obj);
  return {
    type: h.type,
    blockBytes: 2 ** h.blockShift,
    maxBlockBytes: 2 ** h.maxBlockShift,
    size: h.size,
    blocks: h.blocks,
    bonusBytes: h.bonus.length,
    usedBytes: synced.type === h.type ? synced.usedBytes : 0,
    levels: synced.type === h.type ? synced.levels : 1,
    createdTxg: h.createdTxg,
  };
}

/** Reads up to `length` bytes at `offset`; short at the end of the object, empty past it. */
export async function read(os: ObjectSet, obj: ObjectId, offset: number, length: number): Promise<Uint8Array> {
  checkRange(offset, length, 'read');
  if (length > DMU_IO_BYTES_MAX) throw mpError('EINVAL', `read of ${length} bytes exceeds ${DMU_IO_BYTES_MAX}`);
  const h = await existing(os, obj);
  const end = Math.min(h.size, offset + length);
  if (end <= offset) return new Uint8Array(0);
  const bs = 2 ** h.blockShift;
  const firstBlock = Math.floor(offset / bs);
  const endBlock = Math.ceil(end / bs);
  // Whole synced blocks stored back to back come with one disk read, straight into the buffer
  // returned (no copy, one allocation).
  if (offset === firstBlock * bs && end === endBlock * bs && end - offset <= SPAN_BYTES_MAX) {
    const span = await os.readSpan(obj, firstBlock, endBlock, h.blockShift);
    if (span !== null) return span;
  }
  const out = new Uint8Array(end - offset);
  // Blocks are fetched READ_BLOCKS_IN_FLIGHT_MAX at a time, so the disk reads the next blocks
  // while this thread verifies the previous ones; each view is copied out before the next await.
  for (let first = firstBlock; first < endBlock; first += READ_BLOCKS_IN_FLIGHT_MAX) {
    const ids = Array.from({ length: Math.min(READ_BLOCKS_IN_FLIGHT_MAX, endBlock - first) }, (_, i) => first + i);
    const blocks = await Promise.all(ids.map((b) => os.viewBlock(obj, b, h.blockShift)));
    for (const [i, block] of blocks.entries()) {
      const b = first + i;
      const from = Math.max(offset, b * bs);
      const to = Math.min(end, (b + 1) * bs);
      out.set(block.subarray(from - b * bs, to - b * bs), from - offset);
    }
  }
  return out;
}

/**
 * Writes `data` at `offset`, extending the object as needed. `fletcher4`, when given, is the
 * fletcher-4 of `data`, which the caller vouches for (a received WRITE, verified on arrival):
 * when `data` is exactly one whole block, its sync uses it instead of computing it again.
 */
export async function write(os: ObjectSet, tx: Tx, obj: ObjectId, offset: number, data: Uint8Array, fletcher4?: Uint8Array): Promise<void> {
  checkRange(offset, data.length, 'write');
  if (data.length > DMU_IO_BYTES_MAX) throw mpError('EINVAL', `write of ${data.length} bytes exceeds ${DMU_IO_BYTES_MAX}`);
  if (data.length === 0) return;
  await os.locked(obj, async () => {
    const h = grown(await existing(os, obj), offset + data.length);
    const od = os.dirty(tx.txg, obj, h);
    refit(od.blocks, h);
    const bs = 2 ** h.blockShift;
    const end = offset + data.length;
    for (let b = Math.floor(offset / bs); b * bs < end; b++) {
      const from = Math.max(offset, b * bs);
      const to = Math.min(end, (b + 1) * bs);
      let block = od.blocks.get(b);
      if (block === undefined && to - from === bs) {
        // A whole new block: a copy of the caller's bytes, into a reused buffer when there is one
        // (else a new one, not zeroed first).
        const reused = blockBuffers.take(bs);
        if (reused !== null) reused.set(data.subarray(from - offset, to - offset));
        const filled = reused ?? copyBytes(data, from - offset, to - offset);
        // A copy: like `data`, the digest may lie in a buffer its owner reuses once this returns.
        if (fletcher4 !== undefined && data.length === bs) blockBuffers.setFletcher4(filled, fletcher4.slice());
        od.blocks.set(b, filled);
        os.addDirtyBytes(tx.txg, bs);
        continue;
      }
      if (block === undefined) {
        block = await os.readBlock(obj, b, h.blockShift);
        od.blocks.set(b, block);
        os.addDirtyBytes(tx.txg, bs);
      }
      blockBuffers.changed(block);
      block.set(data.subarray(from - offset, to - offset), from - b * bs);
    }
    od.header = { ...h, size: Math.max(h.size, end), blocks: Math.max(h.blocks, Math.ceil(end / bs)) };
  });
}

/** A single-block object whose data would pass its block grows the block (up to the max). */
function grown(h: ObjectHeader, end: number): ObjectHeader {
  const bs = 2 ** h.blockShift;
  if (h.blocks > 1 || end <= bs || h.blockShift >= h.maxBlockShift) return h;
  const shift = Math.min(h.maxBlockShift, Math.max(h.blockShift, Math.ceil(Math.log2(end))));
  return { ...h, blockShift: shift, blocks: Math.min(h.blocks, 1) };
}

/** After a block size change, a dirty block 0 is resized to match (zero-padded). */
function refit(blocks: Map<number, Uint8Array>, h: ObjectHeader): void {
  const b0 = blocks.get(0);
  const bs = 2 ** h.blockShift;
  if (b0 !== undefined && b0.length !== bs) {
    const out = new Uint8Array(bs);
    out.set(b0.subarray(0, Math.min(bs, b0.length)));
    blocks.set(0, out);
  }
  for (const b of blocks.values()) assert(b.length === bs, 'dirty blocks all have the object block size');
}

/** Zeroes [offset, offset+length) (clamped to the size); whole blocks become holes. */
export async function freeRange(os: ObjectSet, tx: Tx, obj: ObjectId, offset: number, length: number): Promise<void> {
  checkRange(offset, length, 'freeRange');
  await os.locked(obj, () => freeRangeLocked(os, tx, obj, offset, length));
}

async function freeRangeLocked(os: ObjectSet, tx: Tx, obj: ObjectId, offset: number, length: number): Promise<void> {
  const h = await existing(os, obj);
  const end = Math.min(h.size, offset + length);
  if (end <= offset) return;
  const od = os.dirty(tx.txg, obj, h);
  const bs = 2 ** h.blockShift;
  const firstWhole = Math.ceil(offset / bs);
  const endWhole = end === h.size ? Math.ceil(end / bs) : Math.floor(end / bs);
  if (endWhole > firstWhole) {
    for (const b of [...od.blocks.keys()]) if (b >= firstWhole && b < endWhole) od.blocks.delete(b);
    od.freed.push([firstWhole, endWhole]);
  }
  // Partial blocks at either edge are zeroed in place.
  for (const b of new Set([Math.floor(offset / bs), Math.floor((end - 1) / bs)])) {
    if (b >= firstWhole && b < endWhole) continue;
    const from = Math.max(offset, b * bs);
    const to = Math.min(end, (b + 1) * bs);
    let block = od.blocks.get(b);
    if (block === undefined) {
      block = await os.readBlock(obj, b, h.blockShift);
      od.blocks.set(b, block);
      os.addDirtyBytes(tx.txg, bs);
    }
    blockBuffers.changed(block);
    block.fill(0, from - b * bs, to - b * bs);
  }
}

/** Sets the size: shrinking frees the tail, growing leaves a hole. */
export async function truncate(os: ObjectSet, tx: Tx, obj: ObjectId, size: number): Promise<void> {
  checkRange(size, 0, 'truncate');
  await os.locked(obj, async () => {
    const h = await existing(os, obj);
    if (size < h.size) await freeRangeLocked(os, tx, obj, size, h.size - size);
    const current = grown(await os.header(obj), size);
    const od = os.dirty(tx.txg, obj, current);
    refit(od.blocks, current);
    const bs = 2 ** current.blockShift;
    od.header = { ...current, size, blocks: Math.ceil(size / bs) };
  });
}

export async function setBonus(os: ObjectSet, tx: Tx, obj: ObjectId, bonus: Uint8Array): Promise<void> {
  checkBonus(bonus);
  await os.locked(obj, async () => {
    const h = await existing(os, obj);
    os.dirty(tx.txg, obj, h).header = { ...h, bonus: bonus.slice() };
  });
}

export async function bonus(os: ObjectSet, obj: ObjectId): Promise<Uint8Array> {
  return (await existing(os, obj)).bonus.slice();
}

/** Changes the max block size; allowed while the object has at most one block. */
export async function setBlockSize(os: ObjectSet, tx: Tx, obj: ObjectId, bytes: number): Promise<void> {
  const shift = shiftOf(bytes);
  await os.locked(obj, async () => {
    const h = await existing(os, obj);
    if (h.blocks > 1) throw mpError('EBUSY', `object ${obj} has more than one block`, { object: obj });
    const next = { ...h, maxBlockShift: shift, blockShift: Math.min(h.blockShift, shift) };
    if (h.size > 2 ** next.blockShift && h.blocks === 1) next.blockShift = Math.min(shift, Math.ceil(Math.log2(h.size)));
    const od = os.dirty(tx.txg, obj, next);
    od.header = next;
    refit(od.blocks, next);
  });
}

/**
 * The first offset >= `offset` that starts data (or a hole, with `hole`), or null past the end.
 * Needs the object synced (like ZFS, the caller syncs first): EBUSY while it has dirty changes.
 */
export async function offsetNext(os: ObjectSet, obj: ObjectId, offset: number, hole: boolean): Promise<number | null> {
  checkRange(offset, 0, 'offsetNext');
  const h = await existing(os, obj);
  if (os.isDirty(obj)) throw mpError('EBUSY', `object ${obj} has unsynced changes`, { object: obj });
  if (offset >= h.size) return null;
  const d = await os.syncedDnode(obj);
  const bs = 2 ** d.blockShift;
  const limit = Math.ceil(h.size / bs);
  assert(d.levels <= LEVELS_MAX && limit <= capacityBlocks(d.levels, 0) * 1);
  const b = await findBlock(os.store, d, Math.floor(offset / bs), limit, !hole, { what: os.what, object: obj });
  if (b === null) return hole ? h.size : null;
  return Math.max(offset, b * bs);
}

/** The ObjectAccess view of one object within `tx` (used by the ZAP and other structures). */
export async function objectAccess(os: ObjectSet, tx: Tx | null, obj: ObjectId): Promise<ObjectAccess> {
  const writable = (): Tx => {
    assert(tx !== null, 'objectAccess: a write needs a transaction');
    return tx;
  };
  let size = (await existing(os, obj)).size;
  return {
    size: () => size,
    read: async (offset, length) => {
      const got = await read(os, obj, offset, length);
      if (got.length === length) return got;
      const out = new Uint8Array(length);
      out.set(got);
      return out;
    },
    write: async (offset, data) => {
      await write(os, writable(), obj, offset, data);
      size = Math.max(size, offset + data.length);
    },
    truncate: async (n) => {
      await truncate(os, writable(), obj, n);
      size = n;
    },
  };
}
