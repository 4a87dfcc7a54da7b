// `pool debug`, the zdb of mirrorpool: every label of every leaf (config summary, which uberblock
// txgs are present and verify), the active uberblock, then the objects of the MOS, the list of
// datasets, snapshots and bookmarks, and the objects of every dataset with their block pointers (DVAs, birth txgs). Output is bounded by maxObjects per object
// set and maxBlocks per object; the walk stops once past the last object shown (--check walks
// everything, through the pool's invariant check, which crashes on a broken invariant). Labels are read
// and printed before the import, so a pool that no longer imports can still be inspected. The
// pool is opened here, not through withPool: a resident pool (daemon) is evicted for the report
// and imported again afterwards (withPoolClosed). Called by cli-pool.ts.

import {
  type DatasetEntry,
  type BlockPointer,
  BlockType,
  type ObjectSet,
  ObjectType,
  type Pool,
  dmu,
  isHole,
  objectId,
  readDiskLabels,
  traverseObjset,
} from '../engine/index.js';
import { ChecksumKind, hasCode, toHex } from '../lib/index.js';
import { PoolCache } from './pool-cache.js';
import { type OpenLeaf, withImportedPool, withLockedLeaves, withPoolClosed } from './pool-open.js';
import { table } from './pool-report.js';
import { formatSize } from './units.js';

export interface DebugOptions {
  /** Objects listed per object set. */
  readonly maxObjects: number;
  /** Block pointers listed per object. */
  readonly maxBlocks: number;
  /** Also walk every block: checksums, overlaps, space accounting (pool.checkInvariants). */
  readonly check: boolean;
}

/** Labels on every leaf (two at the front, two at the back). */
const LABELS_PER_LEAF = 4;

const nameOf = (names: Record<string, number>, value: number): string =>
  Object.entries(names).find(([, v]) => v === value)?.[0] ?? `type-${value}`;

