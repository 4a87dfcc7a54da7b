// The DSL's catalog: every dataset, snapshot and bookmark of a pool, in memory, mirroring their
// records and ZAPs in the MOS. Loaded at import; changed only by the DSL's sync tasks, each of
// which writes the MOS first and then updates the catalog in one synchronous step, so names
// resolve without touching the MOS and open context never sees half a change. Also the small
// MOS helpers (records, catalog ZAPs) the DSL's modules share. Callers: dsl*.ts.
//
// A map with no entries (a dataset's children, snapshots, bookmarks or properties, a snapshot's
// holds) has no ZAP: its record field is 0 until the first entry, and again once the last goes.


import { Gate, type Clock, type Random, assert, mpError, readU64, readU64Number, writeU64, writeU64Number } from '../lib/index.js';
import type { BlockStore } from './block-store.js';
import { DatasetKind, type DatasetRecord, decodeDatasetRecord, encodeDatasetRecord } from './dataset-record.js';
import * as dmu from './dmu.js';
import { ObjectType } from './dnode.js';
import { type DatasetName, formatName, parseName } from './dsl-names.js';
import { PROPERTY_DEFAULTS, type PropertyName, canonicalProperty } from './dsl-props.js';
import { HeadStore } from './dsl-store.js';
import { ObjectSet } from './objset.js';
import { type Guid, type ObjectId, type Txg, guid, objectId, txg } from './types.js';
import { Zap } from './zap.js';
import type { DurableLog, LogHost } from './durable-log.js';
import type { LogRecord } from './log-format.js';
import type { Zil } from './zil.js';

export interface DslHost {
  /** Runs `run` in syncing context of the next txg; resolves once it is durable. */
  syncTask(run: (tx: dmu.Tx) => Promise<void>): Promise<void>;
  /** Runs `run` the same way; resolves once it has run, before its txg is durable (Pool.syncTaskRun). */
  syncTaskRun(run: (tx: dmu.Tx) => Promise<void>): Promise<void>;
  /** Syncs everything written so far. */
  sync(): Promise<Txg>;
  /** Bytes new data may still take. */
  availableBytes(): number;
  /** Opens a durable log kept in a MOS object, with its live records (pool.ts). */
  openLog(obj: ObjectId): Promise<{ log: DurableLog; records: LogRecord[] }>;
  /** Stops recording a destroyed log's state. */
  closeLog(log: DurableLog): void;
  readonly logHost: LogHost;
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

export interface Bookmark {
  readonly guid: Guid;
  readonly txg: Txg;
  readonly creationMs: number;
}

export interface HeadNode {
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
  /** The intent log, once opened (first synchronous write, or replay at import). */
  zil: Promise<Zil> | null;
  /** The newest txg holding a change that was not logged. */
  unloggedTxg: number;
}

export interface SnapNode {
  readonly obj: ObjectId;
  record: DatasetRecord;
  name: string;
  readonly head: HeadNode;
  readonly holds: Map<string, number>;
  /** Readers hold it shared; destroying the snapshot waits for them. */
  readonly gate: Gate;
  os: ObjectSet | null;
}

export interface PropertyValue {
  readonly property: string;
  readonly value: string;
  /** 'local', 'default', 'inherited from <name>' or '-' for read-only figures. */
  readonly source: string;
}

/** The fields of a dataset record that name a catalog ZAP (0: the map is empty). */
export type CatalogZap = 'children' | 'snapshots' | 'bookmarks' | 'props' | 'holds';

const BOOKMARK_VALUE_BYTES = 24;
const CATALOG_ZAP_NODE_BYTES = 8192;
const HOLD_TAG_BYTES_MAX = 255;

export class Catalog {
  readonly o: DslOptions;
  readonly heads = new Map<ObjectId, HeadNode>();
  readonly snaps = new Map<ObjectId, SnapNode>();
  root: HeadNode | null = null;

