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
//
// This file is the DSL's public face: it checks each request against the catalog
// (dsl-catalog.ts), waits on the datasets' gates where needed, and queues the sync task that
// makes the change (dsl-sync.ts). Reports and invariant checks live in dsl-report.ts.

import { MirrorpoolError, assert, hasCode, mpError, writeU64Number } from '../lib/index.js';
import { appendDeadlist } from './deadlist.js';
import type * as dmu from './dmu.js';
import { RECV_SUFFIX, RESUME_TOKEN_KEY, formatName, isReceiveTemp, notReserved, parseName } from './dsl-names.js';
import { canonicalProperty, checksumOfProperty, parseRecordSize } from './dsl-props.js';
import { ObjectSet } from './objset.js';
import { DurableLog } from './durable-log.js';
import { replayRecords } from './keyed.js';
import type { TxHandle } from './txg.js';
import { Zil, decodeZilRecord } from './zil.js';
import { type BlockPointer, type ObjectId, type Txg, newGuid } from './types.js';
import { zapNumber } from './zap.js';
import { type Bookmark, Catalog, type DslOptions, type HeadNode, type SnapNode, canonicalProps, checkGuid, checkTag, encodeBookmark } from './dsl-catalog.js';
import { type DatasetEntry, type DatasetType, type PropertyValue, checkInvariants, list, properties, resumeTokenOf } from './dsl-report.js';
import { type HeldBlocks, createHeadSync, destroyHeadSync, destroySnapshotSync, listHeld, renameHeadSync, rollbackSync, snapshotSync, swapCloneSync } from './dsl-sync.js';

export type { Bookmark, DslHost, DslOptions } from './dsl-catalog.js';
export type { DatasetEntry, DatasetType, PropertyValue } from './dsl-report.js';

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
  /** The dataset's intent log (created on first use; heads only). */
  intentLog(): Promise<Zil>;
  /** A change made in `tx` went unlogged. */
  noteUnlogged(tx: dmu.Tx): void;
  /**
   * Makes every unlogged change so far durable (a txg sync when there is one): a logged change
   * that follows must never be replayed onto a state that lacks them.
   */
  settleUnlogged(): Promise<void>;
}

export class Dsl {
  private readonly c: Catalog;
  /** The newest durable txg. */
  private syncedTxg = 0;

  constructor(options: DslOptions) {
    this.c = new Catalog(options);
  }

  /** Loads the catalog from the MOS, starting at the root dataset's record. */
  load(rootObj: ObjectId): Promise<void> {
    return this.c.load(rootObj);
  }

  /** A bookmark by name (`pool/ds#mark`). */
  bookmarkOf(text: string): Bookmark {
    return this.c.bookmarkOf(text);
  }

  /** Every property of a dataset, snapshot or bookmark, with figures in bytes. */
  properties(text: string): Promise<PropertyValue[]> {
    return properties(this.c, text);
  }

  /** Datasets, snapshots and bookmarks under `under` (default: the whole pool), by name. */
  async list(options: { under?: string; types?: readonly DatasetType[] } = {}): Promise<DatasetEntry[]> {
    return (await list(this.c, options)).filter((e) => !isReceiveTemp(e.name));
  }

  /** See dsl-report.ts; `isLive` tells whether the pool's walk reached a block. */
  checkInvariants(isLive: (bp: BlockPointer) => boolean): Promise<void> {
    return checkInvariants(this.c, isLive);
  }

  /** Creates the root dataset (pool creation); returns its record's object number. */
  async createRoot(tx: dmu.Tx): Promise<ObjectId> {
    const node = await createHeadSync(this.c, tx, null, this.c.o.poolName, new Map(), null);
    this.c.root = node;
    return node.obj;
  }

  /** Syncs every head changed in txg `t` and records its new root, space and applied TID. */
  async syncHeads(tx: dmu.Tx): Promise<void> {
    for (const node of this.c.heads.values()) {
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
      await appendDeadlist(this.c.o.mos, tx, node.record.deadlist, dead);
      await this.c.writeRecord(tx, node.obj, node.record);
    }
  }

  /** Dirty bytes of every head (of txg `t` only when given). */
  dirtyBytes(t?: Txg): number {
    let sum = 0;
    for (const node of this.c.heads.values()) if (node.os !== null) sum += node.os.dirtyBytes(t);
    return sum;
  }

  /** Whether any dataset holds changes that no synced txg covers yet. */
  hasUnsynced(): boolean {
    for (const node of this.c.heads.values()) if (node.os?.hasUnsynced() === true) return true;
    return false;
  }

