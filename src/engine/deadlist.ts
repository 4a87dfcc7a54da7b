// A deadlist: the blocks a dataset killed (overwrote or freed) that an older snapshot still
// references, kept in a MOS object as packed 128-byte block pointers, with their allocated bytes
// in the bonus. A head appends to its deadlist as it syncs; taking a snapshot hands the head's
// deadlist to the snapshot and gives the head a new, empty one. Destroying a snapshot walks only
// the deadlists of that snapshot and of the next one (dsl.ts), so it costs in proportion to the
// blocks killed between the neighbouring snapshots, never to the size of the dataset.
// Only syncing context changes a deadlist. Callers: dsl.ts.

import { readU64Number, writeU64Number } from '../lib/index.js';
import { decodeBlockPointerArray, encodeBlockPointers } from './blkptr.js';
import { bpAllocatedBytes } from './block-store.js';
import * as dmu from './dmu.js';
import { ObjectType } from './dnode.js';
import type { ObjectSet } from './objset.js';
import { type BlockPointer, type ObjectId, layout } from './types.js';

const BP = layout.blockPointerBytes;
/** Entries read at a time: a deadlist is streamed, never loaded whole. */
const CHUNK_ENTRIES = 8192;
const BONUS_BYTES = 8;

export async function createDeadlist(mos: ObjectSet, tx: dmu.Tx, checksumKind: number): Promise<ObjectId> {
  return dmu.createObject(mos, tx, {
    type: ObjectType.deadlist,
    blockBytes: 128 * 1024,
    checksumKind,
    bonus: new Uint8Array(BONUS_BYTES),
  });
}

/** Allocated bytes of every block on the list. */
export async function deadlistBytes(mos: ObjectSet, obj: ObjectId): Promise<number> {
  return readU64Number(await dmu.bonus(mos, obj), 0);
}

export async function deadlistCount(mos: ObjectSet, obj: ObjectId): Promise<number> {
  return (await dmu.objectInfo(mos, obj)).size / BP;
}

export async function appendDeadlist(mos: ObjectSet, tx: dmu.Tx, obj: ObjectId, bps: readonly BlockPointer[]): Promise<void> {
  if (bps.length === 0) return;
  const at = (await dmu.objectInfo(mos, obj)).size;
  for (let i = 0; i < bps.length; i += CHUNK_ENTRIES) {
    const chunk = bps.slice(i, i + CHUNK_ENTRIES);
    await dmu.write(mos, tx, obj, at + i * BP, encodeBlockPointers(chunk));
  }
  await setBytes(mos, tx, obj, (await deadlistBytes(mos, obj)) + sumBytes(bps));
}

/** Empties the list (its blocks stay allocated: the caller decided what became of them). */
export async function clearDeadlist(mos: ObjectSet, tx: dmu.Tx, obj: ObjectId): Promise<void> {
  await dmu.truncate(mos, tx, obj, 0);
  await setBytes(mos, tx, obj, 0);
}

/** The entries in order, CHUNK_ENTRIES at a time. */
export async function* deadlistChunks(mos: ObjectSet, obj: ObjectId): AsyncGenerator<BlockPointer[], void, undefined> {
  const size = (await dmu.objectInfo(mos, obj)).size;
  for (let at = 0; at < size; at += CHUNK_ENTRIES * BP) {
    yield decodeBlockPointerArray(await dmu.read(mos, obj, at, Math.min(CHUNK_ENTRIES * BP, size - at)));
  }
}

export function sumBytes(bps: readonly BlockPointer[]): number {
  let sum = 0;
  for (const bp of bps) sum += bpAllocatedBytes(bp);
  return sum;
}

async function setBytes(mos: ObjectSet, tx: dmu.Tx, obj: ObjectId, bytes: number): Promise<void> {
  const bonus = new Uint8Array(BONUS_BYTES);
  writeU64Number(bonus, 0, bytes);
  await dmu.setBonus(mos, tx, obj, bonus);
}
