// A bounded LRU cache of verified blocks, keyed by where and when a block was written (first
// DVA + birth txg), so a key never names two different contents while the entry is evicted on
// free. Buffers in the cache are shared: nobody may modify a buffer the cache returned.

import { assert } from '../lib/index.js';
import { type BlockPointer, isHole } from './types.js';

export class BlockCache {
  private readonly entries = new Map<string, Uint8Array>();
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

  evict(bp: BlockPointer): void {
    const key = BlockCache.key(bp);
    if (key === null) return;
    const old = this.entries.get(key);
    if (old === undefined) return;
    this.entries.delete(key);
    this.bytes -= old.length;
  }

  cachedBytes(): number {
    return this.bytes;
  }
}
