// Walks every block reachable from a root pointer: an object set's objset block, its dnode
// blocks, every object's indirect and data blocks, and — through dataset records in the MOS —
// every dataset's object set. Each block is read through the BlockStore, so its checksum is
// verified on the way. Used by the pool's invariant check, `pool debug`, and scrub.

import { assert } from '../lib/index.js';
import { decodeBlockPointerArray } from './blkptr.js';
import type { BlockStore } from './block-store.js';
import { DNODE_BYTES, DNODES_PER_BLOCK, type Dnode, ObjectType, decodeDnode } from './dnode.js';
import { decodeObjsetPhys } from './objset.js';
import { type BlockPointer, BlockType, isHole } from './types.js';

export interface VisitedBlock {
  readonly bp: BlockPointer;
  /** Which object set ("MOS", a dataset name or number) and object it belongs to. */
  readonly objset: string;
  readonly object: number;
}

export interface TraverseHooks {
  /** Called once per block, before its children; `false` skips the children. */
  block(v: VisitedBlock): void | boolean | Promise<void | boolean>;
  /** Object sets a dnode points to (dataset records): returns their roots. */
  childObjsets?(objset: string, object: number, d: Dnode): readonly { name: string; root: BlockPointer }[];
}

export async function traverseObjset(store: BlockStore, name: string, root: BlockPointer, hooks: TraverseHooks): Promise<void> {
  if (isHole(root)) return;
  if ((await hooks.block({ bp: root, objset: name, object: -1 })) === false) return;
  const phys = decodeObjsetPhys(await store.read(root, { what: name }), { what: name });
  const dnodeBlocks: { bp: BlockPointer; blockId: number }[] = [];
  await walkTree(store, phys.meta.bp, name, 0, hooks, (bp, blockId) => dnodeBlocks.push({ bp, blockId }));
  for (const { bp, blockId } of dnodeBlocks) {
    const block = await store.read(bp, { what: name, object: 0 });
    for (let slot = 0; slot < DNODES_PER_BLOCK; slot++) {
      const obj = blockId * DNODES_PER_BLOCK + slot;
      if (obj === 0) continue;
      const d = decodeDnode(block, slot * DNODE_BYTES, { what: name, object: obj });
      if (d.type === ObjectType.none) continue;
      await walkTree(store, d.bp, name, obj, hooks, () => undefined);
      for (const child of hooks.childObjsets?.(name, obj, d) ?? []) {
        await traverseObjset(store, child.name, child.root, hooks);
      }
    }
  }
}

/** Visits every block of one tree; `leaf` gets each level-0 block with its block id. */
async function walkTree(
  store: BlockStore,
  top: BlockPointer,
  objset: string,
  object: number,
  hooks: TraverseHooks,
  leaf: (bp: BlockPointer, blockId: number) => void,
): Promise<void> {
  const visit = async (bp: BlockPointer, base: number): Promise<void> => {
    if (isHole(bp)) return;
    if ((await hooks.block({ bp, objset, object })) === false) return;
    if (bp.level === 0) {
      leaf(bp, base);
      return;
    }
    assert(bp.type === BlockType.indirect, 'indirect block expected');
    const kids = decodeBlockPointerArray(await store.read(bp, { what: objset, object }));
    const width = kids.length ** (bp.level - 1);
    for (const [i, kid] of kids.entries()) await visit(kid, base + i * width);
  };
  await visit(top, 0);
}

/**
 * Every block of the object set at `root` born after `minTxg`, children before parents. Copy-on-
 * write makes a parent at least as new as its children, so older subtrees are skipped unread:
 * the cost follows the blocks found, not the size of the object set.
 */
export async function blocksBornAfter(store: BlockStore, name: string, root: BlockPointer, minTxg: number): Promise<BlockPointer[]> {
  const found: BlockPointer[] = [];
  await traverseObjset(store, name, root, {
    block: ({ bp }) => {
      if (bp.birth <= minTxg) return false;
      found.push(bp);
      return true;
    },
  });
  return found.reverse();
}