/** `1-5,7,9-10`: sorted txgs as ranges, so a full uberblock ring stays one short line. */
export function txgRanges(txgs: readonly number[]): string {
  const sorted = [...new Set(txgs)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === (sorted[j] ?? 0) + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.length === 0 ? 'none' : parts.join(',');
}

/** One block pointer on one line, zdb style: level, type, size, DVAs <vdev:offset:asize> in hex. */
export function formatBlockPointer(bp: BlockPointer): string {
  if (isHole(bp)) return `hole birth ${bp.birth}`;
  const dvas = bp.dvas.map((d) => `<${d.vdev}:${d.offset.toString(16)}:${d.asize.toString(16)}>`).join(' ');
  const sum = `${nameOf(ChecksumKind, bp.checksumKind)}:${toHex(bp.checksum.subarray(0, 8))}`;
  return `L${bp.level} ${nameOf(BlockType, bp.type)} ${formatSize(bp.lsize)} ${dvas} birth ${bp.birth} fill ${bp.fill} ${sum}`;
}

async function labelSection(leaves: readonly OpenLeaf[], write: (s: string) => void): Promise<void> {
  write('labels:\n');
  for (const leaf of leaves) {
    const labels = await readDiskLabels(leaf.disk);
    write(`  ${leaf.path} (${formatSize(leaf.disk.size())})\n`);
    for (let label = 0; label < LABELS_PER_LEAF; label++) {
      const c = labels.configs.find((x) => x.label === label)?.config;
      const config =
        c === undefined
          ? 'no valid config'
          : `pool ${c.name} guid ${c.poolGuid} config txg ${c.txg}, vdev ${c.topIndex} of ${c.vdevs.length}, leaf guid ${c.leafGuid}`;
      const txgs = labels.uberblocks.filter((u) => u.label === label).map((u) => u.uberblock.txg);
      write(`    label ${label}: ${config}; uberblocks ${txgRanges(txgs)}${txgs.length > 0 ? ` (${txgs.length} valid)` : ''}\n`);
    }
  }
}

function uberblockSection(pool: Pool): string {
  const ub = pool.uberblock;
  return [
    `active uberblock: txg ${ub.txg}, pool guid ${ub.poolGuid}, written ${new Date(ub.timestampMs).toISOString()}, ` +
      `checkpoint txg ${ub.checkpointTxg === 0 ? 'none' : ub.checkpointTxg}`,
    `  MOS root: ${formatBlockPointer(ub.rootBp)}`,
    '',
  ].join('\n');
}

interface ListedObject {
  readonly id: number;
  readonly row: string[];
}

/** The first `max` allocated objects (by number) of an object set, as table rows. */
async function listObjects(os: ObjectSet, max: number): Promise<{ objects: ListedObject[]; more: boolean }> {
  const next = os.summary().nextObject;
  const objects: ListedObject[] = [];
  for (let id = 1; id < next; id++) {
    let info: dmu.ObjectInfo;
    try {
      info = await dmu.objectInfo(os, objectId(id));
    } catch (e) {
      if (hasCode(e, 'ENOENT')) continue; // a free slot
      throw e;
    }
    if (objects.length === max) return { objects, more: true };
    const row = [String(id), nameOf(ObjectType, info.type), String(info.levels), formatSize(info.blockBytes), formatSize(info.size)];
    objects.push({ id, row: [...row, formatSize(info.usedBytes), String(info.blocks), String(info.createdTxg)] });
  }
  return { objects, more: false };
}

class StopWalk extends Error {}

/** Block pointers per object (-1: the objset block, 0: the dnode array), up to `maxBlocks` each. */
async function blocksByObject(pool: Pool, os: ObjectSet, lastObject: number, maxBlocks: number): Promise<Map<number, { shown: BlockPointer[]; total: number }>> {
  const byObject = new Map<number, { shown: BlockPointer[]; total: number }>();
  try {
    await traverseObjset(pool.store, os.what, os.rootPointer(), {
      block: ({ bp, object }) => {
        if (object > lastObject) throw new StopWalk();
        const entry = byObject.get(object) ?? { shown: [], total: 0 };
        if (entry.shown.length < maxBlocks) entry.shown.push(bp);
        entry.total++;
        byObject.set(object, entry);
      },
    });
  } catch (e) {
    if (!(e instanceof StopWalk)) throw e;
  }
  return byObject;
}

async function objsetSection(pool: Pool, os: ObjectSet, title: string, o: DebugOptions): Promise<string> {
  const s = os.summary();
  const { objects, more } = await listObjects(os, o.maxObjects);
  const blocks = await blocksByObject(pool, os, objects.at(-1)?.id ?? 0, o.maxBlocks);
  const out = [
    `${title}: next object ${s.nextObject}, ${s.dnodeBlocks} dnode block(s), dnode array ${formatSize(s.metaUsedBytes)} used`,
    `  root: ${formatBlockPointer(s.root)}`,
  ];
  const blockLines = (object: number): string[] => {
    const b = blocks.get(object);
    if (b === undefined) return [];
    const lines = b.shown.map((bp) => `        ${formatBlockPointer(bp)}`);
    if (b.total > b.shown.length) lines.push(`        ... ${b.total - b.shown.length} more block(s)`);
    return lines;
  };
  if (objects.length === 0 && blocks.size === 0) return out.join('\n') + '\n  (no objects)\n\n';
  out.push('  object 0 (dnode array):', ...blockLines(0));
  const header = ['OBJECT', 'TYPE', 'LEVELS', 'BLOCK', 'SIZE', 'USED', 'BLOCKS', 'CREATED'];
  const rows = table(header, objects.map((x) => x.row), [true, false, true, true, true, true, true, true]).trimEnd().split('\n');
  out.push(`  ${rows[0] ?? ''}`);
  for (const [i, x] of objects.entries()) out.push(`  ${rows[i + 1] ?? ''}`, ...blockLines(x.id));
  if (more) out.push(`  ... more objects (raise --max-objects to see them)`);
  return out.join('\n') + '\n\n';
}

/** Every dataset, snapshot and bookmark with its guid, creation txg and space. */
function datasetSection(all: readonly DatasetEntry[]): string {
  const rows = all.map((d) => [
    d.name,
    d.type,
    d.guid.toString(16).padStart(16, '0'),
    String(d.createTxg),
    d.usedBytes === undefined ? '-' : formatSize(d.usedBytes),
    d.referencedBytes === undefined ? '-' : formatSize(d.referencedBytes),
  ]);
  return `datasets:\n${table(['NAME', 'TYPE', 'GUID', 'CREATETXG', 'USED', 'REFER'], rows, [false, false, false, true, true, true])}`;
}

/** Prints the debug report of the cached pool `name` through `write`. */
export function debugPool(home: string, name: string, o: DebugOptions, write: (s: string) => void): Promise<void> {
  return withPoolClosed(home, name, { reopen: true }, () => debugCached(home, name, o, write));
}

async function debugCached(home: string, name: string, o: DebugOptions, write: (s: string) => void): Promise<void> {
  const entry = await new PoolCache(home).get(name);
  await withLockedLeaves(entry.vdevs, async (leaves) => {
    write(`pool ${entry.name} (guid ${entry.guid}), ${leaves.length} leaf vdev(s)\n\n`);
    await labelSection(leaves, write);
    write('\n');
    await withImportedPool(leaves, entry.guid, async (pool) => {
      write(uberblockSection(pool) + '\n');
      write(await objsetSection(pool, pool.mos, 'object set MOS', o));
      const all = await pool.dsl.list({ types: ['filesystem', 'snapshot', 'bookmark'] });
      write(datasetSection(all) + '\n');
      for (const d of all.filter((x) => x.type === 'filesystem')) {
        const title = `object set ${d.name}${d.name === pool.name ? ' (root dataset)' : ''}`;
        write(await pool.dsl.withView(d.name, 'read', (v) => objsetSection(pool, v.os, title, o)));
      }
      if (o.check) {
        const { blocks, liveBytes } = await pool.checkInvariants();
        write(`check: ${blocks} blocks verified, ${formatSize(liveBytes)} live, space accounting consistent\n`);
      }
    });
  });
}
