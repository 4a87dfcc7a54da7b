// The BlockStore of a head dataset: the pool's store, with the ZFS birth-time rule on free. A
// block the head kills (overwrites or frees) that was born after its newest snapshot belongs to
// the head alone and is freed; an older one is still referenced by that snapshot and goes to the
// head's deadlist instead. It also keeps the head's space figures current: every block written
// or killed moves `referencedBytes`, `uniqueBytes`, `ownBytes` and `snapUsedBytes` of the
// in-memory record.
// Only syncing context writes or frees through it. Created by dsl.ts, one per open head.

import type { BlockStore, ReadContext, WriteMeta } from './block-store.js';
import { bpAllocatedBytes } from './block-store.js';
import type { DatasetRecord } from './dataset-record.js';
import type { BlockPointer, Txg } from './types.js';

export interface HeadSpace {
  /** The head's record as of now (mutated in syncing context). */
  readonly record: DatasetRecord;
  /** Txg of the head's origin snapshot (0 when not a clone): older blocks are the origin's. */
  readonly originTxg: Txg;
}

export class HeadStore implements BlockStore {
  /** Blocks killed since the last sync that go to the deadlist. */
  dead: BlockPointer[] = [];

  constructor(
    private readonly base: BlockStore,
    private readonly head: HeadSpace,
  ) {}

  read(bp: BlockPointer, context: ReadContext): Promise<Uint8Array> {
    return this.base.read(bp, context);
  }

  readOwned(bp: BlockPointer, context: ReadContext): Promise<Uint8Array> {
    return this.base.readOwned(bp, context);
  }

  readRun(bps: readonly BlockPointer[], context: ReadContext, into?: Uint8Array): Promise<Uint8Array | null> {
    return this.base.readRun(bps, context, into);
  }

  readPointers(bp: BlockPointer, context: ReadContext): Promise<readonly BlockPointer[]> {
    return this.base.readPointers(bp, context);
  }

  async write(data: Uint8Array, meta: WriteMeta, t: Txg): Promise<BlockPointer> {
    const bp = await this.base.write(data, meta, t);
    const bytes = bpAllocatedBytes(bp);
    this.head.record.referencedBytes += bytes;
    this.head.record.uniqueBytes += bytes;
    this.head.record.ownBytes += bytes;
    return bp;
  }

  free(bp: BlockPointer, t: Txg): void {
    const r = this.head.record;
    const bytes = bpAllocatedBytes(bp);
    r.referencedBytes -= bytes;
    if (bp.birth > this.head.originTxg) r.ownBytes -= bytes;
    if (bp.birth > r.prevSnapTxg) {
      r.uniqueBytes -= bytes;
      this.base.free(bp, t);
      return;
    }
    this.dead.push(bp);
    if (bp.birth > this.head.originTxg) r.snapUsedBytes += bytes;
  }
}
