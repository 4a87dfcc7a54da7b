// The dataset and snapshot layer (DSL): the tree of datasets `pool/a/b`, their snapshots,
// bookmarks, clones, holds and properties, and the space each uses.
//
// On disk every dataset and snapshot is a record in the MOS (dataset-record.ts); a head's record
// names ZAPs of its children, snapshots, bookmarks and properties, and its deadlist. In memory
// the DSL keeps a catalog of all of them, loaded at import and changed only by sync tasks, so
// names resolve without touching the MOS. Every change is a sync task: it checks first (coded
// errors, nothing changed), then writes, and lands in one txg with everything it touched.
//
// Snapshots follow ZFS: taking one is O(1) (the head's root pointer is copied and the head gets a
// fresh deadlist); a head kills blocks through its HeadStore (dsl-store.ts), which frees those
// born after its newest snapshot and puts older ones on its deadlist; destroying snapshot S with
// neighbours P (older) and N (newer, or the head) frees N's deadlist entries born after P — they
// were only ever in S — and hands S's deadlist to N. Rollback frees the head's blocks born after
// the snapshot and forgets its deadlist; a clone is a head whose first root is a snapshot's.
//
// Sync order within a txg (pool.ts): heads sync (syncHeads), sync tasks run, heads created by
// tasks sync, then the MOS.

import { Gate, type Clock, type Random, assert, mpError, readU64, readU64Number, writeU64, writeU64Number } from '../lib/index.js';
import type { BlockStore } from './block-store.js';
import { DatasetKind, type DatasetRecord, decodeDatasetRecord, encodeDatasetRecord } from './dataset-record.js';
import { appendDeadlist, clearDeadlist, createDeadlist, deadlistBytes, deadlistChunks, sumBytes } from './deadlist.js';
import * as dmu from './dmu.js';
import { ObjectType } from './dnode.js';
import { type DatasetName, formatName, parseName } from './dsl-names.js';
import { PROPERTY_DEFAULTS, PROPERTY_NAMES, type PropertyName, canonicalProperty, checksumOfProperty, parseRecordSize } from './dsl-props.js';
import { HeadStore } from './dsl-store.js';
import { createKeyDirectory } from './keyed.js';
import { ObjectSet, ObjsetType } from './objset.js';
import { blocksBornAfter } from './traverse.js';
import { type BlockPointer, type Guid, HOLE, type ObjectId, type Txg, guid, newGuid, objectId, txg } from './types.js';
import { Zap, zapNumber } from './zap.js';

export interface DslHost {
  /** Runs `run` in syncing context of the next txg; resolves once it is durable. */
  syncTask(run: (tx: dmu.Tx) => Promise<void>): Promise<void>;
  /** Syncs everything written so far. */
  sync(): Promise<Txg>;
  /** Bytes new data may still take. */
  availableBytes(): number;
}

export interface DslOptions {
  readonly poolName: string;
  readonly mos: ObjectSet;
  readonly store: BlockStore;
  readonly clock: Clock;
  readonly random: Random;
  readonly checksumKind: number;
  readonly host: DslHost;
}

/** What data operations see of a dataset or snapshot (see keyed.ts). */
export interface DatasetView {
  readonly name: string;
  readonly os: ObjectSet;
  /** False for snapshots and readonly=on heads: data writes fail with EROFS. */
  readonly writable: boolean;
  /** Largest block and checksum of new objects (the recordsize and checksum properties). */
  readonly recordBytes: number;
  readonly checksumKind: number;
  readonly sync: string;
  /** Records the cluster's applied transaction id in the same txg as `tx`'s data (heads only). */
  setAppliedTid(tx: dmu.Tx, tid: bigint): void;
  /** The applied transaction id as of the newest change. */
  appliedTid(): bigint;
}

export interface Bookmark {
  readonly guid: Guid;
  readonly txg: Txg;
  readonly creationMs: number;
}

interface HeadNode {
  readonly obj: ObjectId;
  record: DatasetRecord;
  component: string;
  parent: HeadNode | null;
  readonly children: Map<string, HeadNode>;
  readonly snapshots: Map<string, SnapNode>;
  readonly bookmarks: Map<string, Bookmark>;
  readonly props: Map<string, string>;
  readonly gate: Gate;
  readonly store: HeadStore;
  os: ObjectSet | null;
  opening: Promise<ObjectSet> | null;
  readonly pendingTid: Map<Txg, bigint>;
  originTxg: Txg;
  destroyed: boolean;
}

interface SnapNode {
  readonly obj: ObjectId;
  record: DatasetRecord;
  name: string;
  readonly head: HeadNode;
  readonly holds: Map<string, number>;
  os: ObjectSet | null;
}

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

export interface PropertyValue {
  readonly property: string;
  readonly value: string;
  /** 'local', 'default', 'inherited from <name>' or '-' for read-only figures. */
  readonly source: string;
}

const BOOKMARK_VALUE_BYTES = 24;
const CATALOG_ZAP_NODE_BYTES = 8192;
const HOLD_TAG_BYTES_MAX = 255;

export class Dsl {
  private readonly o: DslOptions;
  private readonly heads = new Map<ObjectId, HeadNode>();
  private readonly snaps = new Map<ObjectId, SnapNode>();
  private root: HeadNode | null = null;

  constructor(options: DslOptions) {
    this.o = options;
  }

  // ---- loading and the root dataset ----

  /** Loads the catalog from the MOS, starting at the root dataset's record. */
  async load(rootObj: ObjectId): Promise<void> {
    this.root = await this.loadHead(rootObj, null, this.o.poolName);
    await this.openHead(this.root);
  }

