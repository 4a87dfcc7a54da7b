// The DSL's changes in syncing context, each run inside one sync task (dsl.ts checks first, so
// these only fail on I/O): creating a head, taking a snapshot, destroying a snapshot (the
// deadlist algorithm), destroying a head, rolling back. Each writes the MOS, frees what it frees,
// then updates the catalog in one synchronous step.
//
// Destroying snapshot S with neighbours P (older, or the origin) and N (newer, or the head):
// N's deadlist entries born after P were referenced by S alone — they are freed; the rest, and
// S's own deadlist (blocks P holds that S had already killed), become N's deadlist. The cost
// follows those two deadlists, never the size of the dataset.


import { Gate, assert } from '../lib/index.js';
import { DatasetKind, type DatasetRecord, encodeDatasetRecord } from './dataset-record.js';
import { appendDeadlist, clearDeadlist, createDeadlist, deadlistBytes, deadlistChunks, sumBytes } from './deadlist.js';
import * as dmu from './dmu.js';
import { ObjectType } from './dnode.js';
import { createKeyDirectory } from './keyed.js';
import { ObjectSet, ObjsetType } from './objset.js';
import { blocksBornAfter } from './traverse.js';
import { type BlockPointer, type Guid, type Txg, HOLE, newGuid, objectId, txg } from './types.js';
import { zapNumber } from './zap.js';
import { type Catalog, type HeadNode, type SnapNode } from './dsl-catalog.js';

export async function createHeadSync(
  c: Catalog,
  tx: dmu.Tx,
  parent: HeadNode | null,
  component: string,
  props: ReadonlyMap<string, string>,
  origin: SnapNode | null,
): Promise<HeadNode> {
  let record: DatasetRecord = {
    root: origin?.record.root ?? HOLE,
    kind: DatasetKind.head,
    createdTxg: tx.txg,
    guid: newGuid(c.o.random),
    creationMs: c.o.clock.wallMs(),
    parent: parent?.obj ?? objectId(0),
    prevSnap: origin?.obj ?? objectId(0),
    prevSnapTxg: origin?.record.createdTxg ?? txg(0),
    nextSnap: objectId(0),
    deadlist: await createDeadlist(c.o.mos, tx, c.o.checksumKind),
    children: objectId(0),
    snapshots: objectId(0),
    bookmarks: objectId(0),
    props: objectId(0),
    holds: objectId(0),
    origin: origin?.obj ?? objectId(0),
    clones: 0,
    referencedBytes: origin?.record.referencedBytes ?? 0,
    uniqueBytes: 0,
    snapUsedBytes: 0,
    appliedTid: origin?.record.appliedTid ?? 0n,
    intentLog: objectId(0),
    ownBytes: 0,
  };
  const obj = await dmu.createObject(c.o.mos, tx, {
    type: ObjectType.dataset,
    blockBytes: 512,
    checksumKind: c.o.checksumKind,
    bonus: encodeDatasetRecord(record),
  });
  for (const [k, v] of props) record = await c.changeZap(tx, obj, record, 'props', k, new TextEncoder().encode(v));
  const parentRecord = parent === null ? null : await c.changeZap(tx, parent.obj, parent.record, 'children', component, zapNumber(obj));
  let originRecord: DatasetRecord | null = null;
  if (origin !== null) {
    originRecord = { ...origin.record, clones: origin.record.clones + 1 };
    await c.writeRecord(tx, origin.obj, originRecord);
  }
  const node = c.newHead(obj, record, parent, component);
  for (const [k, v] of props) node.props.set(k, v);
  node.originTxg = origin?.record.createdTxg ?? txg(0);
  const name = parent === null ? c.o.poolName : `${c.nameOf(parent)}/${component}`;
  if (origin === null) {
    // A new head's object set starts in this txg; pool.ts syncs it after the tasks.
    node.os = ObjectSet.create(node.store, name, ObjsetType.dataset, c.o.checksumKind);
    await createKeyDirectory(node.os, tx, c.o.checksumKind);
  }
  if (origin !== null && originRecord !== null) origin.record = originRecord;
  if (parent !== null && parentRecord !== null) parent.record = parentRecord;
  c.heads.set(obj, node);
  parent?.children.set(component, node);
  return node;
}

