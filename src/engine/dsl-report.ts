// What the DSL reports: properties (set, inherited, default, and the read-only figures), space
// (used, referenced, written, usedbysnapshots, usedbychildren), listings, and the invariant
// check the pool runs after every txg in tests. Reads the catalog; never changes anything.


import { assert } from '../lib/index.js';
import { type DatasetRecord } from './dataset-record.js';
import { deadlistBytes, deadlistChunks, sumBytes } from './deadlist.js';
import { RECV_SUFFIX, RESUME_TOKEN_KEY, parseName } from './dsl-names.js';
import { PROPERTY_NAMES } from './dsl-props.js';
import { blocksBornAfter } from './traverse.js';
import { type BlockPointer, type Guid, type ObjectId, type Txg } from './types.js';
import { type Catalog, type HeadNode, type PropertyValue, type SnapNode } from './dsl-catalog.js';

export type { PropertyValue } from './dsl-catalog.js';

export type DatasetType = 'filesystem' | 'snapshot' | 'bookmark';

export interface DatasetEntry {
  readonly name: string;
  readonly type: DatasetType;
  readonly guid: Guid;
  readonly createTxg: Txg;
  readonly creationMs: number;
  /** Absent for bookmarks. */
  readonly usedBytes?: number;
  readonly referencedBytes?: number;
  readonly origin?: string;
}

/** Every property of a dataset, snapshot or bookmark, with figures in bytes. */
export async function properties(c: Catalog, text: string): Promise<PropertyValue[]> {
  const n = parseName(text, ['dataset', 'snapshot', 'bookmark']);
  const fixed = (property: string, value: string | number | bigint): PropertyValue => ({ property, value: String(value), source: '-' });
  if (n.bookmark !== undefined) {
    const mark = c.bookmarkOf(text);
    return [fixed('type', 'bookmark'), fixed('guid', mark.guid), fixed('createtxg', mark.txg), fixed('creation', mark.creationMs)];
  }
  if (n.snapshot !== undefined) {
    const snap = c.snapNamed(text);
    const r = snap.record;
    const out = [
      fixed('type', 'snapshot'),
      fixed('guid', r.guid),
      fixed('createtxg', r.createdTxg),
      fixed('creation', r.creationMs),
      fixed('used', await snapshotUsed(c, snap)),
      fixed('referenced', r.referencedBytes),
      fixed('written', sumBytes(await blocksBornAfter(c.o.store, text, r.root, r.prevSnapTxg))),
      fixed('clones', r.clones),
      fixed('userrefs', snap.holds.size),
    ];
    return [...out, ...PROPERTY_NAMES.map((p) => c.property(snap.head, p))];
  }
  const node = c.head(text);
  const r = node.record;
  const space = spaceOf(c, node);
  const origin = c.snaps.get(r.origin);
  return [
    fixed('type', 'filesystem'),
    fixed('guid', r.guid),
    fixed('createtxg', r.createdTxg),
    fixed('creation', r.creationMs),
    fixed('used', space.used),
    fixed('referenced', r.referencedBytes),
    fixed('written', r.uniqueBytes),
    fixed('usedbydataset', r.ownBytes),
    fixed('usedbysnapshots', r.snapUsedBytes),
    fixed('usedbychildren', space.children),
    fixed('available', c.o.host.availableBytes()),
    fixed('origin', origin === undefined ? '-' : `${c.nameOf(origin.head)}@${origin.name}`),
    fixed('appliedtid', r.appliedTid),
    fixed('receive_resume_token', resumeTokenOf(c, text) ?? '-'),
    ...PROPERTY_NAMES.map((p) => c.property(node, p)),
  ];
}

/** The token a stopped resumable receive into head `text` left in its temporary dataset (dsl.ts). */
export function resumeTokenOf(c: Catalog, text: string): string | undefined {
  const node = c.head(text);
  return node.parent?.children.get(`${node.component}${RECV_SUFFIX}`)?.props.get(RESUME_TOKEN_KEY);
}

export function spaceOf(c: Catalog, node: HeadNode): { used: number; children: number } {
  let children = 0;
  for (const child of node.children.values()) children += spaceOf(c, child).used;
  return { used: node.record.ownBytes + node.record.snapUsedBytes + children, children };
}

/** Bytes only this snapshot holds: the next one's deadlist entries born after its predecessor. */
export async function snapshotUsed(c: Catalog, snap: SnapNode): Promise<number> {
  const next = c.snaps.get(snap.record.nextSnap)?.record ?? snap.head.record;
  let sum = 0;
  for await (const chunk of deadlistChunks(c.o.mos, next.deadlist)) {
    for (const bp of chunk) if (bp.birth > snap.record.prevSnapTxg) sum += sumBytes([bp]);
  }
  return sum;
}