  constructor(options: DslOptions) {
    this.o = options;
  }

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
      const snap: SnapNode = { obj: sobj, record: srec, name: k, head: node, holds: new Map(), gate: new Gate(), os: null };
      for (const [tag, at] of await this.zapEntries(srec.holds)) snap.holds.set(tag, readU64Number(at, 0));
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

  newHead(obj: ObjectId, record: DatasetRecord, parent: HeadNode | null, component: string): HeadNode {
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
      zil: null,
      unloggedTxg: 0,
    };
    (node as { store: HeadStore }).store = new HeadStore(this.o.store, node);
    return node;
  }

  async openHead(node: HeadNode): Promise<ObjectSet> {
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

  nameOf(node: HeadNode): string {
    return node.parent === null ? this.o.poolName : `${this.nameOf(node.parent)}/${node.component}`;
  }

  checkPool(n: DatasetName, text: string): void {
    if (n.pool !== this.o.poolName) throw mpError('ENOENT', `no pool '${n.pool}' here (this is ${this.o.poolName})`, { name: text });
  }

  findHead(n: DatasetName): HeadNode | undefined {
    let node = this.root ?? undefined;
    for (const part of n.path) node = node?.children.get(part);
    return node;
  }

  head(text: string): HeadNode {
    const n = parseName(text, ['dataset']);
    this.checkPool(n, text);
    const node = this.findHead(n);
    if (node === undefined) throw mpError('ENOENT', `dataset ${text} does not exist`, { name: text });
    return node;
  }

  snapNamed(text: string): SnapNode {
    const n = parseName(text, ['snapshot']);
    this.checkPool(n, text);
    const node = this.findHead(n);
    const snap = n.snapshot === undefined ? undefined : node?.snapshots.get(n.snapshot);
    if (snap === undefined) throw mpError('ENOENT', `snapshot ${text} does not exist`, { name: text });
    return snap;
  }

  /** The parent of a dataset to be created: ENOENT when missing, EEXIST when the name is taken. */
  parentFor(text: string): { parent: HeadNode; component: string } {
    const n = parseName(text, ['dataset']);
    this.checkPool(n, text);
    const component = n.path.at(-1);
    if (component === undefined) throw mpError('EEXIST', `dataset ${text} exists (the pool's root dataset)`, { name: text });
    const parent = this.findHead({ pool: n.pool, path: n.path.slice(0, -1) });
    if (parent === undefined) throw mpError('ENOENT', `parent of ${text} does not exist`, { name: text });
    if (parent.children.has(component)) throw mpError('EEXIST', `dataset ${text} exists`, { name: text });
    return { parent, component };
  }

  property(node: HeadNode, name: PropertyName): PropertyValue {
    for (let p: HeadNode | null = node; p !== null; p = p.parent) {
      const v = p.props.get(name);
      if (v !== undefined) return { property: name, value: v, source: p === node ? 'local' : `inherited from ${this.nameOf(p)}` };
    }
    return { property: name, value: PROPERTY_DEFAULTS[name], source: 'default' };
  }

  checkSnapshotDestroy(snap: SnapNode): void {
    const name = `${this.nameOf(snap.head)}@${snap.name}`;
    if (snap.holds.size > 0) {
      throw mpError('EBUSY', `snapshot ${name} is held (${[...snap.holds.keys()].join(', ')})`, { name, holds: [...snap.holds.keys()] });
    }
    if (snap.record.clones > 0) throw mpError('EBUSY', `snapshot ${name} has dependent clones`, { name, clones: snap.record.clones });
  }

  /** A bookmark by name (`pool/ds#mark`). */
  bookmarkOf(text: string): Bookmark {
    const n = parseName(text, ['bookmark']);
    const mark = this.head(formatName({ pool: n.pool, path: n.path })).bookmarks.get(n.bookmark ?? '');
    if (mark === undefined) throw mpError('ENOENT', `bookmark ${text} does not exist`, { name: text });
    return mark;
  }

  async readRecord(obj: ObjectId): Promise<DatasetRecord> {
    return decodeDatasetRecord(await dmu.bonus(this.o.mos, obj), { object: obj });
  }

  writeRecord(tx: dmu.Tx, obj: ObjectId, r: DatasetRecord): Promise<void> {
    return dmu.setBonus(this.o.mos, tx, obj, encodeDatasetRecord(r));
  }

  /**
   * Sets `key` to `value` (null: removes it) in the catalog ZAP `field` of `record`, the record of
   * MOS object `owner`. An empty map has no ZAP (0): its first entry creates one and the removal of
   * its last frees it, and the record is written then. Returns the record as it now is (`record`
   * itself when the field kept its object); the caller puts it in the catalog.
   */
  async changeZap(tx: dmu.Tx, owner: ObjectId, record: DatasetRecord, field: CatalogZap, key: string, value: Uint8Array | null): Promise<DatasetRecord> {
    let obj = record[field];
    if (value === null) {
      assert(obj !== 0, `removal of '${key}' from an empty ${field} map`);
      const zap = await Zap.open(await dmu.objectAccess(this.o.mos, tx, obj));
      await zap.remove(key);
      if ((await zap.count()) > 0) return record;
      await dmu.freeObject(this.o.mos, tx, obj);
      obj = objectId(0);
    } else if (obj === 0) {
      obj = await dmu.createObject(this.o.mos, tx, { type: ObjectType.zap, blockBytes: CATALOG_ZAP_NODE_BYTES, checksumKind: this.o.checksumKind });
      await (await Zap.create(await dmu.objectAccess(this.o.mos, tx, obj), { nodeBytes: CATALOG_ZAP_NODE_BYTES })).set(key, value);
    } else {
      await (await Zap.open(await dmu.objectAccess(this.o.mos, tx, obj))).set(key, value);
      return record;
    }
    const changed = { ...record, [field]: obj };
    await this.writeRecord(tx, owner, changed);
    return changed;
  }

  /** The entries of catalog ZAP `obj` (none for 0). */
  async zapEntries(obj: ObjectId): Promise<[string, Uint8Array][]> {
    if (obj === 0) return [];
    const zap = await Zap.open(await dmu.objectAccess(this.o.mos, null, obj));
    const out: [string, Uint8Array][] = [];
    for await (const e of zap.entries()) out.push([new TextDecoder().decode(e.key), e.value]);
    return out;
  }
}

export function canonicalProps(props: ReadonlyMap<string, string>): Map<string, string> {
  const out = new Map<string, string>();
  for (const [k, v] of props) out.set(k, canonicalProperty(k, v));
  return out;
}

export function checkGuid(g: bigint): Guid {
  if (typeof g !== 'bigint' || g <= 0n || g > 0xffff_ffff_ffff_ffffn) throw mpError('EINVAL', `a guid is a non-zero u64, got ${String(g)}`, {});
  return guid(g);
}

export function checkTag(tag: string): void {
  const bytes = new TextEncoder().encode(tag).length;
  if (typeof tag !== 'string' || bytes === 0 || bytes > HOLD_TAG_BYTES_MAX) {
    throw mpError('EINVAL', `a hold tag is 1..${HOLD_TAG_BYTES_MAX} bytes`, { tag });
  }
}

export function encodeBookmark(b: Bookmark): Uint8Array {
  const out = new Uint8Array(BOOKMARK_VALUE_BYTES);
  writeU64(out, 0, b.guid);
  writeU64Number(out, 8, b.txg);
  writeU64Number(out, 16, b.creationMs);
  return out;
}

export function decodeBookmark(v: Uint8Array): Bookmark {
  if (v.length !== BOOKMARK_VALUE_BYTES) throw mpError('EPROTO', `bookmark value of ${v.length} bytes`, {});
  return { guid: guid(readU64(v, 0)), txg: txg(readU64Number(v, 8)), creationMs: readU64Number(v, 16) };
}