  private async loadHead(obj: ObjectId, parent: HeadNode | null, component: string): Promise<HeadNode> {
    const record = await this.readRecord(obj);
    if (record.kind !== DatasetKind.head) throw mpError('EPROTO', `MOS object ${obj} is not a dataset head`, { object: obj });
    const node = this.newHead(obj, record, parent, component);
    for (const [k, v] of await this.zapEntries(record.props)) node.props.set(k, new TextDecoder().decode(v));
    for (const [k, v] of await this.zapEntries(record.bookmarks)) node.bookmarks.set(k, decodeBookmark(v));
    for (const [k, v] of await this.zapEntries(record.snapshots)) {
      const sobj = objectId(readU64Number(v, 0));
      const srec = await this.readRecord(sobj);
      const snap: SnapNode = { obj: sobj, record: srec, name: k, head: node, holds: new Map(), os: null };
      if (srec.holds !== 0) for (const [tag, at] of await this.zapEntries(srec.holds)) snap.holds.set(tag, readU64Number(at, 0));
      node.snapshots.set(k, snap);
      this.snaps.set(sobj, snap);
    }
    this.heads.set(obj, node);
    for (const [k, v] of await this.zapEntries(record.children)) {
      node.children.set(k, await this.loadHead(objectId(readU64Number(v, 0)), node, k));
    }
    return node;
  }

  /** Origins resolve once every snapshot is loaded (a clone may sort before its origin). */
  private resolveOrigins(): void {
    for (const h of this.heads.values()) h.originTxg = this.originTxgOf(h.record);
  }

  private originTxgOf(r: DatasetRecord): Txg {
    if (r.origin === 0) return txg(0);
    const o = this.snaps.get(r.origin);
    if (o === undefined) throw mpError('EPROTO', `dataset origin ${r.origin} is not a snapshot`, { origin: r.origin });
    return o.record.createdTxg;
  }

  /** Creates the root dataset (pool creation); returns its record's object number. */
  async createRoot(tx: dmu.Tx): Promise<ObjectId> {
    const node = await this.createHeadSync(tx, null, this.o.poolName, new Map(), null);
    this.root = node;
    return node.obj;
  }

  private newHead(obj: ObjectId, record: DatasetRecord, parent: HeadNode | null, component: string): HeadNode {
    const node: HeadNode = {
      obj,
      record,
      component,
      parent,
      children: new Map(),
      snapshots: new Map(),
      bookmarks: new Map(),
      props: new Map(),
      gate: new Gate(),
      store: undefined as unknown as HeadStore,
      os: null,
      opening: null,
      pendingTid: new Map(),
      originTxg: txg(0),
      destroyed: false,
    };
    (node as { store: HeadStore }).store = new HeadStore(this.o.store, node);
    return node;
  }

  private async openHead(node: HeadNode): Promise<ObjectSet> {
    if (node.os !== null) return node.os;
    if (node.opening === null) {
      this.resolveOrigins();
      node.opening = ObjectSet.open(node.store, this.nameOf(node), node.record.root).then((os) => {
        node.os = os;
        node.opening = null;
        return os;
      });
    }
    return node.opening;
  }

  // ---- syncing context: heads ----

  /** Syncs every head changed in txg `t` and records its new root, space and applied TID. */
  async syncHeads(tx: dmu.Tx): Promise<void> {
    for (const node of this.heads.values()) {
      const os = node.os;
      if (os === null) continue;
      const tid = node.pendingTid.get(tx.txg);
      if (!os.hasDirty(tx.txg) && tid === undefined && node.store.dead.length === 0) continue;
      if (os.hasDirty(tx.txg)) node.record.root = await os.syncTxg(tx.txg);
      if (tid !== undefined) {
        node.record.appliedTid = tid;
        node.pendingTid.delete(tx.txg);
      }
      const dead = node.store.dead;
      node.store.dead = [];
      await appendDeadlist(this.o.mos, tx, node.record.deadlist, dead);
      await this.writeRecord(tx, node.obj, node.record);
    }
  }

  /** Dirty bytes of every head (of txg `t` only when given). */
  dirtyBytes(t?: Txg): number {
    let sum = 0;
    for (const node of this.heads.values()) if (node.os !== null) sum += node.os.dirtyBytes(t);
    return sum;
  }

  /** Waits for reads in flight on every open object set (before the disks close). */
  async quiesce(): Promise<void> {
    const sets: ObjectSet[] = [];
    for (const h of this.heads.values()) if (h.os !== null) sets.push(h.os);
    for (const s of this.snaps.values()) if (s.os !== null) sets.push(s.os);
    await Promise.all(sets.map((os) => os.quiesce()));
  }

  /** The root dataset's object set. */
  rootObjset(): ObjectSet {
    assert(this.root !== null && this.root.os !== null, 'the root dataset is open');
    return this.root.os;
  }

  // ---- names ----

  private nameOf(node: HeadNode): string {
    return node.parent === null ? this.o.poolName : `${this.nameOf(node.parent)}/${node.component}`;
  }

  private checkPool(n: DatasetName, text: string): void {
    if (n.pool !== this.o.poolName) throw mpError('ENOENT', `no pool '${n.pool}' here (this is ${this.o.poolName})`, { name: text });
  }

  private findHead(n: DatasetName): HeadNode | undefined {
    let node = this.root ?? undefined;
    for (const part of n.path) node = node?.children.get(part);
    return node;
  }

  private head(text: string): HeadNode {
    const n = parseName(text, ['dataset']);
    this.checkPool(n, text);
    const node = this.findHead(n);
    if (node === undefined) throw mpError('ENOENT', `dataset ${text} does not exist`, { name: text });
    return node;
  }

  private snapNamed(text: string): SnapNode {
    const n = parseName(text, ['snapshot']);
    this.checkPool(n, text);
    const node = this.findHead(n);
    const snap = n.snapshot === undefined ? undefined : node?.snapshots.get(n.snapshot);
    if (snap === undefined) throw mpError('ENOENT', `snapshot ${text} does not exist`, { name: text });
    return snap;
  }