  /** Waits for reads in flight on every open object set (before the disks close). */
  async quiesce(): Promise<void> {
    const sets: ObjectSet[] = [];
    for (const h of this.c.heads.values()) if (h.os !== null) sets.push(h.os);
    for (const s of this.c.snaps.values()) if (s.os !== null) sets.push(s.os);
    await Promise.all(sets.map((os) => os.quiesce()));
  }

  /** The root dataset's object set. */
  rootObjset(): ObjectSet {
    assert(this.c.root !== null && this.c.root.os !== null, 'the root dataset is open');
    return this.c.root.os;
  }

  /**
   * Runs `fn` with a view of a dataset (`pool/ds`) or snapshot (`pool/ds@snap`). Heads are held
   * shared: rollback and destroy wait for `fn` to finish. `write` asks for a writable view (EROFS
   * for snapshots and readonly heads).
   */
  async withView<T>(text: string, mode: 'read' | 'write', fn: (view: DatasetView) => Promise<T>): Promise<T> {
    const n = parseName(text, ['dataset', 'snapshot']);
    if (n.snapshot !== undefined) {
      const snap = this.c.snapNamed(text);
      if (mode === 'write') throw mpError('EROFS', `snapshot ${text} is read-only`, { name: text });
      return snap.head.gate.withShared(() =>
        snap.gate.withShared(async () => {
          if (!this.c.snaps.has(snap.obj)) throw mpError('ENOENT', `snapshot ${text} does not exist`, { name: text });
          snap.os ??= await ObjectSet.open(this.c.o.store, text, snap.record.root);
          return fn(this.viewOf(snap.head, snap.os, text, false, () => snap.record.appliedTid));
        }),
      );
    }
    const node = this.c.head(text);
    return node.gate.withShared(async () => {
      if (node.destroyed) throw mpError('ENOENT', `dataset ${text} does not exist`, { name: text });
      const readonly = this.c.property(node, 'readonly').value === 'on';
      if (mode === 'write' && readonly) throw mpError('EROFS', `dataset ${text} is read-only (readonly=on)`, { name: text });
      const os = await this.c.openHead(node);
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
      recordBytes: parseRecordSize(this.c.property(node, 'recordsize').value),
      checksumKind: checksumOfProperty(this.c.property(node, 'checksum').value),
      sync: this.c.property(node, 'sync').value,
      setAppliedTid: (tx, tid) => {
        if (!writable) throw mpError('EROFS', `${name} is read-only`, { name });
        node.pendingTid.set(tx.txg, tid);
      },
      appliedTid: tid,
      intentLog: () => {
        if (!writable) throw mpError('EROFS', `${name} is read-only`, { name });
        return this.intentLog(node);
      },
      noteUnlogged: (tx) => {
        node.unloggedTxg = Math.max(node.unloggedTxg, tx.txg);
      },
      settleUnlogged: async () => {
        if (node.unloggedTxg > this.syncedTxg) await this.c.o.host.sync();
      },
    };
  }

  /** The head's intent log, created (one txg) and opened on first use. */
  private intentLog(node: HeadNode): Promise<Zil> {
    node.zil ??= (async () => {
      if (node.record.intentLog === 0) {
        await this.c.o.host.syncTask(async (tx) => {
          if (node.record.intentLog !== 0) return;
          const obj = await DurableLog.create(this.c.o.host.logHost, tx);
          const record = { ...node.record, intentLog: obj };
          await this.c.writeRecord(tx, node.obj, record);
          node.record = record;
        });
      }
      return new Zil((await this.c.o.host.openLog(node.record.intentLog)).log);
    })();
    node.zil.catch(() => {
      node.zil = null; // a later write tries again
    });
    return node.zil;
  }

  /** Txg `t` is durable: intent log records it covers are dead. */
  txgSynced(t: Txg): void {
    this.syncedTxg = t;
    for (const node of this.c.heads.values()) {
      void node.zil?.then((zil) => zil.txgSynced(t), () => undefined);
    }
  }

  /**
   * Import: replays every dataset's intent log records of txgs after `syncedTxg` (those that did
   * not reach disk) in one new txg, sorted by (txg, seq), and truncates the logs. Replaying the
   * same records on the same state again gives the same state.
   */
  async replayIntentLogs(assign: () => Promise<TxHandle>, syncedTxg: Txg): Promise<number> {
    let replayed = 0;
    for (const node of [...this.c.heads.values()]) {
      if (node.record.intentLog === 0) continue;
      const { log, records } = await this.c.o.host.openLog(node.record.intentLog);
      node.zil = Promise.resolve(new Zil(log));
      const name = this.c.nameOf(node);
      const todo = records
        .map((r) => ({ seq: r.seq, z: decodeZilRecord(r.data, { dataset: name, seq: r.seq }) }))
        .filter((r) => r.z.txg > syncedTxg)
        .sort((a, b) => a.z.txg - b.z.txg || a.seq - b.seq);
      if (todo.length > 0) {
        const os = await this.c.openHead(node);
        const view = this.viewOf(node, os, name, true, () => node.record.appliedTid);
        const tx = await assign();
        try {
          await replayRecords(view, tx, todo.map((r) => r.z));
        } finally {
          tx.commit();
        }
        replayed += todo.length;
      }
      log.truncate(log.endSeq);
    }
    return replayed;
  }

  async create(text: string, props: ReadonlyMap<string, string> = new Map()): Promise<void> {
    notReserved(text);
    const canonical = canonicalProps(props);
    this.c.parentFor(text);
    await this.c.o.host.syncTask(async (tx) => {
      const { parent, component } = this.c.parentFor(text);
      await createHeadSync(this.c, tx, parent, component, canonical, null);
    });
  }

  async clone(snapText: string, text: string, props: ReadonlyMap<string, string> = new Map()): Promise<void> {
    notReserved(text);
    const canonical = canonicalProps(props);
    this.c.snapNamed(snapText);
    this.c.parentFor(text);
    await this.c.o.host.syncTask(async (tx) => {
      const origin = this.c.snapNamed(snapText);
      const { parent, component } = this.c.parentFor(text);
      await createHeadSync(this.c, tx, parent, component, canonical, origin);
    });
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
      missing(this.c.head(headText));
      await this.c.o.host.syncTask(async (tx) => {
        const node = this.c.head(headText);
        missing(node);
        node.record = await this.c.changeZap(tx, node.obj, node.record, 'bookmarks', mark, null);
        node.bookmarks.delete(mark);
      });
      return;
    }
    if (n.snapshot !== undefined) {
      const first = this.c.snapNamed(text);
      this.c.checkSnapshotDestroy(first);
      await first.gate.withExclusive(() =>
        this.c.o.host.syncTask(async (tx) => {
          const snap = this.c.snapNamed(text);
          this.c.checkSnapshotDestroy(snap);
          await destroySnapshotSync(this.c, tx, snap);
        }),
      );
      return;
    }
    const top = this.c.head(text);
    const doomed = this.checkHeadDestroy(top, options.recursive === true);
    await this.withExclusive(doomed, async () => {
      await this.c.o.host.sync();
      // The blocks a head without snapshots alone holds are listed before the txg: one that
      // cannot be read then fails the destroy with its code, where in the txg it would suspend
      // the pool. (A head with snapshots is listed in the txg, once they are gone.)
      const held = new Map<HeadNode, HeldBlocks>();
      for (const node of this.checkHeadDestroy(this.c.head(text), options.recursive === true)) {
        if (node.snapshots.size === 0) held.set(node, await listHeld(this.c, node));
      }
      await this.c.o.host.syncTask(async (tx) => {
        const again = this.checkHeadDestroy(this.c.head(text), options.recursive === true);
        for (const node of again) {
          const newestFirst = [...node.snapshots.values()].sort((a, b) => b.record.createdTxg - a.record.createdTxg || b.obj - a.obj);
          for (const snap of newestFirst) await destroySnapshotSync(this.c, tx, snap);
          await destroyHeadSync(this.c, tx, node, held.get(node));
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
    const name = this.c.nameOf(top);
    if (top.parent === null) throw mpError('EBUSY', `the pool's root dataset ${name} cannot be destroyed`, { name });
    if (!recursive && top.children.size > 0) throw mpError('EBUSY', `dataset ${name} has children (use -r)`, { name });
    if (!recursive && top.snapshots.size > 0) throw mpError('EBUSY', `dataset ${name} has snapshots (use -r)`, { name });
    const order: HeadNode[] = [];
    const walk = (node: HeadNode): void => {
      for (const child of node.children.values()) walk(child);
      order.push(node);
    };
    walk(top);
    for (const node of order) for (const snap of node.snapshots.values()) this.c.checkSnapshotDestroy(snap);
    return order;
  }

  /** Takes a snapshot (with the caller's guid when given, for the cluster and receive). */
  async snapshot(text: string, options: { guid?: bigint } = {}): Promise<void> {
    notReserved(text);
    const n = parseName(text, ['snapshot']);
    const headText = formatName({ pool: n.pool, path: n.path });
    const snapName = n.snapshot ?? '';
    const given = options.guid === undefined ? undefined : checkGuid(options.guid);
    const check = (): HeadNode => {
      const node = this.c.head(headText);
      if (node.snapshots.has(snapName)) throw mpError('EEXIST', `snapshot ${text} exists`, { name: text });
      return node;
    };
    check();
    await this.c.o.host.syncTask(async (tx) => {
      const node = check();
      await snapshotSync(this.c, tx, node, snapName, given ?? newGuid(this.c.o.random));
    });
  }

  /**
   * Makes `pool/ds@snap` the head's state again. Newer snapshots are destroyed with `recursive`
   * (EEXIST without it); a held one or one with clones refuses (EBUSY) before anything changes.
   */
  async rollback(text: string, options: { recursive?: boolean } = {}): Promise<void> {
    const target = this.c.snapNamed(text);
    const newer = (snap: SnapNode): SnapNode[] => {
      const out: SnapNode[] = [];
      for (let s = this.c.snaps.get(snap.record.nextSnap); s !== undefined; s = this.c.snaps.get(s.record.nextSnap)) out.push(s);
      return out.reverse();
    };
    const check = (snap: SnapNode): SnapNode[] => {
      const later = newer(snap);
      if (later.length > 0 && options.recursive !== true) {
        throw mpError('EEXIST', `${text} is not the newest snapshot: ${later.map((s) => s.name).join(', ')} would be destroyed (use -r)`, {
          name: text,
        });
      }
      for (const s of later) this.c.checkSnapshotDestroy(s);
      return later;
    };
    check(target);
    await target.head.gate.withExclusive(async () => {
      await this.c.o.host.sync();
      await this.c.o.host.syncTask(async (tx) => {
        const snap = this.c.snapNamed(text);
        for (const s of check(snap)) await destroySnapshotSync(this.c, tx, s);
        await rollbackSync(this.c, tx, snap);
      });
    });
  }

  async bookmark(snapText: string, markText: string): Promise<void> {
    const m = parseName(markText, ['bookmark']);
    const s = parseName(snapText, ['snapshot']);
    if (formatName({ pool: m.pool, path: m.path }) !== formatName({ pool: s.pool, path: s.path })) {
      throw mpError('EINVAL', `a bookmark belongs to the dataset of its snapshot: ${markText} vs ${snapText}`, { name: markText });
    }
    const mark = m.bookmark ?? '';
    const check = (): SnapNode => {
      const snap = this.c.snapNamed(snapText);
      if (snap.head.bookmarks.has(mark)) throw mpError('EEXIST', `bookmark ${markText} exists`, { name: markText });
      return snap;
    };
    check();
    await this.c.o.host.syncTask(async (tx) => {
      const snap = check();
      const value: Bookmark = { guid: snap.record.guid, txg: snap.record.createdTxg, creationMs: snap.record.creationMs };
      snap.head.record = await this.c.changeZap(tx, snap.head.obj, snap.head.record, 'bookmarks', mark, encodeBookmark(value));
      snap.head.bookmarks.set(mark, value);
    });
  }

  async hold(tag: string, text: string): Promise<void> {
    checkTag(tag);
    const check = (): SnapNode => {
      const snap = this.c.snapNamed(text);
      if (snap.holds.has(tag)) throw mpError('EEXIST', `snapshot ${text} already has hold '${tag}'`, { name: text, tag });
      return snap;
    };
    check();
    await this.c.o.host.syncTask(async (tx) => {
      const snap = check();
      const at = this.c.o.clock.wallMs();
      const value = new Uint8Array(8);
      writeU64Number(value, 0, at);
      snap.record = await this.c.changeZap(tx, snap.obj, snap.record, 'holds', tag, value);
      snap.holds.set(tag, at);
    });
  }

  async release(tag: string, text: string): Promise<void> {
    checkTag(tag);
    const check = (): SnapNode => {
      const snap = this.c.snapNamed(text);
      if (!snap.holds.has(tag)) throw mpError('ENOENT', `snapshot ${text} has no hold '${tag}'`, { name: text, tag });
      return snap;
    };
    check();
    await this.c.o.host.syncTask(async (tx) => {
      const snap = check();
      snap.record = await this.c.changeZap(tx, snap.obj, snap.record, 'holds', tag, null);
      snap.holds.delete(tag);
    });
  }

  /** Holds of a snapshot: tag → time (ms). */
  holds(text: string): Map<string, number> {
    return new Map(this.c.snapNamed(text).holds);
  }

  /** Renames a dataset (it may move under another parent) or a snapshot within its dataset. */
  async rename(from: string, to: string): Promise<void> {
    notReserved(from);
    notReserved(to);
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
        const snap = this.c.snapNamed(from);
        if (snap.head.snapshots.has(snapTo)) throw mpError('EEXIST', `snapshot ${to} exists`, { name: to });
        return snap;
      };
      check();
      await this.c.o.host.syncTask(async (tx) => {
        const snap = check();
        const head = snap.head;
        // The new name goes in first, so the map never empties on the way.
        head.record = await this.c.changeZap(tx, head.obj, head.record, 'snapshots', snapTo, zapNumber(snap.obj));
        head.record = await this.c.changeZap(tx, head.obj, head.record, 'snapshots', snap.name, null);
        snap.head.snapshots.delete(snap.name);
        snap.name = snapTo;
        snap.head.snapshots.set(snapTo, snap);
      });
      return;
    }
    const check = (): { node: HeadNode; parent: HeadNode; component: string } => {
      const node = this.c.head(from);
      if (node.parent === null) throw mpError('EINVAL', `the pool's root dataset cannot be renamed`, { name: from });
      const { parent, component } = this.c.parentFor(to);
      for (let p: HeadNode | null = parent; p !== null; p = p.parent) {
        if (p === node) throw mpError('EINVAL', `cannot move ${from} under itself (${to})`, { from, to });
      }
      return { node, parent, component };
    };
    check();
    await this.c.o.host.syncTask(async (tx) => {
      const { node, parent, component } = check();
      await renameHeadSync(this.c, tx, node, parent, component);
    });
  }

  // --- receive (src/sync): a stream is written to a temporary dataset, `<target>%recv` ---

  /**
   * Creates the temporary dataset a receive into `target` writes to: a clone of `from` (a
   * snapshot of target, for an incremental stream) or a new dataset (a full stream, target must
   * not exist: EEXIST). A temporary dataset left by a receive that never ended goes first.
   * Returns its name as soon as the txg creating it has run, while that txg is still on its way
   * to disk: the receive is acknowledged only once its last txg is durable, and txgs reach disk
   * in order.
   */
  async receiveBegin(target: string, from: string | null): Promise<string> {
    notReserved(target);
    const temp = `${target}${RECV_SUFFIX}`;
    if (from === null) this.c.parentFor(target);
    else this.c.snapNamed(from);
    if (this.receiveResumeToken(target) !== undefined) {
      throw mpError('EBUSY', `a resumable receive into ${target} is in progress: resume it with its token, or abort it`, { name: target });
    }
    if (this.exists(temp)) await this.destroy(temp, { recursive: true });
    await this.c.o.host.syncTaskRun(async (tx) => {
      const { parent, component } = this.c.parentFor(temp);
      if (from === null) {
        if (this.exists(target)) throw mpError('EEXIST', `${target} exists: a full stream creates its dataset`, { name: target });
        await createHeadSync(this.c, tx, parent, component, new Map(), null);
      } else {
        await createHeadSync(this.c, tx, parent, component, new Map(), this.c.snapNamed(from));
      }
    });
    return temp;
  }

  /**
   * The stream into `target` ended well: in one txg the temporary dataset becomes the target
   * (swapped in for an incremental stream, renamed for a full one) and the target gets snapshot
   * `snap` with the sender's guid and creation time. EBUSY when the target changed meanwhile.
   */
  async receiveEnd(target: string, snap: { name: string; guid: bigint; creationMs: number }): Promise<void> {
    const temp = `${target}${RECV_SUFFIX}`;
    const guid = checkGuid(snap.guid);
    const check = (): { node: HeadNode | null; clone: HeadNode } => {
      const clone = this.c.head(temp);
      const node = this.exists(target) ? this.c.head(target) : null;
      if (node === null && clone.record.origin !== 0) throw mpError('ENOENT', `${target} no longer exists`, { name: target });
      if (node !== null && clone.record.origin === 0) throw mpError('EEXIST', `${target} exists: a full stream creates its dataset`, { name: target });
      if (node !== null) {
        const newest = this.c.snaps.get(node.record.prevSnap);
        if (newest === undefined || newest.obj !== clone.record.origin || node.record.uniqueBytes !== 0 || node.record.root.birth !== newest.record.root.birth) {
          throw mpError('EBUSY', `${target} changed during the receive`, { name: target });
        }
      }
      if ((node ?? clone).snapshots.has(snap.name)) throw mpError('EEXIST', `snapshot ${target}@${snap.name} exists`, { name: `${target}@${snap.name}` });
      return { node, clone };
    };
    check();
    const node = this.exists(target) ? this.c.head(target) : null;
    // The clone's last data syncs in the same txg as the swap: a txg syncs its datasets before
    // its tasks run (pool.ts).
    const body = (): Promise<void> =>
      this.c.o.host.syncTask(async (tx) => {
        const { node: head, clone } = check();
        if (head === null) {
          const { parent, component } = this.c.parentFor(target);
          if (clone.props.delete(RESUME_TOKEN_KEY)) clone.record = await this.c.changeZap(tx, clone.obj, clone.record, 'props', RESUME_TOKEN_KEY, null);
          await renameHeadSync(this.c, tx, clone, parent, component);
          await snapshotSync(this.c, tx, clone, snap.name, guid, snap.creationMs);
        } else {
          await swapCloneSync(this.c, tx, head, clone);
          await snapshotSync(this.c, tx, head, snap.name, guid, snap.creationMs);
        }
      });
    if (node === null) await body();
    else await node.gate.withExclusive(body);
  }

  /**
   * A resumable receive into `target` stopped: its temporary dataset (everything applied so far,
   * which the caller has synced) keeps `token` until the receive resumes or is aborted.
   */
  async receiveSuspend(target: string, token: string): Promise<void> {
    const temp = `${target}${RECV_SUFFIX}`;
    this.c.head(temp);
    await this.c.o.host.syncTask(async (tx) => {
      const node = this.c.head(temp);
      node.record = await this.c.changeZap(tx, node.obj, node.record, 'props', RESUME_TOKEN_KEY, new TextEncoder().encode(token));
      node.props.set(RESUME_TOKEN_KEY, token);
    });
  }

  /** The token a stopped resumable receive into `target` left, if any. */
  receiveResumeToken(target: string): string | undefined {
    const temp = `${target}${RECV_SUFFIX}`;
    if (this.exists(target)) return resumeTokenOf(this.c, target);
    return this.exists(temp) ? this.c.head(temp).props.get(RESUME_TOKEN_KEY) : undefined;
  }

  /**
   * Destroys every temporary receive dataset that holds no resume token; returns their names.
   * Import calls it, when nothing can be receiving: such a dataset is what a receive cut short by
   * a crash or a kill left, and it would hold its space until the next receive into the same
   * target. One holding a token is a stopped resumable receive and stays for `send -t` or `recv -A`.
   * One that cannot be destroyed (a damaged block: ECKSUM) does not fail the import; it stays for
   * the next import, or the next receive into its target, to try again.
   */
  async dropAbandonedReceives(): Promise<string[]> {
    const abandoned = [...this.c.heads.values()]
      .filter((node) => !node.destroyed && isReceiveTemp(node.component) && !node.props.has(RESUME_TOKEN_KEY))
      .map((node) => this.c.nameOf(node));
    const dropped: string[] = [];
    for (const name of abandoned) {
      try {
        await this.destroy(name, { recursive: true });
        dropped.push(name);
      } catch (e) {
        if (!(e instanceof MirrorpoolError)) throw e;
      }
    }
    return dropped;
  }

  /** The receive into `target` failed or was abandoned: its temporary dataset goes. */
  async receiveAbort(target: string): Promise<void> {
    const temp = `${target}${RECV_SUFFIX}`;
    if (this.exists(temp)) await this.destroy(temp, { recursive: true });
  }

  private exists(text: string): boolean {
    try {
      this.c.head(text);
      return true;
    } catch (e) {
      if (hasCode(e, 'ENOENT')) return false;
      throw e;
    }
  }

  async setProperty(text: string, property: string, value: string): Promise<void> {
    const canonical = canonicalProperty(property, value);
    this.c.head(text);
    await this.c.o.host.syncTask(async (tx) => {
      const node = this.c.head(text);
      node.record = await this.c.changeZap(tx, node.obj, node.record, 'props', property, new TextEncoder().encode(canonical));
      node.props.set(property, canonical);
    });
  }
}
