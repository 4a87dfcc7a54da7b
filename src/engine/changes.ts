// What changed in an object set after a txg: the events a send stream is made of (src/sync). The
// walk starts at the object set's root and prunes every subtree whose block pointer was born at or
// before `fromTxg` — copy-on-write guarantees nothing below it changed — so its cost follows the
// change, not the size of the object set. With fromTxg 0 it visits everything (a full send).
//
// Events, in object order:
//   object       an allocated dnode in a dnode block born after fromTxg, with its dnode. The
//                block is the unit of change: without the from snapshot's object set every
//                allocated dnode of the block is reported; with it (ChangeOptions.from), only
//                those whose 512 bytes differ from the same slot there (an object whose dnode is
//                unchanged has unchanged data too: the dnode holds its tree's root pointer; a
//                block of the from object set that cannot be read counts as all changed);
//   freeObjects  free slots in such blocks (with the from object set: those not free there
//                too), a dnode-array hole inside a changed indirect block (its objects were all
//                freed), and everything past the end of the dnode array;
//   data         a level-0 block of an object born after fromTxg;
//   free         a hole inside a changed part of an object's tree (data punched out or never
//                written: receivers free the range, which is harmless when it is already free).
// Holes carry no birth txg, so an incremental walk reports every hole under a changed indirect
// block, old or new; a full walk (fromTxg 0) reports none (a new object has no data yet).
//
// Reads: the dnode blocks under a changed indirect block of the dnode array are asked for
// together, and so are the top indirect blocks of one dnode block's changed objects (each object's
// walk then takes its pointers from that request, not a second one). An object whose tree is not
// newer than fromTxg costs its OBJECT event only, no walk.

import { assert, bytesEqual } from '../lib/index.js';
import type { BlockStore } from './block-store.js';
import { DNODE_BYTES, DNODES_PER_BLOCK, type Dnode, ObjectType, decodeDnode } from './dnode.js';
import { decodeObjsetPhys } from './objset-phys.js';
import { lookupBlock } from './tree.js';
import { type BlockPointer, BlockType, isHole } from './types.js';

export type ChangeEvent =
  | { readonly kind: 'object'; readonly object: number; readonly dnode: Dnode }
  | { readonly kind: 'freeObjects'; readonly first: number; readonly count: number }
  | { readonly kind: 'data'; readonly object: number; readonly blockId: number; readonly bp: BlockPointer }
  | { readonly kind: 'free'; readonly object: number; readonly firstBlock: number; readonly blocks: number };

/** Object numbers past the dnode array a final freeObjects covers (any receiver object beyond it). */
export const FREE_OBJECTS_TAIL = 2 ** 40;

export interface ChangeOptions {
  /** Start at this object (a resumed send): earlier objects are skipped. */
  readonly fromObject?: number;
  /**
   * The root of the object set at fromTxg (the from snapshot's), when there is one (a bookmark
   * has none): objects whose dnode is the same there are left out.
   */
  readonly from?: BlockPointer;
}

/** Which tree walkTree walks, and its top block's pointers when they were already asked for. */
interface TreeRef {
  readonly what: string;
  readonly object: number;
  readonly top?: Promise<readonly BlockPointer[]> | undefined;
}

/** Whether `bp` is a block (not a hole) born after fromTxg. */
function changed(bp: BlockPointer, fromTxg: number): boolean {
  return !isHole(bp) && bp.birth > fromTxg;
}

type TreeItem = { blockId: number; bp: BlockPointer } | { holeFrom: number; holeBlocks: number };

/**
 * Walks one tree of `blocks` level-0 blocks: those born after fromTxg, and (incremental walks
 * only) the holes under changed indirect blocks, as block ranges.
 */
async function* walkTree(store: BlockStore, top: BlockPointer, blocks: number, fromTxg: number, tree: TreeRef): AsyncGenerator<TreeItem, void, undefined> {
  const { what, object } = tree;
  // Only changed indirect blocks get a generator of their own: holes, pruned subtrees, data
  // blocks and the unused pointers past the end of the tree are settled in the parent's loop.
  const near = (bp: BlockPointer, base: number, width: number): TreeItem | null => {
    if (isHole(bp)) return fromTxg > 0 ? { holeFrom: base, holeBlocks: Math.min(width, blocks - base) } : null;
    if (bp.birth <= fromTxg) return null;
    assert(bp.level === 0);
    return { blockId: base, bp };
  };
  async function* visit(bp: BlockPointer, base: number): AsyncGenerator<TreeItem, void, undefined> {
    assert(bp.type === BlockType.indirect, `${what} object ${object}: indirect block expected at level ${bp.level}`);
    // The top block's pointers may already be on their way (read ahead with its dnode block).
    const kids = await (bp === top && tree.top !== undefined ? tree.top : store.readPointers(bp, { what, object }));
    const childWidth = kids.length ** (bp.level - 1);
    // The dnode blocks of a changed part of the dnode array are read together, not one by one.
    if (object === 0 && bp.level === 1) for (const kid of kids) if (changed(kid, fromTxg)) prefetch(store.read(kid, { what, object }));
    for (let i = 0; i < kids.length; i++) {
      const kidBase = base + i * childWidth;
      if (kidBase >= blocks) break;
      const kid = kids[i];
      assert(kid !== undefined);
      if (kid.level > 0 && changed(kid, fromTxg)) {
        yield* visit(kid, kidBase);
        continue;
      }
      const item = near(kid, kidBase, childWidth);
      if (item !== null) yield item;
    }
  }
  if (blocks <= 0) return;
  if (top.level > 0 && changed(top, fromTxg)) {
    yield* visit(top, 0);
    return;
  }
  const item = near(top, 0, blocks);
  if (item !== null) yield item;
}