  /** The parent of a dataset to be created: ENOENT when missing, EEXIST when the name is taken. */
  private parentFor(text: string): { parent: HeadNode; component: string } {
    const n = parseName(text, ['dataset']);
    this.checkPool(n, text);
    const component = n.path.at(-1);
    if (component === undefined) throw mpError('EEXIST', `dataset ${text} exists (the pool's root dataset)`, { name: text });
    const parent = this.findHead({ pool: n.pool, path: n.path.slice(0, -1) });
    if (parent === undefined) throw mpError('ENOENT', `parent of ${text} does not exist`, { name: text });
    if (parent.children.has(component)) throw mpError('EEXIST', `dataset ${text} exists`, { name: text });
    return { parent, component };
  }

  // ---- data access ----

  /**
   * Runs `fn` with a view of a dataset (`pool/ds`) or snapshot (`pool/ds@snap`). Heads are held
   * shared: rollback and destroy wait for `fn` to finish. `write` asks for a writable view (EROFS
   * for snapshots and readonly heads).
   */
  async withView<T>(text: string, mode: 'read' | 'write', fn: (view: DatasetView) => Promise<T>): Promise<T> {
    const n = parseName(text, ['dataset', 'snapshot']);
    if (n.snapshot !== undefined) {
      const snap = this.snapNamed(text);
      if (mode === 'write') throw mpError('EROFS', `snapshot ${text} is read-only`, { name: text });
      return snap.head.gate.withShared(async () => {
        if (!this.snaps.has(snap.obj)) throw mpError('ENOENT', `snapshot ${text} does not exist`, { name: text });
        snap.os ??= await ObjectSet.open(this.o.store, text, snap.record.root);
        return fn(this.viewOf(snap.head, snap.os, text, false, () => snap.record.appliedTid));
      });
    }
    const node = this.head(text);
    return node.gate.withShared(async () => {
      if (node.destroyed) throw mpError('ENOENT', `dataset ${text} does not exist`, { name: text });
      const readonly = this.property(node, 'readonly').value === 'on';
      if (mode === 'write' && readonly) throw mpError('EROFS', `dataset ${text} is read-only (readonly=on)`, { name: text });
      const os = await this.openHead(node);
      const tid = (): bigint => {
        let newest = node.record.appliedTid;
        let newestTxg = -1;
        for (const [t, v] of node.pendingTid) if (t > newestTxg) [newestTxg, newest] = [t, v];
        return newest;
      };
      return fn(this.viewOf(node, os, text, !readonly, tid));
    });
  }

  private viewOf(node: HeadNode, os: ObjectSet, name: string, writable: boolean, tid: () => bigint): DatasetView {
    return {
      name,
      os,
      writable,
      recordBytes: parseRecordSize(this.property(node, 'recordsize').value),
      checksumKind: checksumOfProperty(this.property(node, 'checksum').value),
      sync: this.property(node, 'sync').value,
      setAppliedTid: (tx, tid) => {
        if (!writable) throw mpError('EROFS', `${name} is read-only`, { name });
        node.pendingTid.set(tx.txg, tid);
      },
      appliedTid: tid,
    };
  }

  // ---- datasets ----

  async create(text: string, props: ReadonlyMap<string, string> = new Map()): Promise<void> {
    const canonical = canonicalProps(props);
    this.parentFor(text);
    await this.o.host.syncTask(async (tx) => {
      const { parent, component } = this.parentFor(text);
      await this.createHeadSync(tx, parent, component, canonical, null);
    });
  }

  async clone(snapText: string, text: string, props: ReadonlyMap<string, string> = new Map()): Promise<void> {
    const canonical = canonicalProps(props);
    this.snapNamed(snapText);
    this.parentFor(text);
    await this.o.host.syncTask(async (tx) => {
      const origin = this.snapNamed(snapText);
      const { parent, component } = this.parentFor(text);
      await this.createHeadSync(tx, parent, component, canonical, origin);
    });
  }

  private async createHeadSync(
    tx: dmu.Tx,
    parent: HeadNode | null,
    component: string,
    props: ReadonlyMap<string, string>,
    origin: SnapNode | null,
  ): Promise<HeadNode> {
    const propsZap = await this.newZap(tx);
    const zap = await this.openZap(tx, propsZap);
    for (const [k, v] of props) await zap.set(k, new TextEncoder().encode(v));
    const record: DatasetRecord = {
      root: origin?.record.root ?? HOLE,
      kind: DatasetKind.head,
      createdTxg: tx.txg,
      guid: newGuid(this.o.random),
      creationMs: this.o.clock.wallMs(),
      parent: parent?.obj ?? objectId(0),
      prevSnap: origin?.obj ?? objectId(0),
      prevSnapTxg: origin?.record.createdTxg ?? txg(0),
      nextSnap: objectId(0),
      deadlist: await createDeadlist(this.o.mos, tx, this.o.checksumKind),
      children: await this.newZap(tx),
      snapshots: await this.newZap(tx),
      bookmarks: await this.newZap(tx),
      props: propsZap,
      holds: objectId(0),
      origin: origin?.obj ?? objectId(0),
      clones: 0,
      referencedBytes: origin?.record.referencedBytes ?? 0,
      uniqueBytes: 0,
      snapUsedBytes: 0,
      appliedTid: origin?.record.appliedTid ?? 0n,
    };
    const obj = await dmu.createObject(this.o.mos, tx, {
      type: ObjectType.dataset,
      blockBytes: 512,
      checksumKind: this.o.checksumKind,
      bonus: encodeDatasetRecord(record),
    });
    if (parent !== null) await (await this.openZap(tx, parent.record.children)).set(component, zapNumber(obj));
    let originRecord: DatasetRecord | null = null;
    if (origin !== null) {
      originRecord = { ...origin.record, clones: origin.record.clones + 1 };
      await this.writeRecord(tx, origin.obj, originRecord);
    }
    const node = this.newHead(obj, record, parent, component);
    for (const [k, v] of props) node.props.set(k, v);
    node.originTxg = origin?.record.createdTxg ?? txg(0);
    const name = parent === null ? this.o.poolName : `${this.nameOf(parent)}/${component}`;
    if (origin === null) {
      // A new head's object set starts in this txg; pool.ts syncs it after the tasks.
      node.os = ObjectSet.create(node.store, name, ObjsetType.dataset, this.o.checksumKind);
      await createKeyDirectory(node.os, tx, this.o.checksumKind);
    }
    if (origin !== null && originRecord !== null) origin.record = originRecord;
    this.heads.set(obj, node);
    parent?.children.set(component, node);
    return node;
  }

