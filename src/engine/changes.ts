// What changed in an object set after a txg: the events a send stream is made of (src/sync). The
// walk starts at the object set's root and prunes every subtree whose block pointer was born at or
// before `fromTxg` — copy-on-write guarantees nothing below it changed — so its cost follows the
// change, not the size of the object set. With fromTxg 0 it visits everything (a full send).
//
// Events, in object order:
//   object       an allocated dnode in a dnode block born after fromTxg (changed or not: the
//                block is the unit of change), with its dnode;
//   freeObjects  free slots in such blocks, a dnode-array hole inside a changed indirect block
//                (its objects were all freed), and everything past the end of the dnode array;
//   data         a level-0 block of an object born after fromTxg;
//   free         a hole inside a changed part of an object's tree (data punched out or never
//                written: receivers free the range, which is harmless when it is already free).
// Holes carry no birth txg, so an incremental walk reports every hole under a changed indirect
// block, old or new; a full walk (fromTxg 0) reports none (a new object has no data yet).

import { assert } from '../lib/index.js';
import type { BlockStore } from './block-store.js';
import { DNODE_BYTES, DNODES_PER_BLOCK, type Dnode, ObjectType, decodeDnode } from './dnode.js';
import { decodeObjsetPhys } from './objset-phys.js';
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
}

type TreeItem = { blockId: number; bp: BlockPointer } | { holeFrom: number; holeBlocks: number };

/**
 * Walks one tree of `blocks` level-0 blocks: those born after fromTxg, and (incremental walks
 * only) the holes under changed indirect blocks, as block ranges.
 */
async function* walkTree(store: BlockStore, top: BlockPointer, blocks: number, fromTxg: number, what: string, object: number): AsyncGenerator<TreeItem, void, undefined> {
  async function* visit(bp: BlockPointer, base: number, width: number): AsyncGenerator<TreeItem, void, undefined> {
    if (base >= blocks) return;
    if (isHole(bp)) {
      if (fromTxg > 0) yield { holeFrom: base, holeBlocks: Math.min(width, blocks - base) };
      return;
    }
    if (bp.birth <= fromTxg) return;
    if (bp.level === 0) {
      yield { blockId: base, bp };
      return;
    }
    assert(bp.type === BlockType.indirect, `${what} object ${object}: indirect block expected at level ${bp.level}`);
    const kids = await store.readPointers(bp, { what, object });
    const childWidth = kids.length ** (bp.level - 1);
    // The dnode blocks of a changed part of the dnode array are read together, not one by one.
    if (object === 0 && bp.level === 1) for (const kid of kids) if (!isHole(kid) && kid.birth > fromTxg) prefetch(store.read(kid, { what, object }));
    for (const [i, kid] of kids.entries()) yield* visit(kid, base + i * childWidth, childWidth);
  }
  yield* visit(top, 0, blocks);
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
  for await (const item of walkTree(store, meta.bp, meta.blocks, fromTxg, what, 0)) {
    if ('holeFrom' in item) {
      yield* freeObjects(item.holeFrom * DNODES_PER_BLOCK, item.holeBlocks * DNODES_PER_BLOCK);
      continue;
    }
    if ((item.blockId + 1) * DNODES_PER_BLOCK <= fromObject) continue;
    const block = await store.read(item.bp, { what, object: 0 });
    // The top indirect blocks of this dnode block's changed objects are read together.
    for (let slot = 0; slot < DNODES_PER_BLOCK; slot++) {
      const d = decodeDnode(block, slot * DNODE_BYTES, { what, object: item.blockId * DNODES_PER_BLOCK + slot });
      if (d.type !== ObjectType.none && !isHole(d.bp) && d.bp.level > 0 && d.bp.birth > fromTxg) prefetch(store.readPointers(d.bp, { what, object: slot }));
    }
    for (let slot = 0; slot < DNODES_PER_BLOCK; slot++) {
      const object = item.blockId * DNODES_PER_BLOCK + slot;
      if (object === 0 || object < fromObject) continue;
      const dnode = decodeDnode(block, slot * DNODE_BYTES, { what, object });
      if (dnode.type === ObjectType.none) {
        yield* freeObjects(object, 1);
        continue;
      }
      yield* flush();
      yield { kind: 'object', object, dnode };
      let hole: { first: number; blocks: number } | null = null;
      for await (const b of walkTree(store, dnode.bp, dnode.blocks, fromTxg, what, object)) {
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