export async function snapshotSync(c: Catalog, tx: dmu.Tx, node: HeadNode, name: string, g: Guid, creationMs?: number): Promise<void> {
  const h = node.record;
  const snapRecord: DatasetRecord = {
    ...h,
    kind: DatasetKind.snapshot,
    createdTxg: tx.txg,
    guid: g,
    creationMs: creationMs ?? c.o.clock.wallMs(),
    parent: node.obj,
    nextSnap: objectId(0),
    children: objectId(0),
    snapshots: objectId(0),
    bookmarks: objectId(0),
    props: objectId(0),
    holds: objectId(0),
    origin: objectId(0),
    clones: 0,
    uniqueBytes: 0,
    snapUsedBytes: 0,
    intentLog: objectId(0),
    ownBytes: 0,
  };
  const sobj = await dmu.createObject(c.o.mos, tx, {
    type: ObjectType.dataset,
    blockBytes: 512,
    checksumKind: c.o.checksumKind,
    bonus: encodeDatasetRecord(snapRecord),
  });
  const prev = c.snaps.get(h.prevSnap);
  const prevRecord = prev !== undefined && prev.head === node ? { ...prev.record, nextSnap: sobj } : null;
  if (prev !== undefined && prevRecord !== null) await c.writeRecord(tx, prev.obj, prevRecord);
  let headRecord: DatasetRecord = {
    ...h,
    prevSnap: sobj,
    prevSnapTxg: tx.txg,
    deadlist: await createDeadlist(c.o.mos, tx, c.o.checksumKind),
    uniqueBytes: 0,
  };
  await c.writeRecord(tx, node.obj, headRecord);
  headRecord = await c.changeZap(tx, node.obj, headRecord, 'snapshots', name, zapNumber(sobj));
  if (prev !== undefined && prevRecord !== null) prev.record = prevRecord;
  node.record = headRecord;
  const snap: SnapNode = { obj: sobj, record: snapRecord, name, head: node, holds: new Map(), gate: new Gate(), os: null };
  node.snapshots.set(name, snap);
  c.snaps.set(sobj, snap);
}

/** Destroys a snapshot whose checks passed: the deadlist algorithm described at the top. */
export async function destroySnapshotSync(c: Catalog, tx: dmu.Tx, snap: SnapNode): Promise<void> {
  const mos = c.o.mos;
  const head = snap.head;
  const next = snap.record.nextSnap === 0 ? null : c.snaps.get(snap.record.nextSnap);
  assert(next !== undefined, 'the next snapshot is in the catalog');
  const nextRecord = { ...(next?.record ?? head.record) };
  const prevTxg = snap.record.prevSnapTxg;
  // Every read comes before the first change.
  const keep: BlockPointer[] = [];
  const doomed: BlockPointer[] = [];
  for await (const chunk of deadlistChunks(mos, nextRecord.deadlist)) {
    for (const bp of chunk) (bp.birth > prevTxg ? doomed : keep).push(bp);
  }
  for await (const chunk of deadlistChunks(mos, snap.record.deadlist)) keep.push(...chunk);
  const freed = sumBytes(doomed);
  for (const bp of doomed) c.o.store.free(bp, tx.txg);
  await clearDeadlist(mos, tx, nextRecord.deadlist);
  await appendDeadlist(mos, tx, nextRecord.deadlist, keep);
  await dmu.freeObject(mos, tx, snap.record.deadlist);
  if (snap.record.holds !== 0) await dmu.freeObject(mos, tx, snap.record.holds);
  nextRecord.prevSnap = snap.record.prevSnap;
  nextRecord.prevSnapTxg = prevTxg;
  const prev = c.snaps.get(snap.record.prevSnap);
  const prevInChain = prev !== undefined && prev.head === head;
  const prevRecord = prevInChain ? { ...prev.record, nextSnap: snap.record.nextSnap } : null;
  if (prevRecord !== null) await c.writeRecord(tx, prev?.obj ?? objectId(0), prevRecord);
  let headRecord = next === null ? nextRecord : { ...head.record };
  headRecord.snapUsedBytes -= freed;
  if (next === null) {
    // The head now shares with P what P holds minus what the head killed since P.
    const shared = prev === undefined ? 0 : prev.record.referencedBytes - (await deadlistBytes(mos, headRecord.deadlist));
    headRecord.uniqueBytes = headRecord.referencedBytes - shared;
  } else {
    await c.writeRecord(tx, next.obj, nextRecord);
  }
  await c.writeRecord(tx, head.obj, headRecord);
  headRecord = await c.changeZap(tx, head.obj, headRecord, 'snapshots', snap.name, null);
  await dmu.freeObject(mos, tx, snap.obj);
  // The catalog changes in one step, after every write.
  if (prevRecord !== null && prev !== undefined) prev.record = prevRecord;
  if (next !== null && next !== undefined) next.record = nextRecord;
  head.record = headRecord;
  head.snapshots.delete(snap.name);
  c.snaps.delete(snap.obj);
  const os = snap.os;
  snap.os = null;
  await os?.quiesce();
}

