// A pool: the top-level vdevs, their labels and uberblocks, the space allocator, the block
// cache, the MOS and the root dataset's object set, driven by the txg pipeline.
//
// Sync of txg t (the only place the MOS changes — "syncing context"):
//   1. each dirty dataset object set writes its tree and its new root goes into its MOS record
//   (dsl.ts);  2. queued sync tasks run against the MOS (snapshots, destroys... see the DSL), and
//   datasets they created write their first tree;  3. the MOS writes its tree;  4. the space maps
//   record t's allocations and frees;  5. every disk is synced;  6. the uberblock for t is
//   written to every label (which syncs again);  7. frees deferred past t's window are released.
// A crash anywhere before 6 completes leaves txg t-1 intact: nothing it references was
// overwritten, because blocks freed in t stay allocated until TXG_DEFER txgs after t.

import { type Clock, type Disk, MirrorpoolError, type Random, assert, mpError } from '../lib/index.js';
import { SpaceAllocator } from './allocator.js';
import { BlockCache } from './block-cache.js';
import { BlockIo } from './block-io.js';
import type { BlockStore } from './block-store.js';
import { DATASET_RECORD_BYTES, decodeDatasetRecord } from './dataset-record.js';
import * as dmu from './dmu.js';
import { ObjectType } from './dnode.js';
import { type PoolConfig, type Uberblock, readPool, vdevConfigOf, writeLabels, writeUberblock } from './label.js';
import { MetaslabGroup } from './metaslab.js';
import { Dsl } from './dsl.js';
import { DurableLog, LOG_EXTENT_BYTES_DEFAULT, type LogHost, logExtentRanges } from './durable-log.js';
import type { LogRecord } from './log-format.js';
import { ObjectSet, ObjsetType } from './objset.js';
import { PoolBlockStore } from './pool-block-store.js';
import { traverseObjset } from './traverse.js';
import { type TxHandle, TxgManager } from './txg.js';
import { type BlockPointer, type Guid, HOLE, type ObjectId, type Txg, layout, newGuid, objectId, txg } from './types.js';
import { TopVdev } from './vdev.js';
import { Zap } from './zap.js';

export interface PoolTuning {
  /** Sync at least this often while dirty (default 5000; 0 disables the timer). */
  txgTimeoutMs?: number;
  /** Writers wait past this many dirty bytes (default 256 MiB). */
  dirtyMaxBytes?: number;
  /** A sync starts past this many dirty bytes (default a quarter of dirtyMaxBytes). */
  dirtySyncBytes?: number;
  /** Block cache size (default 64 MiB). */
  cacheBytes?: number;
  /** Default checksum for new objects (lib ChecksumKind id; default fletcher-4). */
  checksumKind?: number;
  /** Bytes of each intent log extent (default 1 MiB). */
  logExtentBytes?: number;
  /** Run checkInvariants() after every txg (tests). */
  checkEveryTxg?: boolean;
}

export interface LeafInput {
  readonly disk: Disk;
  readonly path: string;
}

export interface PoolEnv {
  readonly clock: Clock;
  readonly random: Random;
  readonly tuning?: PoolTuning;
}

const MOS_DIRECTORY = objectId(1);
const ROOT_DATASET_KEY = 'root_dataset';
const FLETCHER4 = 1;
/** Fraction of the pool kept back so a txg sync never runs out of space (1/32, like ZFS's slop). */
const SLOP_SHIFT = 5;

/** Codes a sync task raises when its checks refuse the change (nothing changed). */
const TASK_REFUSALS: ReadonlySet<string> = new Set(['EINVAL', 'ENOENT', 'EEXIST', 'EBUSY', 'EROFS', 'ENOSPC', 'ENOTSUP']);

interface SyncTask {
  readonly run: (tx: dmu.Tx) => Promise<void>;
  readonly done: (e?: Error) => void;
}

interface PoolParts {
  readonly config: PoolConfig;
  readonly vdevs: readonly TopVdev[];
  readonly allocator: SpaceAllocator;
  readonly io: BlockIo;
  readonly cache: BlockCache;
  readonly store: BlockStore;
  readonly mos: ObjectSet;
  readonly uberblock: Uberblock;
  readonly firstTxg: Txg;
  readonly env: PoolEnv;
}

function storage(vdevs: readonly TopVdev[], allocator: SpaceAllocator, env: PoolEnv): Pick<PoolParts, 'io' | 'cache' | 'store'> {
  const io = new BlockIo(vdevs);
  const cache = new BlockCache(env.tuning?.cacheBytes ?? 64 * 1024 * 1024);
  return { io, cache, store: new PoolBlockStore(io, allocator, cache) };
}

