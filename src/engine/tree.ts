// The block tree of one object: lookups from a data block id to its pointer, searches for the
// next data or hole (SEEK_DATA/SEEK_HOLE), and the copy-on-write sync that writes a txg's dirty
// blocks and frees and rewrites every indirect block above them, up to a new root pointer.
// Invariants: an indirect block's fill is the sum of its children's; a subtree with fill 0 is a
// hole whose birth is the txg that freed it; only subtrees a txg touched are read or rewritten,
// so a sync costs in proportion to the change, not the object.

import { ChecksumKind, assert, mpError } from '../lib/index.js';
import { encodeBlockPointers } from './blkptr.js';
import { blockBuffers } from './block-buffers.js';
import { type BlockStore, type ReadContext, bpAllocatedBytes } from './block-store.js';
import { POINTER_SHIFT, POINTERS_PER_INDIRECT, INDIRECT_BYTES, capacityBlocks } from './dnode.js';
import { type BlockPointer, BlockType, HOLE, type Txg, isHole, txg } from './types.js';

/** Level-0 writes one syncTree keeps in flight (see syncNode). */
export const LEAF_WRITES_IN_FLIGHT_MAX = 16;

export interface TreeRoot {
  readonly bp: BlockPointer;
  readonly levels: number;
}

export function holePointer(birth: Txg, level: number): BlockPointer {
  return { ...HOLE, birth, level };
}

/** Data blocks one pointer at `level` covers. */
function span(level: number): number {
  return 2 ** (POINTER_SHIFT * level);
}

/** The pointers of an indirect block: shared with the store's cache, never modified. */
async function children(store: BlockStore, bp: BlockPointer, ctx: ReadContext): Promise<readonly BlockPointer[]> {
  if (isHole(bp)) return new Array<BlockPointer>(POINTERS_PER_INDIRECT).fill(holePointer(bp.birth, bp.level - 1));
  if (bp.type !== BlockType.indirect || bp.level < 1) {
    throw mpError('EPROTO', `expected an indirect block, found type ${bp.type} level ${bp.level}`, { ...ctx });
  }
  const list = await store.readPointers(bp, ctx);
  if (list.length !== POINTERS_PER_INDIRECT) throw mpError('EPROTO', 'indirect block of the wrong size', { ...ctx });
  return list;
}

/** The level-0 pointer of data block `blockId` (a hole when never written or out of range). */
export async function lookupBlock(store: BlockStore, root: TreeRoot, blockId: number, ctx: ReadContext): Promise<BlockPointer> {
  if (blockId >= capacityBlocks(root.levels, 0)) return HOLE;
  let bp = root.bp;
  for (let level = root.levels - 1; level >= 1; level--) {
    if (isHole(bp)) return holePointer(bp.birth, 0);
    const index = Math.floor(blockId / span(level - 1)) % POINTERS_PER_INDIRECT;
    const next = (await children(store, bp, ctx))[index];
    assert(next !== undefined);
    bp = next;
  }
  return bp;
}

/**
 * The first block id >= `from` that holds data (`wantData`) or is a hole, below `limit`
 * blocks; null when there is none. Whole subtrees are skipped by their fill count.
 */
export async function findBlock(
  store: BlockStore,
  root: TreeRoot,
  from: number,
  limit: number,
  wantData: boolean,
  ctx: ReadContext,
): Promise<number | null> {
  const walk = async (bp: BlockPointer, level: number, base: number): Promise<number | null> => {
    const width = span(level);
    if (base + width <= from || base >= limit) return null;
    if (bp.fill === 0) return wantData ? null : Math.max(base, from);
    if (!wantData && bp.fill === width) return null;
    if (level === 0) return wantData ? base : null;
    const kids = await children(store, bp, ctx);
    for (let i = 0; i < kids.length; i++) {
      const kid = kids[i];
      assert(kid !== undefined);
      const found = await walk(kid, level - 1, base + i * span(level - 1));
      if (found !== null) return found;
    }
    return null;
  };
  const found = await walk(root.bp, root.levels - 1, 0);
  if (found !== null) return found < limit ? found : null;
  if (wantData) return null;
  // Past the tree's capacity every block is a hole.
  const beyond = Math.max(from, capacityBlocks(root.levels, 0));
  return beyond < limit ? beyond : null;
}

export interface TreeChanges {
  /** Level-0 blocks to write, by block id; each is a whole block. */
  readonly blocks: ReadonlyMap<number, Uint8Array>;
  /** Block id ranges [start, end) to turn into holes (applied before `blocks`). */
  readonly freed: readonly (readonly [number, number])[];
}

export interface SyncMeta {
  readonly txg: Txg;
  readonly dataType: BlockType;
  readonly checksumKind: number;
  readonly ctx: ReadContext;
}

interface Virtual {
  readonly virtual: true;
  readonly kids: (BlockPointer | Virtual)[];
}

/**
 * Writes `changes` into the tree copy-on-write in txg `meta.txg`, growing it to `levels`.
 * Returns the new root and the change in allocated bytes.
 */