/** Datasets, snapshots and bookmarks under `under` (default: the whole pool), by name. */
export async function list(c: Catalog, options: { under?: string; types?: readonly DatasetType[] } = {}): Promise<DatasetEntry[]> {
  const types = options.types ?? ['filesystem'];
  const top = options.under === undefined ? c.root : c.head(options.under);
  assert(top !== null);
  const out: DatasetEntry[] = [];
  const walk = async (node: HeadNode): Promise<void> => {
    const name = c.nameOf(node);
    const r = node.record;
    if (types.includes('filesystem')) {
      const origin = c.snaps.get(r.origin);
      out.push({
        name,
        type: 'filesystem',
        guid: r.guid,
        createTxg: r.createdTxg,
        creationMs: r.creationMs,
        usedBytes: spaceOf(c, node).used,
        referencedBytes: r.referencedBytes,
        ...(origin === undefined ? {} : { origin: `${c.nameOf(origin.head)}@${origin.name}` }),
      });
    }
    if (types.includes('snapshot')) {
      const snaps = [...node.snapshots.values()].sort((a, b) => a.record.createdTxg - b.record.createdTxg || a.obj - b.obj);
      for (const s of snaps) {
        out.push({
          name: `${name}@${s.name}`,
          type: 'snapshot',
          guid: s.record.guid,
          createTxg: s.record.createdTxg,
          creationMs: s.record.creationMs,
          usedBytes: await snapshotUsed(c, s),
          referencedBytes: s.record.referencedBytes,
        });
      }
    }
    if (types.includes('bookmark')) {
      for (const [mark, b] of [...node.bookmarks].sort(([x], [y]) => (x < y ? -1 : 1))) {
        out.push({ name: `${name}#${mark}`, type: 'bookmark', guid: b.guid, createTxg: b.txg, creationMs: b.creationMs });
      }
    }
    for (const child of [...node.children.keys()].sort()) {
      const c = node.children.get(child);
      if (c !== undefined) await walk(c);
    }
  };
  await walk(top);
  return out;
}

/**
 * With nothing dirty: every head's and snapshot's figures match a walk of its blocks, the
 * snapshot chains link both ways with rising txgs, clone counts match, and every deadlist
 * entry is a live block born no later than its owner's predecessor. `isLive` tells whether
 * the pool's walk reached a block.
 */
export async function checkInvariants(c: Catalog, isLive: (bp: BlockPointer) => boolean): Promise<void> {
  const bytesAfter = async (name: string, root: BlockPointer, t: number): Promise<number> =>
    sumBytes(await blocksBornAfter(c.o.store, name, root, t));
  const clones = new Map<ObjectId, number>();
  for (const node of c.heads.values()) {
    const name = c.nameOf(node);
    const r = node.record;
    if (r.origin !== 0) clones.set(r.origin, (clones.get(r.origin) ?? 0) + 1);
    assert((await bytesAfter(name, r.root, 0)) === r.referencedBytes, `${name}: referenced ${r.referencedBytes} != its blocks`);
    assert((await bytesAfter(name, r.root, r.prevSnapTxg)) === r.uniqueBytes, `${name}: unique ${r.uniqueBytes} != its new blocks`);
    assert((await bytesAfter(name, r.root, node.originTxg)) === r.ownBytes, `${name}: own ${r.ownBytes} != its blocks born after its origin`);
    let snapUsed = 0;
    const owners: { name: string; deadlist: ObjectId; prevTxg: Txg }[] = [{ name, deadlist: r.deadlist, prevTxg: r.prevSnapTxg }];
    let newer: DatasetRecord = r;
    for (let s = c.snaps.get(r.prevSnap); s !== undefined && s.head === node; s = c.snaps.get(s.record.prevSnap)) {
      const sr = s.record;
      const sname = `${name}@${s.name}`;
      assert(sr.createdTxg <= (newer === r ? Number.MAX_SAFE_INTEGER : newer.createdTxg), `${sname}: txgs rise along the chain`);
      assert(newer.prevSnapTxg === sr.createdTxg, `${sname}: its successor's prevSnapTxg is its txg`);
      assert((await bytesAfter(sname, sr.root, 0)) === sr.referencedBytes, `${sname}: referenced != its blocks`);
      owners.push({ name: sname, deadlist: sr.deadlist, prevTxg: sr.prevSnapTxg });
      newer = sr;
    }
    assert(owners.length - 1 === node.snapshots.size, `${name}: every snapshot is on the chain`);
    for (const o of owners) {
      let bytes = 0;
      for await (const chunk of deadlistChunks(c.o.mos, o.deadlist)) {
        for (const bp of chunk) {
          assert(bp.birth <= o.prevTxg, `${o.name}: deadlist entry born ${bp.birth} after ${o.prevTxg}`);
          assert(isLive(bp), `${o.name}: deadlist entry at birth ${bp.birth} is not a live block`);
          bytes += sumBytes([bp]);
          if (bp.birth > node.originTxg) snapUsed += sumBytes([bp]);
        }
      }
      assert(bytes === (await deadlistBytes(c.o.mos, o.deadlist)), `${o.name}: deadlist byte count`);
    }
    assert(snapUsed === r.snapUsedBytes, `${name}: usedbysnapshots ${r.snapUsedBytes} != deadlists ${snapUsed}`);
  }
  for (const s of c.snaps.values()) {
    assert(s.record.clones === (clones.get(s.obj) ?? 0), `snapshot ${s.name}: clone count`);
  }
}