export class Pool {
  readonly name: string;
  readonly guid: Guid;
  readonly config: PoolConfig;
  readonly vdevs: readonly TopVdev[];
  readonly allocator: SpaceAllocator;
  readonly blockIo: BlockIo;
  readonly cache: BlockCache;
  readonly store: BlockStore;
  readonly mos: ObjectSet;
  /** Datasets, snapshots, bookmarks, clones and holds. */
  readonly dsl: Dsl;
  private readonly txgs: TxgManager;
  private readonly env: PoolEnv;
  private readonly checksumKind: number;
  private tasks: SyncTask[] = [];
  /** Open durable logs: each records its state every txg. */
  private readonly logs = new Set<DurableLog>();
  /** What durable logs need of the pool. */
  readonly logHost: LogHost;
  private ub: Uberblock;
  private closed = false;

  private constructor(p: PoolParts) {
    this.name = p.config.name;
    this.guid = p.config.poolGuid;
    this.config = p.config;
    this.vdevs = p.vdevs;
    this.allocator = p.allocator;
    this.blockIo = p.io;
    this.cache = p.cache;
    this.store = p.store;
    this.mos = p.mos;
    this.ub = p.uberblock;
    this.env = p.env;
    const t = p.env.tuning ?? {};
    this.checksumKind = t.checksumKind ?? FLETCHER4;
    const dirtyMaxBytes = t.dirtyMaxBytes ?? 256 * 1024 * 1024;
    this.txgs = new TxgManager({
      firstTxg: p.firstTxg,
      clock: p.env.clock,
      syncTxg: (x) => this.syncTxg(x),
      dirtyBytes: (t) => this.dsl.dirtyBytes(t),
      dirtyMaxBytes,
      dirtySyncBytes: t.dirtySyncBytes ?? Math.floor(dirtyMaxBytes / 4),
      timeoutMs: t.txgTimeoutMs ?? 5000,
    });
    this.logHost = {
      mos: this.mos,
      vdevs: this.vdevs,
      random: p.env.random,
      syncTask: (run) => this.syncTask(run),
      allocate: (bytes, t) => {
        const [dva] = this.allocator.allocate(bytes, 1, t);
        assert(dva !== undefined);
        return dva;
      },
      free: (dva, t, birth) => this.allocator.free(dva, t, birth),
      freeBytes: () => this.allocator.freeBytes(),
    };
    this.dsl = new Dsl({
      poolName: this.name,
      mos: this.mos,
      store: this.store,
      clock: p.env.clock,
      random: p.env.random,
      checksumKind: this.checksumKind,
      host: {
        syncTask: (run) => this.syncTask(run),
        sync: () => this.sync(),
        availableBytes: () => this.availableBytes(),
        openLog: (obj) => this.openLog(obj),
        closeLog: (log) => this.closeLog(log),
        logHost: this.logHost,
      },
    });
  }

  /** The root dataset's object set (named like the pool). */
  get root(): ObjectSet {
    return this.dsl.rootObjset();
  }

  /** Creates a pool on fresh disks: labels, empty space maps, the MOS and the root dataset. */
  static async create(name: string, vdevSpecs: readonly (readonly LeafInput[])[], env: PoolEnv): Promise<Pool> {
    if (vdevSpecs.length === 0 || vdevSpecs.some((v) => v.length === 0)) {
      throw mpError('EINVAL', 'a pool needs at least one vdev, and each vdev at least one disk');
    }
    const poolGuid = newGuid(env.random);
    const vdevs = vdevSpecs.map(
      (leaves, index) =>
        new TopVdev({
          index,
          guid: newGuid(env.random),
          children: leaves.map((l) => ({ disk: l.disk, path: l.path, guid: newGuid(env.random) })),
        }),
    );
    const config: PoolConfig = {
      name,
      poolGuid,
      version: layout.version,
      txg: txg(0),
      vdevs: vdevs.map((v) => vdevConfigOf(v, MetaslabGroup.chooseShift(v.asizeBytes))),
    };
    await writeLabels(vdevs, config, { initialize: true });
    const groups = await Promise.all(vdevs.map((v, i) => MetaslabGroup.format(v, config.vdevs[i]?.metaslabShift ?? 0)));
    const allocator = new SpaceAllocator(groups);
    const s = storage(vdevs, allocator, env);
    const checksumKind = env.tuning?.checksumKind ?? FLETCHER4;
    const pool = new Pool({
      config,
      vdevs,
      allocator,
      ...s,
      mos: ObjectSet.create(s.store, 'MOS', ObjsetType.mos, checksumKind),
      uberblock: { txg: txg(0), poolGuid, timestampMs: env.clock.wallMs(), rootBp: HOLE, checkpointTxg: txg(0) },
      firstTxg: txg(1),
      env,
    });
    pool.txgs.start();
    await pool.syncTask(async (tx) => {
      await dmu.claimObject(pool.mos, tx, MOS_DIRECTORY, { type: ObjectType.zap, blockBytes: 16 * 1024, checksumKind });
      const dir = await Zap.create(await dmu.objectAccess(pool.mos, tx, MOS_DIRECTORY));
      await dir.setNumber(ROOT_DATASET_KEY, await pool.dsl.createRoot(tx));
    });
    return pool;
  }