  /**
   * Destroys a dataset (with `recursive`, its children and snapshots first), a snapshot, or a
   * bookmark. EBUSY for a dataset with children or snapshots (without `recursive`), a held
   * snapshot or one with clones.
   */
  async destroy(text: string, options: { recursive?: boolean } = {}): Promise<void> {
    const n = parseName(text, ['dataset', 'snapshot', 'bookmark']);
    if (n.bookmark !== undefined) {
      const mark = n.bookmark;
      const headText = formatName({ pool: n.pool, path: n.path });
      const missing = (node: HeadNode): void => {
        if (!node.bookmarks.has(mark)) throw mpError('ENOENT', `bookmark ${text} does not exist`, { name: text });
      };
      missing(this.head(headText));
      await this.o.host.syncTask(async (tx) => {
        const node = this.head(headText);
        missing(node);
        await (await this.openZap(tx, node.record.bookmarks)).remove(mark);
        node.bookmarks.delete(mark);
      });
      return;
    }
    if (n.snapshot !== undefined) {
      this.checkSnapshotDestroy(this.snapNamed(text));
      await this.o.host.syncTask(async (tx) => {
        const snap = this.snapNamed(text);
        this.checkSnapshotDestroy(snap);
        await this.destroySnapshotSync(tx, snap);
      });
      return;
    }
    const top = this.head(text);
    const doomed = this.checkHeadDestroy(top, options.recursive === true);
    await this.withExclusive(doomed, async () => {
      await this.o.host.sync();
      await this.o.host.syncTask(async (tx) => {
        const again = this.checkHeadDestroy(this.head(text), options.recursive === true);
        for (const node of again) {
          const newestFirst = [...node.snapshots.values()].sort((a, b) => b.record.createdTxg - a.record.createdTxg || b.obj - a.obj);
          for (const snap of newestFirst) await this.destroySnapshotSync(tx, snap);
          await this.destroyHeadSync(tx, node);
        }
      });
    });
  }

  private async withExclusive<T>(nodes: readonly HeadNode[], fn: () => Promise<T>): Promise<T> {
    const [first, ...rest] = nodes;
    if (first === undefined) return fn();
    return first.gate.withExclusive(() => this.withExclusive(rest, fn));
  }

  /** The heads a destroy removes, children before parents; throws when it may not. */
  private checkHeadDestroy(top: HeadNode, recursive: boolean): HeadNode[] {
    const name = this.nameOf(top);
    if (top.parent === null) throw mpError('EBUSY', `the pool's root dataset ${name} cannot be destroyed`, { name });
    if (!recursive && top.children.size > 0) throw mpError('EBUSY', `dataset ${name} has children (use -r)`, { name });
    if (!recursive && top.snapshots.size > 0) throw mpError('EBUSY', `dataset ${name} has snapshots (use -r)`, { name });
    const order: HeadNode[] = [];
    const walk = (node: HeadNode): void => {
      for (const child of node.children.values()) walk(child);
      order.push(node);
    };
    walk(top);
    for (const node of order) for (const snap of node.snapshots.values()) this.checkSnapshotDestroy(snap);
    return order;
  }

  private checkSnapshotDestroy(snap: SnapNode): void {
    const name = `${this.nameOf(snap.head)}@${snap.name}`;
    if (snap.holds.size > 0) {
      throw mpError('EBUSY', `snapshot ${name} is held (${[...snap.holds.keys()].join(', ')})`, { name, holds: [...snap.holds.keys()] });
    }
    if (snap.record.clones > 0) throw mpError('EBUSY', `snapshot ${name} has dependent clones`, { name, clones: snap.record.clones });
  }

  /** Destroys a snapshot whose checks passed: the deadlist algorithm described at the top. */
  private async destroySnapshotSync(tx: dmu.Tx, snap: SnapNode): Promise<void> {
    const mos = this.o.mos;
    const head = snap.head;
    const next = snap.record.nextSnap === 0 ? null : this.snaps.get(snap.record.nextSnap);
    assert(next !== undefined, 'the next snapshot is in the catalog');
    const nextRecord = { ...(next?.record ?? head.record) };
    const prevTxg = snap.record.prevSnapTxg;
    const keep: BlockPointer[] = [];
    let freed = 0;
    for await (const chunk of deadlistChunks(mos, nextRecord.deadlist)) {
      for (const bp of chunk) {
        if (bp.birth > prevTxg) {
          freed += sumBytes([bp]);
          this.o.store.free(bp, tx.txg);
        } else {
          keep.push(bp);
        }
      }
    }
    for await (const chunk of deadlistChunks(mos, snap.record.deadlist)) keep.push(...chunk);
    await clearDeadlist(mos, tx, nextRecord.deadlist);
    await appendDeadlist(mos, tx, nextRecord.deadlist, keep);
    await dmu.freeObject(mos, tx, snap.record.deadlist);
    if (snap.record.holds !== 0) await dmu.freeObject(mos, tx, snap.record.holds);
    nextRecord.prevSnap = snap.record.prevSnap;
    nextRecord.prevSnapTxg = prevTxg;
    const prev = this.snaps.get(snap.record.prevSnap);
    const prevInChain = prev !== undefined && prev.head === head;
    const prevRecord = prevInChain ? { ...prev.record, nextSnap: snap.record.nextSnap } : null;
    if (prevRecord !== null) await this.writeRecord(tx, prev?.obj ?? objectId(0), prevRecord);
    const headRecord = next === null ? nextRecord : { ...head.record };
    headRecord.snapUsedBytes -= freed;
    if (next === null) {
      // The head now shares with P what P holds minus what the head killed since P.
      const shared = prev === undefined ? 0 : prev.record.referencedBytes - (await deadlistBytes(mos, headRecord.deadlist));
      headRecord.uniqueBytes = headRecord.referencedBytes - shared;
    } else {
      await this.writeRecord(tx, next.obj, nextRecord);
    }
    await this.writeRecord(tx, head.obj, headRecord);
    await (await this.openZap(tx, head.record.snapshots)).remove(snap.name);
    await dmu.freeObject(mos, tx, snap.obj);
    // The catalog changes in one step, after every write.
    if (prevRecord !== null && prev !== undefined) prev.record = prevRecord;
    if (next !== null && next !== undefined) next.record = nextRecord;
    head.record = headRecord;
    head.snapshots.delete(snap.name);
    this.snaps.delete(snap.obj);
    const os = snap.os;
    snap.os = null;
    await os?.quiesce();
  }