/** What blocksBornAfter listed for a head's root and previous snapshot txg. */
export interface HeldBlocks {
  readonly root: BlockPointer;
  readonly prevSnapTxg: Txg;
  readonly blocks: readonly BlockPointer[];
}

/** Lists what a head holds alone (for destroyHeadSync), outside a txg. */
export async function listHeld(c: Catalog, node: HeadNode): Promise<HeldBlocks> {
  const { root, prevSnapTxg } = node.record;
  return { root, prevSnapTxg, blocks: await blocksBornAfter(c.o.store, c.nameOf(node), root, prevSnapTxg) };
}

/**
 * Destroys a head with no snapshots left: frees what only it references (`held`, listed before the
 * txg, when it is still the list of the head's root and previous snapshot txg; else listed here).
 */
export async function destroyHeadSync(c: Catalog, tx: dmu.Tx, node: HeadNode, held?: HeldBlocks): Promise<void> {
  assert(node.snapshots.size === 0 && node.children.size === 0 && node.parent !== null);
  assert(node.os === null || !node.os.hasDirty(tx.txg), 'a destroyed head has nothing dirty');
  const mos = c.o.mos;
  const r = node.record;
  const current = held !== undefined && held.root === r.root && held.prevSnapTxg === r.prevSnapTxg;
  for (const bp of current ? held.blocks : await blocksBornAfter(c.o.store, c.nameOf(node), r.root, r.prevSnapTxg)) c.o.store.free(bp, tx.txg);
  for (const obj of [r.deadlist, r.children, r.snapshots, r.bookmarks, r.props]) if (obj !== 0) await dmu.freeObject(mos, tx, obj);
  if (r.intentLog !== 0) {
    // A log that failed to open is opened again here (its table is all the destroy needs).
    const zil = node.zil === null ? null : await node.zil.catch(() => null);
    const log = zil?.log ?? (await c.o.host.openLog(r.intentLog)).log;
    await log.quiesce();
    await log.destroy(tx);
    c.o.host.closeLog(log);
  }
  const origin = c.snaps.get(r.origin);
  const originRecord = origin === undefined ? null : { ...origin.record, clones: origin.record.clones - 1 };
  if (origin !== undefined && originRecord !== null) await c.writeRecord(tx, origin.obj, originRecord);
  const parentRecord = await c.changeZap(tx, node.parent.obj, node.parent.record, 'children', node.component, null);
  await dmu.freeObject(mos, tx, node.obj);
  if (origin !== undefined && originRecord !== null) origin.record = originRecord;
  node.parent.record = parentRecord;
  node.parent.children.delete(node.component);
  c.heads.delete(node.obj);
  node.destroyed = true;
  const os = node.os;
  node.os = null;
  await os?.quiesce();
}

export async function rollbackSync(c: Catalog, tx: dmu.Tx, snap: SnapNode): Promise<void> {
  const node = snap.head;
  const r = node.record;
  assert(r.prevSnap === snap.obj && r.nextSnap === 0, 'rollback to the newest snapshot');
  assert(node.os === null || !node.os.hasDirty(tx.txg), 'a rolled back head has nothing dirty');
  // Every read comes before the first change.
  const doomed = await blocksBornAfter(c.o.store, c.nameOf(node), r.root, r.prevSnapTxg);
  let revived = 0;
  for await (const chunk of deadlistChunks(c.o.mos, r.deadlist)) {
    for (const bp of chunk) if (bp.birth > node.originTxg) revived += sumBytes([bp]);
  }
  // A clone is charged only for blocks born after its origin (a walk of just those blocks).
  const own =
    node.originTxg === 0 ? snap.record.referencedBytes : sumBytes(await blocksBornAfter(c.o.store, c.nameOf(node), snap.record.root, node.originTxg));
  for (const bp of doomed) c.o.store.free(bp, tx.txg);
  await clearDeadlist(c.o.mos, tx, r.deadlist);
  const headRecord: DatasetRecord = {
    ...r,
    root: snap.record.root,
    referencedBytes: snap.record.referencedBytes,
    uniqueBytes: 0,
    snapUsedBytes: r.snapUsedBytes - revived,
    ownBytes: own,
    appliedTid: snap.record.appliedTid,
  };
  await c.writeRecord(tx, node.obj, headRecord);
  const old = node.os;
  node.record = headRecord;
  node.os = null;
  node.pendingTid.clear();
  await old?.quiesce();
  await c.openHead(node);
}