  /** Opens the pool found on `leaves` at its newest valid uberblock (or the newest <= maxTxg). */
  static async import(leaves: readonly LeafInput[], env: PoolEnv, options: { maxTxg?: number } = {}): Promise<Pool> {
    const found = await readPool(
      leaves.map((l) => l.disk),
      options.maxTxg === undefined ? {} : { maxTxg: options.maxTxg },
    );
    const ub = found.uberblock;
    const groups = await Promise.all(
      found.vdevs.map((v, i) => MetaslabGroup.load(v, found.config.vdevs[i]?.metaslabShift ?? 0, ub.txg)),
    );
    const allocator = new SpaceAllocator(groups);
    const s = storage(found.vdevs, allocator, env);
    const mos = await ObjectSet.open(s.store, 'MOS', ub.rootBp);
    const dir = await Zap.open(await dmu.objectAccess(mos, null, MOS_DIRECTORY));
    const rootRecord = await dir.getNumber(ROOT_DATASET_KEY);
    if (rootRecord === undefined) throw mpError('EPROTO', 'pool directory has no root dataset', { pool: found.config.name });
    const pool = new Pool({
      config: found.config,
      vdevs: found.vdevs,
      allocator,
      ...s,
      mos,
      uberblock: ub,
      firstTxg: txg(Math.max(ub.txg, found.newestTxgOnDisk) + 1),
      env,
    });
    await pool.dsl.load(objectId(rootRecord));
    pool.txgs.start();
    try {
      // Synchronous writes acknowledged after the last durable txg come back now.
      if ((await pool.dsl.replayIntentLogs(() => pool.assign({ netFree: true }), ub.txg)) > 0 || pool.logs.size > 0) await pool.sync();
    } catch (e) {
      await pool.abandon();
      throw e;
    }
    return pool;
  }

  /**
   * A transaction in the open txg. ENOSPC when the pool is too full to take more data (pass
   * `netFree` for changes that only free space, which are always allowed).
   */
  async assign(options: { netFree?: boolean } = {}): Promise<TxHandle> {
    this.checkOpen();
    if (options.netFree !== true) {
      const slop = this.allocator.totalBytes() >> SLOP_SHIFT;
      if (this.allocator.freeBytes() - 2 * this.dsl.dirtyBytes() < slop) {
        throw mpError('ENOSPC', `pool ${this.name} is out of space`, { pool: this.name, freeBytes: this.allocator.freeBytes() });
      }
    }
    return this.txgs.assign();
  }

  /**
   * Opens the durable log in MOS object `obj` (see durable-log.ts); returns it with its live
   * records. The pool records its state every txg until it is closed.
   */
  async openLog(obj: ObjectId, options: { extentBytes?: number } = {}): Promise<{ log: DurableLog; records: LogRecord[] }> {
    this.checkOpen();
    for (const open of this.logs) {
      if (open.obj !== obj) continue;
      const records: LogRecord[] = [];
      for await (const r of open.iterate(0)) records.push(r);
      return { log: open, records };
    }
    // An extent is one contiguous allocation: at most a quarter of the smallest metaslab.
    const metaslabBytes = Math.min(...this.config.vdevs.map((v) => 2 ** v.metaslabShift));
    const extentBytes = options.extentBytes ?? this.env.tuning?.logExtentBytes ?? Math.min(LOG_EXTENT_BYTES_DEFAULT, metaslabBytes / 4);
    const opened = await DurableLog.open(this.logHost, obj, { extentBytes });
    this.logs.add(opened.log);
    return opened;
  }