  /** Destroys a head with no snapshots left: frees what only it references. */
  private async destroyHeadSync(tx: dmu.Tx, node: HeadNode): Promise<void> {
    assert(node.snapshots.size === 0 && node.children.size === 0 && node.parent !== null);
    assert(node.os === null || !node.os.hasDirty(tx.txg), 'a destroyed head has nothing dirty');
    const mos = this.o.mos;
    const r = node.record;
    for (const bp of await blocksBornAfter(this.o.store, this.nameOf(node), r.root, r.prevSnapTxg)) this.o.store.free(bp, tx.txg);
    for (const obj of [r.deadlist, r.children, r.snapshots, r.bookmarks, r.props]) await dmu.freeObject(mos, tx, obj);
    const origin = this.snaps.get(r.origin);
    const originRecord = origin === undefined ? null : { ...origin.record, clones: origin.record.clones - 1 };
    if (origin !== undefined && originRecord !== null) await this.writeRecord(tx, origin.obj, originRecord);
    await (await this.openZap(tx, node.parent.record.children)).remove(node.component);
    await dmu.freeObject(mos, tx, node.obj);
    if (origin !== undefined && originRecord !== null) origin.record = originRecord;
    node.parent.children.delete(node.component);
    this.heads.delete(node.obj);
    node.destroyed = true;
    const os = node.os;
    node.os = null;
    await os?.quiesce();
  }

  // ---- snapshots ----

  /** Takes a snapshot (with the caller's guid when given, for the cluster and receive). */
  async snapshot(text: string, options: { guid?: bigint } = {}): Promise<void> {
    const n = parseName(text, ['snapshot']);
    const headText = formatName({ pool: n.pool, path: n.path });
    const snapName = n.snapshot ?? '';
    const given = options.guid === undefined ? undefined : checkGuid(options.guid);
    const check = (): HeadNode => {
      const node = this.head(headText);
      if (node.snapshots.has(snapName)) throw mpError('EEXIST', `snapshot ${text} exists`, { name: text });
      return node;
    };
    check();
    await this.o.host.syncTask(async (tx) => {
      const node = check();
      await this.snapshotSync(tx, node, snapName, given ?? newGuid(this.o.random));
    });
  }

  private async snapshotSync(tx: dmu.Tx, node: HeadNode, name: string, g: Guid): Promise<void> {
    const h = node.record;
    const snapRecord: DatasetRecord = {
      ...h,
      kind: DatasetKind.snapshot,
      createdTxg: tx.txg,
      guid: g,
      creationMs: this.o.clock.wallMs(),
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
    };
    const sobj = await dmu.createObject(this.o.mos, tx, {
      type: ObjectType.dataset,
      blockBytes: 512,
      checksumKind: this.o.checksumKind,
      bonus: encodeDatasetRecord(snapRecord),
    });
    const prev = this.snaps.get(h.prevSnap);
    const prevRecord = prev !== undefined && prev.head === node ? { ...prev.record, nextSnap: sobj } : null;
    if (prev !== undefined && prevRecord !== null) await this.writeRecord(tx, prev.obj, prevRecord);
    const headRecord: DatasetRecord = {
      ...h,
      prevSnap: sobj,
      prevSnapTxg: tx.txg,
      deadlist: await createDeadlist(this.o.mos, tx, this.o.checksumKind),
      uniqueBytes: 0,
    };
    await this.writeRecord(tx, node.obj, headRecord);
    await (await this.openZap(tx, h.snapshots)).set(name, zapNumber(sobj));
    if (prev !== undefined && prevRecord !== null) prev.record = prevRecord;
    node.record = headRecord;
    const snap: SnapNode = { obj: sobj, record: snapRecord, name, head: node, holds: new Map(), os: null };
    node.snapshots.set(name, snap);
    this.snaps.set(sobj, snap);
  }

  /**
   * Makes `pool/ds@snap` the head's state again. Newer snapshots are destroyed with `recursive`
   * (EEXIST without it); a held one or one with clones refuses (EBUSY) before anything changes.
   */
  async rollback(text: string, options: { recursive?: boolean } = {}): Promise<void> {
    const target = this.snapNamed(text);
    const newer = (snap: SnapNode): SnapNode[] => {
      const out: SnapNode[] = [];
      for (let s = this.snaps.get(snap.record.nextSnap); s !== undefined; s = this.snaps.get(s.record.nextSnap)) out.push(s);
      return out.reverse();
    };
    const check = (snap: SnapNode): SnapNode[] => {
      const later = newer(snap);
      if (later.length > 0 && options.recursive !== true) {
        throw mpError('EEXIST', `${text} is not the newest snapshot: ${later.map((s) => s.name).join(', ')} would be destroyed (use -r)`, {
          name: text,
        });
      }
      for (const s of later) this.checkSnapshotDestroy(s);
      return later;
    };
    check(target);
    await target.head.gate.withExclusive(async () => {
      await this.o.host.sync();
      await this.o.host.syncTask(async (tx) => {
        const snap = this.snapNamed(text);
        for (const s of check(snap)) await this.destroySnapshotSync(tx, s);
        await this.rollbackSync(tx, snap);
      });
    });
  }