/**
 * Swaps `clone` into `node` (a receive that ends well): the clone's origin is the head's newest
 * snapshot and the head has not changed since it, so the head takes the clone's tree as if the
 * clone's changes had been made on it — its root, its deadlist (the snapshot's blocks the clone
 * killed) and its space figures — and the clone goes without freeing a block. Reads the clone's
 * deadlist (as long as the change) before the first write.
 */
export async function swapCloneSync(c: Catalog, tx: dmu.Tx, node: HeadNode, clone: HeadNode): Promise<void> {
  const h = node.record;
  const k = clone.record;
  assert(k.origin === h.prevSnap && clone.snapshots.size === 0 && clone.children.size === 0 && clone.parent !== null, 'swap of a clone of the newest snapshot');
  assert(h.uniqueBytes === 0 && bpEqual(h.root, c.snaps.get(h.prevSnap)?.record.root), 'swap into a head unchanged since its snapshot');
  assert(node.os === null || !node.os.hasDirty(tx.txg), 'a swapped head has nothing dirty');
  assert(clone.os === null || !clone.os.hasDirty(tx.txg), 'a swapped clone has nothing dirty');
  // The snapshot's blocks the clone killed: the head now kills them (charged like HeadStore.free).
  let killed = 0;
  for await (const chunk of deadlistChunks(c.o.mos, k.deadlist)) {
    for (const bp of chunk) if (bp.birth > node.originTxg) killed += sumBytes([bp]);
  }
  const headRecord: DatasetRecord = {
    ...h,
    root: k.root,
    deadlist: k.deadlist,
    referencedBytes: k.referencedBytes,
    uniqueBytes: k.uniqueBytes,
    ownBytes: h.ownBytes - killed + k.ownBytes,
    snapUsedBytes: h.snapUsedBytes + killed,
    appliedTid: k.appliedTid,
  };
  await dmu.freeObject(c.o.mos, tx, h.deadlist);
  await c.writeRecord(tx, node.obj, headRecord);
  for (const obj of [k.children, k.snapshots, k.bookmarks, k.props]) if (obj !== 0) await dmu.freeObject(c.o.mos, tx, obj);
  assert(k.intentLog === 0, 'a receive clone has no intent log');
  const origin = c.snaps.get(k.origin);
  assert(origin !== undefined);
  const originRecord = { ...origin.record, clones: origin.record.clones - 1 };
  await c.writeRecord(tx, origin.obj, originRecord);
  const parentRecord = await c.changeZap(tx, clone.parent.obj, clone.parent.record, 'children', clone.component, null);
  await dmu.freeObject(c.o.mos, tx, clone.obj);
  origin.record = originRecord;
  clone.parent.record = parentRecord;
  clone.parent.children.delete(clone.component);
  c.heads.delete(clone.obj);
  clone.destroyed = true;
  const olds = [node.os, clone.os];
  clone.os = null;
  node.os = null;
  node.record = headRecord;
  node.pendingTid.clear();
  for (const os of olds) await os?.quiesce();
  await c.openHead(node);
}

/** Renames a head in syncing context (the receive of a full stream moves its dataset in place). */
export async function renameHeadSync(c: Catalog, tx: dmu.Tx, node: HeadNode, parent: HeadNode, component: string): Promise<void> {
  const old = node.parent;
  assert(old !== null);
  // The new entry goes in first: a rename within one parent then never empties its map.
  const parentRecord = await c.changeZap(tx, parent.obj, parent.record, 'children', component, zapNumber(node.obj));
  const oldRecord = await c.changeZap(tx, old.obj, old === parent ? parentRecord : old.record, 'children', node.component, null);
  const record = { ...node.record, parent: parent.obj };
  await c.writeRecord(tx, node.obj, record);
  parent.record = parentRecord;
  old.record = oldRecord;
  old.children.delete(node.component);
  parent.children.set(component, node);
  node.parent = parent;
  node.component = component;
  node.record = record;
}

function bpEqual(a: BlockPointer, b: BlockPointer | undefined): boolean {
  return b !== undefined && a.birth === b.birth && a.dvas.length === b.dvas.length && a.dvas.every((d, i) => d.vdev === b.dvas[i]?.vdev && d.offset === b.dvas[i]?.offset);
}
