// The space a pool state holds: every block reachable from a MOS root (the MOS, every dataset's
// object set through the dataset records) plus the raw extents every intent log lists. Used by
// the pool's invariant check, which walks the current state and the checkpointed one, and by
// rewind, which rebuilds the allocation of the checkpointed state from this walk.
//
// Snapshots, clones and heads share blocks, and a checkpointed state shares most of its blocks
// with the current one: a block already in `seen` is not counted again and its subtree is not
// walked again (copy-on-write: the same block pointer means the same subtree).

import { DATASET_RECORD_BYTES, decodeDatasetRecord } from './dataset-record.js';
import type { BlockStore } from './block-store.js';
import { ObjectType } from './dnode.js';
import { logExtentRanges } from './durable-log.js';
import type { ObjectSet } from './objset.js';
import { traverseObjset } from './traverse.js';
import { type BlockPointer, type Dva, type ObjectId, objectId } from './types.js';

export interface PoolSpace {
  /** One entry per copy of every block first seen in this walk, and per log extent. */
  readonly ranges: Dva[];
  readonly bytes: number;
  readonly blocks: number;
  /** The MOS objects that are intent logs. */
  readonly logObjects: ObjectId[];
}

/** The key shared copies of one block have in common. */
export function blockKey(bp: BlockPointer): string {
  return bp.dvas.map((d) => `${d.vdev}:${d.offset}`).join(',');
}

/**
 * Walks the state whose MOS is `mos` (opened at `root`), skipping blocks already in `seen` and
 * adding the others to it. Reads verify checksums on the way (ECKSUM, EIO, EPROTO propagate).
 */
export async function walkPoolSpace(store: BlockStore, mos: ObjectSet, root: BlockPointer, seen: Set<string>): Promise<PoolSpace> {
  const ranges: Dva[] = [];
  const logObjects: ObjectId[] = [];
  let bytes = 0;
  let blocks = 0;
  await traverseObjset(store, 'MOS', root, {
    block: ({ bp }) => {
      const key = blockKey(bp);
      if (seen.has(key)) return false;
      seen.add(key);
      blocks++;
      for (const dva of bp.dvas) {
        ranges.push(dva);
        bytes += dva.asize;
      }
      return true;
    },
    childObjsets: (name, obj, d) => {
      if (name === 'MOS' && d.type === ObjectType.intentLog) logObjects.push(objectId(obj));
      if (d.type !== ObjectType.dataset || d.bonus.length < DATASET_RECORD_BYTES) return [];
      const r = decodeDatasetRecord(d.bonus, { object: obj });
      return [{ name: `dataset@${obj}`, root: r.root }];
    },
  });
  // Intent log extents are raw space listed in their MOS objects, not block pointers.
  for (const obj of logObjects) {
    for (const dva of await logExtentRanges(mos, obj)) {
      const key = `${dva.vdev}:${dva.offset}`;
      if (seen.has(key)) continue;
      seen.add(key);
      ranges.push(dva);
      bytes += dva.asize;
    }
  }
  return { ranges, bytes, blocks, logObjects };
}
