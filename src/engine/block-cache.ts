// A bounded LRU cache of verified blocks, keyed by where and when a block was written (first
// DVA + birth txg), so a key never names two different contents while the entry is evicted on
// free. Buffers in the cache are shared: nobody may modify a buffer the cache returned.
// Beside the bytes it keeps indirect blocks already decoded into pointer arrays (same keys, same
// eviction): every read of a data block walks its indirect blocks, and decoding 128 pointers per
// level per read cost more than the read itself. Those arrays are shared and never modified too.

import { assert } from '../lib/index.js';
import { type BlockPointer, isHole } from './types.js';

/**
 * Decoded indirect blocks kept. One is ~128 pointer objects (~30 KiB with the block it was decoded
 * from); 512 of them map 8 GiB of an object at 128 KiB records, for ~16 MiB of memory.
 */
export const POINTER_CACHE_BLOCKS = 512;

export class BlockCache {
  private readonly entries = new Map<string, Uint8Array>();
  private readonly pointers = new Map<string, readonly BlockPointer[]>();
  private bytes = 0;
  private readonly maxBytes: number;
  readonly stats = { hits: 0, misses: 0, evictions: 0 };

  constructor(maxBytes: number) {
    assert(Number.isSafeInteger(maxBytes) && maxBytes >= 0);
    this.maxBytes = maxBytes;
  }

  static key(bp: BlockPointer): string | null {
    const dva = bp.dvas[0];
    if (isHole(bp) || dva === undefined) return null;
    return `${dva.vdev}:${dva.offset}:${bp.birth}`;
  }

  get(bp: BlockPointer): Uint8Array | undefined {
    const key = BlockCache.key(bp);
    if (key === null) return undefined;
    const hit = this.entries.get(key);
    if (hit === undefined) {
      this.stats.misses++;
      return undefined;
    }
    this.stats.hits++;
    this.entries.delete(key);
    this.entries.set(key, hit);
    return hit;
  }

  /** Whether `bp`'s bytes are kept (no LRU touch, no hit or miss counted). */
  has(bp: BlockPointer): boolean {
    const key = BlockCache.key(bp);
    return key !== null && this.entries.has(key);
  }

  put(bp: BlockPointer, data: Uint8Array): void {
    const key = BlockCache.key(bp);
    if (key === null || data.length > this.maxBytes / 4) return;
    this.evict(bp);
    this.entries.set(key, data);
    this.bytes += data.length;
    while (this.bytes > this.maxBytes) {
      const oldest = this.entries.entries().next();
      if (oldest.done === true) break;
      this.entries.delete(oldest.value[0]);
      this.bytes -= oldest.value[1].length;
      this.stats.evictions++;
    }
  }

  /** The decoded pointers of indirect block `bp`, if kept. */
  getPointers(bp: BlockPointer): readonly BlockPointer[] | undefined {
    const key = BlockCache.key(bp);
    if (key === null) return undefined;
    const hit = this.pointers.get(key);
    if (hit === undefined) return undefined;
    this.pointers.delete(key);
    this.pointers.set(key, hit);
    return hit;
  }

  /** Keeps `list`, the decoded content of indirect block `bp` (the caller gives up the array). */
  putPointers(bp: BlockPointer, list: readonly BlockPointer[]): void {
    const key = BlockCache.key(bp);
    if (key === null) return;
    this.pointers.delete(key);
    this.pointers.set(key, list);
    if (this.pointers.size > POINTER_CACHE_BLOCKS) {
      const oldest = this.pointers.keys().next();
      if (oldest.done !== true) this.pointers.delete(oldest.value);
    }
  }

  evict(bp: BlockPointer): void {
    const key = BlockCache.key(bp);
    if (key === null) return;
    this.pointers.delete(key);
    const old = this.entries.get(key);
    if (old === undefined) return;
    this.entries.delete(key);
    this.bytes -= old.length;
  }

  cachedBytes(): number {
    return this.bytes;
  }
}