  /** Stops recording a log's state (it was destroyed in syncing context). */
  closeLog(log: DurableLog): void {
    this.logs.delete(log);
  }

  /**
   * A pool-wide durable log named `name` (the cluster's replication log), created on first use;
   * its object is listed in the pool directory.
   */
  async namedLog(name: string): Promise<{ log: DurableLog; records: LogRecord[] }> {
    const key = `log:${name}`;
    const dir = await Zap.open(await dmu.objectAccess(this.mos, null, MOS_DIRECTORY));
    let obj = await dir.getNumber(key);
    if (obj === undefined) {
      await this.syncTask(async (tx) => {
        const d = await Zap.open(await dmu.objectAccess(this.mos, tx, MOS_DIRECTORY));
        if ((await d.getNumber(key)) !== undefined) return;
        await d.setNumber(key, await DurableLog.create(this.logHost, tx));
      });
      obj = await (await Zap.open(await dmu.objectAccess(this.mos, null, MOS_DIRECTORY))).getNumber(key);
    }
    assert(obj !== undefined);
    return this.openLog(objectId(obj));
  }

  /** Bytes new data may still take: free space less the slop and what dirty data will take. */
  availableBytes(): number {
    const slop = this.allocator.totalBytes() >> SLOP_SHIFT;
    return Math.max(0, this.allocator.freeBytes() - slop - this.dsl.dirtyBytes());
  }

  /** Runs `run` against the MOS in the next txg's sync; resolves once that txg is durable. */
  syncTask(run: (tx: dmu.Tx) => Promise<void>): Promise<void> {
    this.checkOpen();
    const done = new Promise<void>((resolve, reject) => {
      this.tasks.push({ run, done: (e) => (e === undefined ? resolve() : reject(e)) });
    });
    return this.txgs.sync().then(() => done);
  }

  /** Syncs everything written so far; resolves with the txg now durable. */
  sync(): Promise<Txg> {
    this.checkOpen();
    return this.txgs.sync();
  }

  get lastSyncedTxg(): Txg {
    return this.txgs.lastSyncedTxg;
  }

  get openTxg(): Txg {
    return this.txgs.openTxg;
  }

  get uberblock(): Uberblock {
    return this.ub;
  }

  /**
   * True while a checkpoint exists or its discard still runs: vdev attach/detach and reguid are
   * refused then (the checkpointed state must stay importable as it was).
   */
  checkpointHeld(): boolean {
    return this.ub.checkpointTxg !== 0;
  }

  /** offsetNext after syncing the object if it has unsynced changes (as ZFS does). */
  async offsetNext(os: ObjectSet, obj: ObjectId, offset: number, hole: boolean): Promise<number | null> {
    if (os.isDirty(obj)) await this.sync();
    return dmu.offsetNext(os, obj, offset, hole);
  }

  /** Syncs, stops the pipeline and closes the disks. */
  async export(): Promise<void> {
    this.checkOpen();
    try {
      await this.txgs.close();
    } finally {
      this.closed = true;
      await Promise.all([this.dsl.quiesce(), this.mos.quiesce(), ...[...this.logs].map((l) => l.quiesce())]);
      await Promise.all(this.vdevs.flatMap((v) => v.children.map((c) => c.disk.close())));
    }
  }

  /** Stops the pipeline without syncing or closing anything (a crash, for tests). */
  async abandon(): Promise<void> {
    this.closed = true;
    await this.txgs.abandon();
    await Promise.all([this.dsl.quiesce(), this.mos.quiesce(), ...[...this.logs].map((l) => l.quiesce())]);
  }

  private checkOpen(): void {
    if (this.closed) throw mpError('EINVAL', `pool ${this.name} is exported`, { pool: this.name });
  }

  private async syncTxg(t: Txg): Promise<void> {
    const tx = { txg: t };
    const tasks = this.tasks;
    this.tasks = [];
    await this.dsl.syncHeads(tx);
    const outcomes: (Error | undefined)[] = [];
    for (const task of tasks) {
      const outcome = await task.run(tx).then(() => undefined, (e: unknown) => (e instanceof Error ? e : new Error(String(e))));
      // A task refuses in its checks, before it changes anything; any other failure may leave it
      // half done, so this txg must not reach disk: the sync fails and the pool suspends.
      if (outcome !== undefined && !(outcome instanceof MirrorpoolError && TASK_REFUSALS.has(outcome.code))) throw outcome;
      outcomes.push(outcome);
    }
    // Datasets the tasks created start their object sets in this txg.
    await this.dsl.syncHeads(tx);
    for (const log of this.logs) await log.syncState(tx);
    if (this.mos.hasDirty(t)) {
      const mosRoot = await this.mos.syncTxg(t);
      await this.allocator.sync(t);
      await Promise.all(this.vdevs.map((v) => v.sync()));
      const ub: Uberblock = { txg: t, poolGuid: this.guid, timestampMs: this.env.clock.wallMs(), rootBp: mosRoot, checkpointTxg: this.ub.checkpointTxg };
      await writeUberblock(this.vdevs, ub);
      this.ub = ub;
    }
    this.dsl.txgSynced(t);
    for (const log of this.logs) log.txgSynced(t);
    this.allocator.syncDone(t);
    if (this.env.tuning?.checkEveryTxg === true) await this.checkInvariants();
    tasks.forEach((task, i) => task.done(outcomes[i]));
  }

