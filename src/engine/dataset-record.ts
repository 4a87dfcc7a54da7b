// The record of one dataset or snapshot in the MOS: an object of type `dataset` whose bonus
// buffer holds the root pointer of its object set and the fields below. Only syncing context
// changes it (a head's new root after each txg, and the DSL's sync tasks), so the open txg never
// holds a stale copy.
//
// Bonus layout (little-endian): 0 root block pointer (128), then one u64 per field of FIELDS in
// order from offset 128. A head's `prevSnap` is its newest snapshot, or its origin when it is a
// clone with no snapshot of its own; a snapshot's `prevSnap` is the snapshot before it (or the
// origin). `prevSnapTxg` caches that snapshot's txg: blocks born after it belong to this head
// alone. Object numbers 0 mean "none".

import { mpError, readU64, writeU64 } from '../lib/index.js';
import { decodeBlockPointer, encodeBlockPointer } from './blkptr.js';
import { type BlockPointer, type Guid, type ObjectId, type Txg, guid, layout, objectId, txg } from './types.js';

export const DatasetKind = { head: 1, snapshot: 2 } as const;
export type DatasetKind = (typeof DatasetKind)[keyof typeof DatasetKind];

const FIELDS = [
  'kind',
  'createdTxg',
  'guid',
  'creationMs',
  /** Head: the parent head (0 for the pool's root dataset). Snapshot: its head. */
  'parent',
  'prevSnap',
  'prevSnapTxg',
  /** Snapshot: the next snapshot of the same head (0: the head is next). */
  'nextSnap',
  'deadlist',
  /** Head: ZAPs of child datasets, snapshots, bookmarks and properties (name → value). */
  'children',
  'snapshots',
  'bookmarks',
  'props',
  /** Snapshot: the ZAP of user holds (0 until the first hold). */
  'holds',
  /** Head: the snapshot it was cloned from. Snapshot: how many clones it has. */
  'origin',
  'clones',
  /** Bytes of every block reachable from the root (all copies). */
  'referencedBytes',
  /** Head: bytes of its blocks born after prevSnapTxg (its "written" and "usedbydataset"). */
  'uniqueBytes',
  /** Head: bytes only its snapshots hold (its "usedbysnapshots"). */
  'snapUsedBytes',
  /** The cluster's applied transaction id, set in the same txg as the data it covers. */
  'appliedTid',
  /** Head: its intent log's MOS object (0 until its first synchronous write). */
  'intentLog',
  /**
   * Head: bytes of its blocks born after its origin (all of them when not a clone) — what it is
   * charged for ("usedbydataset"); a block it kills moves to usedbysnapshots or is freed.
   */
  'ownBytes',
] as const;

type Field = (typeof FIELDS)[number];

export const DATASET_RECORD_BYTES = layout.blockPointerBytes + FIELDS.length * 8;

export interface DatasetRecord {
  root: BlockPointer;
  kind: DatasetKind;
  createdTxg: Txg;
  guid: Guid;
  creationMs: number;
  parent: ObjectId;
  prevSnap: ObjectId;
  prevSnapTxg: Txg;
  nextSnap: ObjectId;
  deadlist: ObjectId;
  children: ObjectId;
  snapshots: ObjectId;
  bookmarks: ObjectId;
  props: ObjectId;
  holds: ObjectId;
  origin: ObjectId;
  clones: number;
  referencedBytes: number;
  uniqueBytes: number;
  snapUsedBytes: number;
  appliedTid: bigint;
  intentLog: ObjectId;
  ownBytes: number;
}

export function encodeDatasetRecord(r: DatasetRecord): Uint8Array {
  const out = new Uint8Array(DATASET_RECORD_BYTES);
  out.set(encodeBlockPointer(r.root), 0);
  FIELDS.forEach((f, i) => {
    const v = r[f];
    writeU64(out, layout.blockPointerBytes + i * 8, BigInt(v));
  });
  return out;
}

export function decodeDatasetRecord(bonus: Uint8Array, where: Record<string, unknown>): DatasetRecord {
  if (bonus.length < DATASET_RECORD_BYTES) throw mpError('EPROTO', 'dataset record is too short', where);
  const values = new Map<Field, bigint>();
  FIELDS.forEach((f, i) => values.set(f, readU64(bonus, layout.blockPointerBytes + i * 8)));
  const big = (f: Field): bigint => values.get(f) ?? 0n;
  const num = (f: Field): number => {
    const v = big(f);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw mpError('EPROTO', `dataset record field ${f} is out of range`, where);
    return Number(v);
  };
  const kind = num('kind');
  if (kind !== DatasetKind.head && kind !== DatasetKind.snapshot) throw mpError('EPROTO', `dataset record has kind ${kind}`, where);
  if (big('guid') === 0n) throw mpError('EPROTO', 'dataset record has no guid', where);
  return {
    root: decodeBlockPointer(bonus.subarray(0, layout.blockPointerBytes)),
    kind,
    createdTxg: txg(num('createdTxg')),
    guid: guid(big('guid')),
    creationMs: num('creationMs'),
    parent: objectId(num('parent')),
    prevSnap: objectId(num('prevSnap')),
    prevSnapTxg: txg(num('prevSnapTxg')),
    nextSnap: objectId(num('nextSnap')),
    deadlist: objectId(num('deadlist')),
    children: objectId(num('children')),
    snapshots: objectId(num('snapshots')),
    bookmarks: objectId(num('bookmarks')),
    props: objectId(num('props')),
    holds: objectId(num('holds')),
    origin: objectId(num('origin')),
    clones: num('clones'),
    referencedBytes: num('referencedBytes'),
    uniqueBytes: num('uniqueBytes'),
    snapUsedBytes: num('snapUsedBytes'),
    appliedTid: big('appliedTid'),
    intentLog: objectId(num('intentLog')),
    ownBytes: num('ownBytes'),
  };
}