  private async rollbackSync(tx: dmu.Tx, snap: SnapNode): Promise<void> {
    const node = snap.head;
    const r = node.record;
    assert(r.prevSnap === snap.obj && r.nextSnap === 0, 'rollback to the newest snapshot');
    assert(node.os === null || !node.os.hasDirty(tx.txg), 'a rolled back head has nothing dirty');
    for (const bp of await blocksBornAfter(this.o.store, this.nameOf(node), r.root, r.prevSnapTxg)) this.o.store.free(bp, tx.txg);
    let revived = 0;
    for await (const chunk of deadlistChunks(this.o.mos, r.deadlist)) {
      for (const bp of chunk) if (bp.birth > node.originTxg) revived += sumBytes([bp]);
    }
    await clearDeadlist(this.o.mos, tx, r.deadlist);
    const headRecord: DatasetRecord = {
      ...r,
      root: snap.record.root,
      referencedBytes: snap.record.referencedBytes,
      uniqueBytes: 0,
      snapUsedBytes: r.snapUsedBytes - revived,
      appliedTid: snap.record.appliedTid,
    };
    await this.writeRecord(tx, node.obj, headRecord);
    const old = node.os;
    node.record = headRecord;
    node.os = null;
    node.pendingTid.clear();
    await old?.quiesce();
    await this.openHead(node);
  }

  async bookmark(snapText: string, markText: string): Promise<void> {
    const m = parseName(markText, ['bookmark']);
    const s = parseName(snapText, ['snapshot']);
    if (formatName({ pool: m.pool, path: m.path }) !== formatName({ pool: s.pool, path: s.path })) {
      throw mpError('EINVAL', `a bookmark belongs to the dataset of its snapshot: ${markText} vs ${snapText}`, { name: markText });
    }
    const mark = m.bookmark ?? '';
    const check = (): SnapNode => {
      const snap = this.snapNamed(snapText);
      if (snap.head.bookmarks.has(mark)) throw mpError('EEXIST', `bookmark ${markText} exists`, { name: markText });
      return snap;
    };
    check();
    await this.o.host.syncTask(async (tx) => {
      const snap = check();
      const value: Bookmark = { guid: snap.record.guid, txg: snap.record.createdTxg, creationMs: snap.record.creationMs };
      await (await this.openZap(tx, snap.head.record.bookmarks)).set(mark, encodeBookmark(value));
      snap.head.bookmarks.set(mark, value);
    });
  }

  /** A bookmark by name (`pool/ds#mark`). */
  bookmarkOf(text: string): Bookmark {
    const n = parseName(text, ['bookmark']);
    const mark = this.head(formatName({ pool: n.pool, path: n.path })).bookmarks.get(n.bookmark ?? '');
    if (mark === undefined) throw mpError('ENOENT', `bookmark ${text} does not exist`, { name: text });
    return mark;
  }

  async hold(tag: string, text: string): Promise<void> {
    checkTag(tag);
    const check = (): SnapNode => {
      const snap = this.snapNamed(text);
      if (snap.holds.has(tag)) throw mpError('EEXIST', `snapshot ${text} already has hold '${tag}'`, { name: text, tag });
      return snap;
    };
    check();
    await this.o.host.syncTask(async (tx) => {
      const snap = check();
      const at = this.o.clock.wallMs();
      let record = snap.record;
      if (record.holds === 0) {
        record = { ...record, holds: await this.newZap(tx) };
        await this.writeRecord(tx, snap.obj, record);
      }
      const value = new Uint8Array(8);
      writeU64Number(value, 0, at);
      await (await this.openZap(tx, record.holds)).set(tag, value);
      snap.record = record;
      snap.holds.set(tag, at);
    });
  }

  async release(tag: string, text: string): Promise<void> {
    checkTag(tag);
    const check = (): SnapNode => {
      const snap = this.snapNamed(text);
      if (!snap.holds.has(tag)) throw mpError('ENOENT', `snapshot ${text} has no hold '${tag}'`, { name: text, tag });
      return snap;
    };
    check();
    await this.o.host.syncTask(async (tx) => {
      const snap = check();
      let record = snap.record;
      if (snap.holds.size === 1) {
        await dmu.freeObject(this.o.mos, tx, record.holds);
        record = { ...record, holds: objectId(0) };
        await this.writeRecord(tx, snap.obj, record);
      } else {
        await (await this.openZap(tx, record.holds)).remove(tag);
      }
      snap.record = record;
      snap.holds.delete(tag);
    });
  }

  /** Holds of a snapshot: tag → time (ms). */
  holds(text: string): Map<string, number> {
    return new Map(this.snapNamed(text).holds);
  }