  /**
   * Checks, with nothing dirty: the allocator's own invariants; every block reachable from the
   * uberblock verifies; no two live blocks overlap; allocated space equals the live blocks plus
   * frees still deferred; the DSL's figures and deadlists agree with the blocks (dsl.ts).
   * Snapshots, clones and heads share blocks: a block reached again is not counted twice, and
   * its subtree is not walked again.
   */
  async checkInvariants(): Promise<{ liveBytes: number; blocks: number }> {
    this.allocator.checkInvariants();
    const ranges: [number, number, number][] = [];
    const seen = new Set<string>();
    const logObjects: ObjectId[] = [];
    const keyOf = (bp: BlockPointer): string => bp.dvas.map((d) => `${d.vdev}:${d.offset}`).join(',');
    let liveBytes = 0;
    let blocks = 0;
    await traverseObjset(this.store, 'MOS', this.ub.rootBp, {
      block: ({ bp }) => {
        const key = keyOf(bp);
        if (seen.has(key)) return false;
        seen.add(key);
        blocks++;
        for (const dva of bp.dvas) {
          ranges.push([dva.vdev, dva.offset, dva.asize]);
          liveBytes += dva.asize;
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
      for (const dva of await logExtentRanges(this.mos, obj)) {
        ranges.push([dva.vdev, dva.offset, dva.asize]);
        liveBytes += dva.asize;
      }
    }
    ranges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    for (let i = 1; i < ranges.length; i++) {
      const [pv, po, ps] = ranges[i - 1] ?? [0, 0, 0];
      const [v, o] = ranges[i] ?? [0, 0, 0];
      assert(v !== pv || o >= po + ps, `block at vdev ${v} offset ${o} overlaps another live block`);
    }
    const expected = liveBytes + this.allocator.deferredBytes();
    assert(
      this.allocator.allocatedBytes() === expected,
      `allocated ${this.allocator.allocatedBytes()} != live ${liveBytes} + deferred ${this.allocator.deferredBytes()}`,
    );
    await this.dsl.checkInvariants((bp) => seen.has(keyOf(bp)));
    return { liveBytes, blocks };
  }

  status(): PoolStatus {
    return {
      name: this.name,
      guid: this.guid,
      state: this.txgs.failed() ? 'SUSPENDED' : this.vdevs.some((v) => v.children.some((c) => c.faulted)) ? 'DEGRADED' : 'ONLINE',
      txg: this.txgs.lastSyncedTxg,
      openTxg: this.txgs.openTxg,
      uberblockTxg: this.ub.txg,
      sizeBytes: this.allocator.totalBytes(),
      allocatedBytes: this.allocator.allocatedBytes(),
      freeBytes: this.allocator.freeBytes(),
      dirtyBytes: this.dsl.dirtyBytes(),
      vdevs: this.vdevs.map((v) => ({ ...v.stats(), ...this.allocator.vdevSpace(v.index) })),
      blocks: { ...this.blockIo.counters },
      cache: { ...this.cache.stats, bytes: this.cache.cachedBytes() },
      txgStats: { ...this.txgs.stats },
      checkpointTxg: this.ub.checkpointTxg,
    };
  }
}

export interface PoolStatus {
  name: string;
  guid: Guid;
  state: 'ONLINE' | 'DEGRADED' | 'SUSPENDED';
  txg: Txg;
  openTxg: Txg;
  uberblockTxg: Txg;
  sizeBytes: number;
  allocatedBytes: number;
  freeBytes: number;
  dirtyBytes: number;
  vdevs: unknown[];
  blocks: Record<string, number>;
  cache: Record<string, number>;
  txgStats: Record<string, number>;
  checkpointTxg: Txg;
}