export async function syncTree(
  store: BlockStore,
  root: TreeRoot,
  levels: number,
  changes: TreeChanges,
  meta: SyncMeta,
): Promise<{ root: TreeRoot; usedDelta: number }> {
  assert(levels >= root.levels, 'a tree never loses levels');
  const dirty = [...changes.blocks.keys()].sort((a, b) => a - b);
  let usedDelta = 0;
  const release = (bp: BlockPointer): void => {
    if (isHole(bp)) return;
    usedDelta -= bpAllocatedBytes(bp);
    store.free(bp, meta.txg);
  };
  const write = async (data: Uint8Array, level: number, fill: number, pointers?: readonly BlockPointer[]): Promise<BlockPointer> => {
    // A data block filled from bytes of known fletcher-4 (block-buffers.ts) is not summed again.
    const known = level === 0 && meta.checksumKind === ChecksumKind.fletcher4 ? blockBuffers.fletcher4Of(data) : undefined;
    const bp = await store.write(
      data,
      {
        type: level === 0 ? meta.dataType : BlockType.indirect,
        level,
        checksumKind: meta.checksumKind,
        fill,
        // One copy for user data, so the block store never caches its buffer: the engine reuses
        // it once the txg is on disk (block-buffers.ts).
        copies: level === 0 && meta.dataType === BlockType.data ? 1 : 2,
        ...(pointers === undefined ? {} : { pointers }),
        ...(known === undefined ? {} : { checksum: known }),
      },
      meta.txg,
    );
    usedDelta += bpAllocatedBytes(bp);
    return bp;
  };
  const touched = (base: number, width: number, node: BlockPointer | Virtual): boolean => {
    if ('virtual' in node) return true;
    if (firstAtOrAfter(dirty, base) < base + width) return true;
    if (isHole(node)) return false;
    return changes.freed.some(([s, e]) => s < base + width && e > base);
  };
  const freeAll = async (bp: BlockPointer): Promise<void> => {
    if (isHole(bp)) return;
    if (bp.level > 0) for (const kid of await children(store, bp, meta.ctx)) await freeAll(kid);
    release(bp);
  };
  // A level-0 block: the free, the allocation and the checksum happen now, in block order, so the
  // placement is the same whatever the disk does; only the I/O is left running.
  const syncLeaf = (node: BlockPointer | Virtual, base: number): Promise<BlockPointer> => {
    assert(!('virtual' in node));
    const data = changes.blocks.get(base);
    release(node);
    return data === undefined ? Promise.resolve(holePointer(meta.txg, 0)) : write(data, 0, 1);
  };
  // Level-0 writes of one indirect block overlap, at most LEAF_WRITES_IN_FLIGHT_MAX at a time:
  // writing them one by one left the disk idle while the next block was checksummed, and the CPU
  // idle while the disk wrote. `window` holds settled-never-rejecting twins; errors surface from
  // the real promises, all awaited together.
  const window: Promise<void>[] = [];
  const startLeaf = (node: BlockPointer | Virtual, base: number): Promise<BlockPointer> => {
    const p = syncLeaf(node, base);
    window.push(p.then(() => undefined, () => undefined));
    return p;
  };
  const syncNode = async (node: BlockPointer | Virtual, level: number, base: number): Promise<BlockPointer> => {
    if (level === 0) return syncLeaf(node, base);
    const width = span(level - 1);
    // A subtree wholly inside a freed range with nothing newly written goes at once.
    if (!('virtual' in node) && firstAtOrAfter(dirty, base) >= base + span(level) &&
        changes.freed.some(([s, e]) => s <= base && e >= base + span(level))) {
      await freeAll(node);
      return holePointer(meta.txg, level);
    }
    const kids = 'virtual' in node ? padVirtual(node.kids, level) : await children(store, node, meta.ctx);
    const pending: (BlockPointer | Promise<BlockPointer>)[] = [];
    for (let i = 0; i < POINTERS_PER_INDIRECT; i++) {
      const kid = kids[i];
      assert(kid !== undefined);
      const kidBase = base + i * width;
      if (!touched(kidBase, width, kid)) pending.push(kid as BlockPointer);
      else if (level > 1) pending.push(await syncNode(kid, level - 1, kidBase));
      else {
        while (window.length >= LEAF_WRITES_IN_FLIGHT_MAX) await window.shift();
        pending.push(startLeaf(kid, kidBase));
      }
    }
    const next = await settled(pending);
    if (!('virtual' in node)) release(node);
    const fill = next.reduce((sum, bp) => sum + bp.fill, 0);
    if (fill === 0) return holePointer(meta.txg, level);
    return write(encodeBlockPointers(next, INDIRECT_BYTES), level, fill, next);
  };
  let top: BlockPointer | Virtual = root.bp;
  for (let level = root.levels; level < levels; level++) {
    top = isHole(root.bp) ? holePointer(root.bp.birth, level) : { virtual: true, kids: [top] };
  }
  const bp = touched(0, span(levels - 1), top)
    ? await syncNode(top, levels - 1, 0)
    : (top as BlockPointer);
  return { root: { bp, levels }, usedDelta };
}

/**
 * Waits for every promise among `items` (no write left running after a failure), then throws the
 * first error. Most slots of an indirect block are pointers already: only the promises wait.
 */
async function settled<T>(items: readonly (T | Promise<T>)[]): Promise<T[]> {
  const out = items.slice() as T[];
  const waits: Promise<void>[] = [];
  // By slot, so the error thrown is the first slot's whatever order they fail in.
  const errors = new Map<number, unknown>();
  items.forEach((item, i) => {
    if (!(item instanceof Promise)) return;
    waits.push(item.then(
      (value) => void (out[i] = value),
      (reason: unknown) => void errors.set(i, reason),
    ));
  });
  await Promise.all(waits);
  if (errors.size > 0) throw errors.get(Math.min(...errors.keys()));
  return out;
}

function padVirtual(kids: readonly (BlockPointer | Virtual)[], level: number): (BlockPointer | Virtual)[] {
  const out = [...kids];
  while (out.length < POINTERS_PER_INDIRECT) out.push(holePointer(txg(0), level - 1));
  return out;
}

/** Index into the sorted `ids` of the first id >= `x`, returned as that id (or Infinity). */
function firstAtOrAfter(ids: readonly number[], x: number): number {
  let lo = 0;
  let hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((ids[mid] ?? Infinity) < x) lo = mid + 1;
    else hi = mid;
  }
  return ids[lo] ?? Infinity;
}
