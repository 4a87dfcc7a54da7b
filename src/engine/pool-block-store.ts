// PoolBlockStore: the pool's BlockStore over the space allocator, BlockIo and the block cache.
// Reads go through the cache and share one disk read per block in flight; a read made to modify a
// copy, and a run read into the caller's buffer, bypass the cache; a write allocates in call order
// (deterministic placement) and keeps metadata and decoded indirect blocks in the cache; a free
// drops the block from the cache and from the reads in flight, so a freed block never returns.
// Created by pool.ts.

import { assert } from '../lib/index.js';
import type { SpaceAllocator } from './allocator.js';
import { decodeBlockPointerArray } from './blkptr.js';
import { BlockCache } from './block-cache.js';
import type { BlockIo } from './block-io.js';
import type { BlockStore, ReadContext, WriteMeta } from './block-store.js';
import { type BlockPointer, type Txg, isHole } from './types.js';

export class PoolBlockStore implements BlockStore {
  /**
   * Reads in flight by cache key: concurrent readers of one block (say, the indirect block above
   * every block of one DMU read) share one disk read.
   */
  private readonly reading = new Map<string, Promise<Uint8Array>>();

  constructor(
    private readonly io: BlockIo,
    private readonly allocator: SpaceAllocator,
    private readonly cache: BlockCache,
  ) {}

  read(bp: BlockPointer, context: ReadContext): Promise<Uint8Array> {
    if (isHole(bp)) return Promise.resolve(new Uint8Array(bp.lsize));
    const hit = this.cache.get(bp);
    if (hit !== undefined) return Promise.resolve(hit);
    const key = BlockCache.key(bp);
    assert(key !== null);
    const pending = this.reading.get(key);
    if (pending !== undefined) return pending;
    // A block freed while it was read (free drops its entry) must not come back into the cache.
    const p: Promise<Uint8Array> = this.io.read(bp, context).then(
      (data) => {
        if (this.reading.get(key) !== p) return data;
        this.reading.delete(key);
        this.cache.put(bp, data);
        return data;
      },
      (e: unknown) => {
        if (this.reading.get(key) === p) this.reading.delete(key);
        throw e;
      },
    );
    this.reading.set(key, p);
    return p;
  }

  async readOwned(bp: BlockPointer, context: ReadContext): Promise<Uint8Array> {
    const key = BlockCache.key(bp);
    if (key === null || this.reading.has(key) || this.cache.has(bp)) return (await this.read(bp, context)).slice();
    return this.io.read(bp, context);
  }

  async readRun(bps: readonly BlockPointer[], _context: ReadContext, into?: Uint8Array): Promise<Uint8Array | null> {
    // Cached or in-flight blocks are cheaper one by one; the run's buffer goes to the caller and
    // is not cached (the caller owns it).
    for (const bp of bps) {
      const key = BlockCache.key(bp);
      if (key === null || this.reading.has(key) || this.cache.has(bp)) return null;
    }
    return this.io.readRun(bps, into);
  }

  async readPointers(bp: BlockPointer, context: ReadContext): Promise<readonly BlockPointer[]> {
    const hit = this.cache.getPointers(bp);
    if (hit !== undefined) return hit;
    const list = decodeBlockPointerArray(await this.read(bp, context));
    this.cache.putPointers(bp, list);
    return list;
  }

  async write(data: Uint8Array, meta: WriteMeta, t: Txg): Promise<BlockPointer> {
    const dvas = this.allocator.allocate(data.length, meta.copies, t);
    const bp = await this.io.write(data, dvas, {
      type: meta.type,
      level: meta.level,
      checksumKind: meta.checksumKind,
      birth: t,
      fill: meta.fill,
      lsize: data.length,
      ...(meta.checksum === undefined ? {} : { checksum: meta.checksum }),
    });
    if (meta.copies > 1) this.cache.put(bp, data);
    if (meta.pointers !== undefined) this.cache.putPointers(bp, meta.pointers);
    return bp;
  }

  free(bp: BlockPointer, t: Txg): void {
    this.cache.evict(bp);
    const key = BlockCache.key(bp);
    if (key !== null) this.reading.delete(key);
    for (const dva of bp.dvas) this.allocator.free(dva, t, bp.birth);
  }
}
