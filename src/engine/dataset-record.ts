// The record of one dataset in the MOS: an object of type `dataset` whose bonus buffer holds the
// root pointer of the dataset's object set, its creation txg and its guid. Only syncing context
// changes it (the new root after each txg), so the open txg never holds a stale copy.
//
// Bonus layout: 0 root block pointer (128) · 128 created txg u64 · 136 guid u64 · 144.. reserved

import { mpError, readU64, readU64Number, writeU64, writeU64Number } from '../lib/index.js';
import { decodeBlockPointer, encodeBlockPointer } from './blkptr.js';
import { type BlockPointer, type Guid, type Txg, guid, layout, txg } from './types.js';

export const DATASET_RECORD_BYTES = 160;
const BP = layout.blockPointerBytes;

export interface DatasetRecord {
  readonly root: BlockPointer;
  readonly createdTxg: Txg;
  readonly guid: Guid;
}

export function encodeDatasetRecord(r: DatasetRecord): Uint8Array {
  const out = new Uint8Array(DATASET_RECORD_BYTES);
  out.set(encodeBlockPointer(r.root), 0);
  writeU64Number(out, BP, r.createdTxg);
  writeU64(out, BP + 8, r.guid);
  return out;
}

export function decodeDatasetRecord(bonus: Uint8Array, where: Record<string, unknown>): DatasetRecord {
  if (bonus.length < DATASET_RECORD_BYTES) throw mpError('EPROTO', 'dataset record is too short', where);
  const g = readU64(bonus, BP + 8);
  if (g === 0n) throw mpError('EPROTO', 'dataset record has no guid', where);
  return {
    root: decodeBlockPointer(bonus.subarray(0, BP)),
    createdTxg: txg(readU64Number(bonus, BP)),
    guid: guid(g),
  };
}