  /** Renames a dataset (it may move under another parent) or a snapshot within its dataset. */
  async rename(from: string, to: string): Promise<void> {
    const a = parseName(from, ['dataset', 'snapshot']);
    const b = parseName(to, ['dataset', 'snapshot']);
    if ((a.snapshot === undefined) !== (b.snapshot === undefined)) {
      throw mpError('EINVAL', `cannot rename ${from} to ${to}: both must be datasets or both snapshots`, { from, to });
    }
    if (a.snapshot !== undefined && b.snapshot !== undefined) {
      const snapTo = b.snapshot;
      if (formatName({ pool: a.pool, path: a.path }) !== formatName({ pool: b.pool, path: b.path })) {
        throw mpError('EINVAL', `a snapshot is renamed within its dataset: ${from} to ${to}`, { from, to });
      }
      const check = (): SnapNode => {
        const snap = this.snapNamed(from);
        if (snap.head.snapshots.has(snapTo)) throw mpError('EEXIST', `snapshot ${to} exists`, { name: to });
        return snap;
      };
      check();
      await this.o.host.syncTask(async (tx) => {
        const snap = check();
        const zap = await this.openZap(tx, snap.head.record.snapshots);
        await zap.remove(snap.name);
        await zap.set(snapTo, zapNumber(snap.obj));
        snap.head.snapshots.delete(snap.name);
        snap.name = snapTo;
        snap.head.snapshots.set(snapTo, snap);
      });
      return;
    }
    const check = (): { node: HeadNode; parent: HeadNode; component: string } => {
      const node = this.head(from);
      if (node.parent === null) throw mpError('EINVAL', `the pool's root dataset cannot be renamed`, { name: from });
      const { parent, component } = this.parentFor(to);
      for (let p: HeadNode | null = parent; p !== null; p = p.parent) {
        if (p === node) throw mpError('EINVAL', `cannot move ${from} under itself (${to})`, { from, to });
      }
      return { node, parent, component };
    };
    check();
    await this.o.host.syncTask(async (tx) => {
      const { node, parent, component } = check();
      const old = node.parent;
      assert(old !== null);
      await (await this.openZap(tx, old.record.children)).remove(node.component);
      await (await this.openZap(tx, parent.record.children)).set(component, zapNumber(node.obj));
      const record = { ...node.record, parent: parent.obj };
      await this.writeRecord(tx, node.obj, record);
      old.children.delete(node.component);
      parent.children.set(component, node);
      node.parent = parent;
      node.component = component;
      node.record = record;
    });
  }

  // ---- properties and space ----

  async setProperty(text: string, property: string, value: string): Promise<void> {
    const canonical = canonicalProperty(property, value);
    this.head(text);
    await this.o.host.syncTask(async (tx) => {
      const node = this.head(text);
      await (await this.openZap(tx, node.record.props)).set(property, new TextEncoder().encode(canonical));
      node.props.set(property, canonical);
    });
  }

  private property(node: HeadNode, name: PropertyName): PropertyValue {
    for (let p: HeadNode | null = node; p !== null; p = p.parent) {
      const v = p.props.get(name);
      if (v !== undefined) return { property: name, value: v, source: p === node ? 'local' : `inherited from ${this.nameOf(p)}` };
    }
    return { property: name, value: PROPERTY_DEFAULTS[name], source: 'default' };
  }

  /** Every property of a dataset, snapshot or bookmark, with figures in bytes. */
  async properties(text: string): Promise<PropertyValue[]> {
    const n = parseName(text, ['dataset', 'snapshot', 'bookmark']);
    const fixed = (property: string, value: string | number | bigint): PropertyValue => ({ property, value: String(value), source: '-' });
    if (n.bookmark !== undefined) {
      const mark = this.bookmarkOf(text);
      return [fixed('type', 'bookmark'), fixed('guid', mark.guid), fixed('createtxg', mark.txg), fixed('creation', mark.creationMs)];
    }
    if (n.snapshot !== undefined) {
      const snap = this.snapNamed(text);
      const r = snap.record;
      const out = [
        fixed('type', 'snapshot'),
        fixed('guid', r.guid),
        fixed('createtxg', r.createdTxg),
        fixed('creation', r.creationMs),
        fixed('used', await this.snapshotUsed(snap)),
        fixed('referenced', r.referencedBytes),
        fixed('written', sumBytes(await blocksBornAfter(this.o.store, text, r.root, r.prevSnapTxg))),
        fixed('clones', r.clones),
        fixed('userrefs', snap.holds.size),
      ];
      return [...out, ...PROPERTY_NAMES.map((p) => this.property(snap.head, p))];
    }
    const node = this.head(text);
    const r = node.record;
    const space = this.space(node);
    const origin = this.snaps.get(r.origin);
    return [
      fixed('type', 'filesystem'),
      fixed('guid', r.guid),
      fixed('createtxg', r.createdTxg),
      fixed('creation', r.creationMs),
      fixed('used', space.used),
      fixed('referenced', r.referencedBytes),
      fixed('written', r.uniqueBytes),
      fixed('usedbydataset', r.uniqueBytes),
      fixed('usedbysnapshots', r.snapUsedBytes),
      fixed('usedbychildren', space.children),
      fixed('available', this.o.host.availableBytes()),
      fixed('origin', origin === undefined ? '-' : `${this.nameOf(origin.head)}@${origin.name}`),
      fixed('appliedtid', r.appliedTid),
      ...PROPERTY_NAMES.map((p) => this.property(node, p)),
    ];
  }

  private space(node: HeadNode): { used: number; children: number } {
    let children = 0;
    for (const child of node.children.values()) children += this.space(child).used;
    return { used: node.record.uniqueBytes + node.record.snapUsedBytes + children, children };
  }

  /** Bytes only this snapshot holds: the next one's deadlist entries born after its predecessor. */
  private async snapshotUsed(snap: SnapNode): Promise<number> {
    const next = this.snaps.get(snap.record.nextSnap)?.record ?? snap.head.record;
    let sum = 0;
    for await (const chunk of deadlistChunks(this.o.mos, next.deadlist)) {
      for (const bp of chunk) if (bp.birth > snap.record.prevSnapTxg) sum += sumBytes([bp]);
    }
    return sum;
  }