/**
 * The dnode blocks of the object set rooted at `root`, by block id: the block's bytes, or null
 * where the dnode array has a hole or ends (every slot free).
 */
async function dnodeBlocksAt(store: BlockStore, root: BlockPointer): Promise<(blockId: number) => Promise<Uint8Array | null>> {
  const what = 'send';
  const meta = decodeObjsetPhys(await store.read(root, { what }), { what }).meta;
  return async (blockId) => {
    if (blockId >= meta.blocks) return null;
    const bp = await lookupBlock(store, meta, blockId, { what, object: 0 });
    return isHole(bp) ? null : store.read(bp, { what, object: 0 });
  };
}

/** Starts a read whose result a later await picks up from the cache or the read in flight. */
function prefetch(read: Promise<unknown>): void {
  read.catch(() => undefined);
}

/** The change events of the object set rooted at `root` after `fromTxg` (see the top of the file). */
export async function* changesSince(store: BlockStore, root: BlockPointer, fromTxg: number, options: ChangeOptions = {}): AsyncGenerator<ChangeEvent, void, undefined> {
  const what = 'send';
  const phys = decodeObjsetPhys(await store.read(root, { what }), { what });
  const meta = phys.meta;
  const fromObject = options.fromObject ?? 0;
  const before = options.from === undefined ? null : await dnodeBlocksAt(store, options.from).catch(() => null);
  let freeRun: { first: number; count: number } | null = null;
  const flush = function* (): Generator<ChangeEvent> {
    if (freeRun !== null) yield { kind: 'freeObjects', ...freeRun };
    freeRun = null;
  };
  const freeObjects = function* (first: number, count: number): Generator<ChangeEvent> {
    const start = Math.max(first, fromObject, 1);
    const end = first + count;
    if (end <= start) return;
    if (freeRun !== null && freeRun.first + freeRun.count === start) freeRun.count += end - start;
    else {
      yield* flush();
      freeRun = { first: start, count: end - start };
    }
  };
  for await (const item of walkTree(store, meta.bp, meta.blocks, fromTxg, { what, object: 0 })) {
    if ('holeFrom' in item) {
      yield* freeObjects(item.holeFrom * DNODES_PER_BLOCK, item.holeBlocks * DNODES_PER_BLOCK);
      continue;
    }
    if ((item.blockId + 1) * DNODES_PER_BLOCK <= fromObject) continue;
    // A block of the from object set that cannot be read costs only the shortcut.
    const earlier = before?.(item.blockId).catch(() => undefined);
    const block = await store.read(item.bp, { what, object: 0 });
    // The same block of the from object set: null where that was a hole (every slot free).
    const old = earlier === undefined ? undefined : await earlier;
    const same = (slot: number): boolean => {
      if (old === undefined) return false;
      const at = slot * DNODE_BYTES;
      if (old === null) return block[at] === ObjectType.none;
      return bytesEqual(block.subarray(at, at + DNODE_BYTES), old.subarray(at, at + DNODE_BYTES));
    };
    // Each dnode is decoded once; the top indirect blocks of this dnode block's changed objects
    // are read together (one pointer array each, shared with the walk of that object below).
    const dnodes: (Dnode | null)[] = [];
    const tops = new Map<number, Promise<readonly BlockPointer[]>>();
    for (let slot = 0; slot < DNODES_PER_BLOCK; slot++) {
      const object = item.blockId * DNODES_PER_BLOCK + slot;
      const d = same(slot) ? null : decodeDnode(block, slot * DNODE_BYTES, { what, object });
      dnodes.push(d);
      if (d === null || object === 0 || object < fromObject || d.type === ObjectType.none || !changed(d.bp, fromTxg) || d.bp.level === 0) continue;
      const kids = store.readPointers(d.bp, { what, object });
      prefetch(kids);
      tops.set(slot, kids);
    }
    for (let slot = 0; slot < DNODES_PER_BLOCK; slot++) {
      const object = item.blockId * DNODES_PER_BLOCK + slot;
      if (object === 0 || object < fromObject) continue;
      const dnode = dnodes[slot];
      assert(dnode !== undefined);
      // As it was at fromTxg: nothing to report.
      if (dnode === null) continue;
      if (dnode.type === ObjectType.none) {
        yield* freeObjects(object, 1);
        continue;
      }
      yield* flush();
      yield { kind: 'object', object, dnode };
      // An object whose tree is older than fromTxg has nothing below it to report.
      if (!isHole(dnode.bp) && dnode.bp.birth <= fromTxg) continue;
      let hole: { first: number; blocks: number } | null = null;
      for await (const b of walkTree(store, dnode.bp, dnode.blocks, fromTxg, { what, object, top: tops.get(slot) })) {
        if ('holeFrom' in b) {
          const blocks = b.holeBlocks;
          if (hole !== null && hole.first + hole.blocks === b.holeFrom) hole.blocks += blocks;
          else {
            if (hole !== null) yield { kind: 'free', object, firstBlock: hole.first, blocks: hole.blocks };
            hole = { first: b.holeFrom, blocks };
          }
          continue;
        }
        if (hole !== null) yield { kind: 'free', object, firstBlock: hole.first, blocks: hole.blocks };
        hole = null;
        yield { kind: 'data', object, blockId: b.blockId, bp: b.bp };
      }
      if (hole !== null) yield { kind: 'free', object, firstBlock: hole.first, blocks: hole.blocks };
    }
  }
  // Objects past the end of the dnode array: freed objects the receiver may still have.
  yield* freeObjects(Math.max(1, meta.blocks * DNODES_PER_BLOCK), FREE_OBJECTS_TAIL);
  yield* flush();
}