  /** Datasets, snapshots and bookmarks under `under` (default: the whole pool), by name. */
  async list(options: { under?: string; types?: readonly DatasetType[] } = {}): Promise<DatasetEntry[]> {
    const types = options.types ?? ['filesystem'];
    const top = options.under === undefined ? this.root : this.head(options.under);
    assert(top !== null);
    const out: DatasetEntry[] = [];
    const walk = async (node: HeadNode): Promise<void> => {
      const name = this.nameOf(node);
      const r = node.record;
      if (types.includes('filesystem')) {
        const origin = this.snaps.get(r.origin);
        out.push({
          name,
          type: 'filesystem',
          guid: r.guid,
          createTxg: r.createdTxg,
          creationMs: r.creationMs,
          usedBytes: this.space(node).used,
          referencedBytes: r.referencedBytes,
          ...(origin === undefined ? {} : { origin: `${this.nameOf(origin.head)}@${origin.name}` }),
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
            usedBytes: await this.snapshotUsed(s),
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

  // ---- checks ----

  /**
   * With nothing dirty: every head's and snapshot's figures match a walk of its blocks, the
   * snapshot chains link both ways with rising txgs, clone counts match, and every deadlist
   * entry is a live block born no later than its owner's predecessor. `isLive` tells whether
   * the pool's walk reached a block.
   */
  async checkInvariants(isLive: (bp: BlockPointer) => boolean): Promise<void> {
    const bytesAfter = async (name: string, root: BlockPointer, t: number): Promise<number> =>
      sumBytes(await blocksBornAfter(this.o.store, name, root, t));
    const clones = new Map<ObjectId, number>();
    for (const node of this.heads.values()) {
      const name = this.nameOf(node);
      const r = node.record;
      if (r.origin !== 0) clones.set(r.origin, (clones.get(r.origin) ?? 0) + 1);
      assert((await bytesAfter(name, r.root, 0)) === r.referencedBytes, `${name}: referenced ${r.referencedBytes} != its blocks`);
      assert((await bytesAfter(name, r.root, r.prevSnapTxg)) === r.uniqueBytes, `${name}: unique ${r.uniqueBytes} != its new blocks`);
      let snapUsed = 0;
      const owners: { name: string; deadlist: ObjectId; prevTxg: Txg }[] = [{ name, deadlist: r.deadlist, prevTxg: r.prevSnapTxg }];
      let newer: DatasetRecord = r;
      for (let s = this.snaps.get(r.prevSnap); s !== undefined && s.head === node; s = this.snaps.get(s.record.prevSnap)) {
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
        for await (const chunk of deadlistChunks(this.o.mos, o.deadlist)) {
          for (const bp of chunk) {
            assert(bp.birth <= o.prevTxg, `${o.name}: deadlist entry born ${bp.birth} after ${o.prevTxg}`);
            assert(isLive(bp), `${o.name}: deadlist entry at birth ${bp.birth} is not a live block`);
            bytes += sumBytes([bp]);
            if (bp.birth > node.originTxg) snapUsed += sumBytes([bp]);
          }
        }
        assert(bytes === (await deadlistBytes(this.o.mos, o.deadlist)), `${o.name}: deadlist byte count`);
      }
      assert(snapUsed === r.snapUsedBytes, `${name}: usedbysnapshots ${r.snapUsedBytes} != deadlists ${snapUsed}`);
    }
    for (const s of this.snaps.values()) {
      assert(s.record.clones === (clones.get(s.obj) ?? 0), `snapshot ${s.name}: clone count`);
    }
  }

  // ---- MOS helpers ----

  private async readRecord(obj: ObjectId): Promise<DatasetRecord> {
    return decodeDatasetRecord(await dmu.bonus(this.o.mos, obj), { object: obj });
  }

  private writeRecord(tx: dmu.Tx, obj: ObjectId, r: DatasetRecord): Promise<void> {
    return dmu.setBonus(this.o.mos, tx, obj, encodeDatasetRecord(r));
  }

  private async newZap(tx: dmu.Tx): Promise<ObjectId> {
    const obj = await dmu.createObject(this.o.mos, tx, { type: ObjectType.zap, blockBytes: CATALOG_ZAP_NODE_BYTES, checksumKind: this.o.checksumKind });
    await Zap.create(await dmu.objectAccess(this.o.mos, tx, obj), { nodeBytes: CATALOG_ZAP_NODE_BYTES });
    return obj;
  }

  private async openZap(tx: dmu.Tx, obj: ObjectId): Promise<Zap> {
    return Zap.open(await dmu.objectAccess(this.o.mos, tx, obj));
  }

  private async zapEntries(obj: ObjectId): Promise<[string, Uint8Array][]> {
    const zap = await Zap.open(await dmu.objectAccess(this.o.mos, null, obj));
    const out: [string, Uint8Array][] = [];
    for await (const e of zap.entries()) out.push([new TextDecoder().decode(e.key), e.value]);
    return out;
  }
}

function canonicalProps(props: ReadonlyMap<string, string>): Map<string, string> {
  const out = new Map<string, string>();
  for (const [k, v] of props) out.set(k, canonicalProperty(k, v));
  return out;
}

function checkGuid(g: bigint): Guid {
  if (typeof g !== 'bigint' || g <= 0n || g > 0xffff_ffff_ffff_ffffn) throw mpError('EINVAL', `a guid is a non-zero u64, got ${String(g)}`, {});
  return guid(g);
}

function checkTag(tag: string): void {
  const bytes = new TextEncoder().encode(tag).length;
  if (typeof tag !== 'string' || bytes === 0 || bytes > HOLD_TAG_BYTES_MAX) {
    throw mpError('EINVAL', `a hold tag is 1..${HOLD_TAG_BYTES_MAX} bytes`, { tag });
  }
}

function encodeBookmark(b: Bookmark): Uint8Array {
  const out = new Uint8Array(BOOKMARK_VALUE_BYTES);
  writeU64(out, 0, b.guid);
  writeU64Number(out, 8, b.txg);
  writeU64Number(out, 16, b.creationMs);
  return out;
}

function decodeBookmark(v: Uint8Array): Bookmark {
  if (v.length !== BOOKMARK_VALUE_BYTES) throw mpError('EPROTO', `bookmark value of ${v.length} bytes`, {});
  return { guid: guid(readU64(v, 0)), txg: txg(readU64Number(v, 8)), creationMs: readU64Number(v, 16) };
}
