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
import { Checkpoint, type CheckpointRecord, type CheckpointStatus, DISCARD_ENTRY_MEMORY_BYTES, DISCARD_MEMORY_BYTES_DEFAULT } from './checkpoint.js';
import type { BlockStore } from './block-store.js';
import * as dmu from './dmu.js';
import { ObjectType } from './dnode.js';
import { type PoolConfig, type Uberblock, readPool, vdevConfigOf, writeLabels, writeUberblock } from './label.js';
import { MetaslabGroup } from './metaslab.js';
import { Dsl } from './dsl.js';
import { DurableLog, LOG_EXTENT_BYTES_DEFAULT, type LogHost, resetLogObject } from './durable-log.js';
import type { LogRecord } from './log-format.js';
import { ObjectSet, ObjsetType } from './objset.js';
import { PoolBlockStore } from './pool-block-store.js';
import { blockKey, walkPoolSpace } from './pool-walk.js';
import { type TxHandle, TxgManager } from './txg.js';
import { type BlockPointer, type Dva, type Guid, HOLE, type ObjectId, type Txg, layout, newGuid, objectId, txg } from './types.js';
import { TopVdev } from './vdev.js';
import { CONFIG_TXG_KEY, type LeafName, VdevAdmin } from './vdev-admin.js';
import { Zap } from './zap.js';

/** The default dirty limit (PoolTuning.dirtyMaxBytes). */
export const DIRTY_MAX_BYTES_DEFAULT = 64 * 1024 * 1024;

export interface PoolTuning {
  /** Sync at least this often while dirty (default 5000; 0 disables the timer). */
  txgTimeoutMs?: number;
  /**
   * Writers wait past this many dirty bytes (default 64 MiB). Dirty data lives in buffers that are
   * reused once their txg is on disk, so this bounds the fresh memory a long write touches, which
   * on the VMs this runs on costs more than the write: a 1 GiB receive took a fifth less time
   * with 64 MiB than with 256 MiB.
   */
  dirtyMaxBytes?: number;
  /** A sync starts past this many dirty bytes (default a quarter of dirtyMaxBytes). */
  dirtySyncBytes?: number;
  /** Block cache size (default 64 MiB). */
  cacheBytes?: number;
  /** Default checksum for new objects (lib ChecksumKind id; default fletcher-4). */
  checksumKind?: number;
  /** Bytes of each intent log extent (default 1 MiB). */
  logExtentBytes?: number;
  /** Memory one checkpoint discard step may use for the entries it reads (default 16 MiB). */
  checkpointDiscardMemoryBytes?: number;
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

const REWOUND_FROM_KEY = 'rewound_from_txg';

/** Codes a sync task raises when its checks refuse the change (nothing changed). */
const TASK_REFUSALS: ReadonlySet<string> = new Set(['EINVAL', 'ENOENT', 'EEXIST', 'EBUSY', 'EROFS', 'ENOSPC', 'ENOTSUP']);

interface SyncTask {
  /** Runs at the very start of the txg's sync, before any object set writes (and frees). */
  readonly prepare?: () => void;
  readonly run: (tx: dmu.Tx) => Promise<void>;
  /** Called with the task's outcome once it has run and the datasets it created are set up. */
  readonly ran?: (e?: Error) => void;
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
  readonly checkpoint: Checkpoint;
  readonly uberblock: Uberblock;
  readonly firstTxg: Txg;
  readonly env: PoolEnv;
}

/**
 * The txg of the last config the pool recorded as its own, read from the MOS at `root`: undefined
 * for a pool made before pools recorded it at creation and that has had no config change since.
 */
async function configTxgOf(store: BlockStore, root: BlockPointer): Promise<number | undefined> {
  const mos = await ObjectSet.open(store, 'MOS', root);
  const dir = await Zap.open(await dmu.objectAccess(mos, null, MOS_DIRECTORY));
  return dir.getNumber(CONFIG_TXG_KEY);
}

/** MOS sync passes in one txg: retained frees the MOS sync itself makes are recorded by another. */
const MOS_PASSES_MAX = 4;

function storage(vdevs: readonly TopVdev[], allocator: SpaceAllocator, env: PoolEnv): Pick<PoolParts, 'io' | 'cache' | 'store'> {
  const io = new BlockIo(vdevs);
  const cache = new BlockCache(env.tuning?.cacheBytes ?? 64 * 1024 * 1024);
  return { io, cache, store: new PoolBlockStore(io, allocator, cache) };
}

export class Pool {
  readonly name: string;
  /** Changed only by reguid (vdev-admin.ts). */
  guid: Guid;
  /** Replaced only by vdev administration (vdev-admin.ts). */
  config: PoolConfig;
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
  private readonly cp: Checkpoint;
  /** The background checkpoint discard, while it runs. */
  private discarding: Promise<void> | null = null;
  private discardStop = false;
  private discardError: Error | null = null;

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
    this.cp = p.checkpoint;
    this.env = p.env;
    const t = p.env.tuning ?? {};
    this.checksumKind = t.checksumKind ?? FLETCHER4;
    const dirtyMaxBytes = t.dirtyMaxBytes ?? DIRTY_MAX_BYTES_DEFAULT;
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
        syncTaskRun: (run) => this.syncTaskRun(run),
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
    const mos = ObjectSet.create(s.store, 'MOS', ObjsetType.mos, checksumKind);
    const pool = new Pool({
      config,
      vdevs,
      allocator,
      ...s,
      mos,
      checkpoint: Checkpoint.empty(mos, MOS_DIRECTORY),
      uberblock: { txg: txg(0), poolGuid, timestampMs: env.clock.wallMs(), rootBp: HOLE, checkpointTxg: txg(0) },
      firstTxg: txg(1),
      env,
    });
    pool.txgs.start();
    await pool.syncTask(async (tx) => {
      await dmu.claimObject(pool.mos, tx, MOS_DIRECTORY, { type: ObjectType.zap, blockBytes: 16 * 1024, checksumKind });
      const dir = await Zap.create(await dmu.objectAccess(pool.mos, tx, MOS_DIRECTORY));
      await dir.setNumber(ROOT_DATASET_KEY, await pool.dsl.createRoot(tx));
      // The labels' config is the pool's from the start (import compares the two: Pool.import).
      await dir.setNumber(CONFIG_TXG_KEY, config.txg);
    });
    return pool;
  }

  /**
   * Opens the pool found on `leaves` at its newest valid uberblock (or the newest <= maxTxg).
   * With `rewindToCheckpoint` the checkpointed state becomes current and every later change is
   * gone, intent-log records included (ENOENT when there is no checkpoint): the space the later
   * state held is freed in the first txg, whose uberblock makes the rewind durable — a crash
   * before it leaves the pool as it was, checkpoint included. Intent logs are replayed, and what
   * a receive cut short by a crash or a kill left is destroyed (Dsl.dropAbandonedReceives).
   */
  static async import(leaves: readonly LeafInput[], env: PoolEnv, options: { maxTxg?: number; rewindToCheckpoint?: boolean } = {}): Promise<Pool> {
    return Pool.importFrom(leaves, env, options);
  }

  /** import(), ignoring label configs at or past `configsBefore` (a config change that never landed). */
  private static async importFrom(
    leaves: readonly LeafInput[],
    env: PoolEnv,
    options: { maxTxg?: number; rewindToCheckpoint?: boolean },
    configsBefore?: Txg,
  ): Promise<Pool> {
    const found = await readPool(leaves.map((l) => l.disk), {
      ...(options.maxTxg === undefined ? {} : { maxTxg: options.maxTxg }),
      ...(configsBefore === undefined ? {} : { configsBefore }),
    });
    let ub = found.uberblock;
    const groups = await Promise.all(
      found.vdevs.map((v, i) => MetaslabGroup.load(v, found.config.vdevs[i]?.metaslabShift ?? 0, ub.txg)),
    );
    const allocator = new SpaceAllocator(groups);
    const s = storage(found.vdevs, allocator, env);
    // The config the pool last recorded as its own; null when it cannot be read under this
    // config (a coded error: the checks below then take the labels' word).
    const recorded = await configTxgOf(s.store, ub.rootBp).catch((e: unknown) => {
      if (e instanceof MirrorpoolError) return null;
      throw e;
    });
    const passedOver = found.passedOver;
    // Txgs at or past a passed-over config (it names a missing disk): if the pool recorded it,
    // the change landed and the disk is missing.
    if (passedOver !== null && ub.txg >= passedOver.txg && (recorded === null || (recorded ?? 0) >= passedOver.txg)) throw passedOver.missing;
    // A config newer than the pool's record that txgs were written past never landed: a crash
    // cut the change after some labels took it (attach writes the new child's labels first),
    // and the pool then ran without it, from disks that did not show it. It is passed over
    // as well: the new child missed every write since and would be a stale copy.
    const cfgTxg = found.config.txg;
    if (passedOver === null && typeof recorded === 'number' && cfgTxg > recorded && ub.txg >= cfgTxg) {
      return Pool.importFrom(leaves, env, options, cfgTxg);
    }
    // Labels to rewrite before any new uberblock: a passed-over config must become older than
    // the labels, and a config newer than every txg (a change cut after its labels, before its
    // uberblock) becomes the pool's record, so that it is not passed over once txgs pass it.
    const relabel = passedOver !== null || configsBefore !== undefined || (typeof recorded === 'number' && cfgTxg > recorded);
    let mos = await ObjectSet.open(s.store, 'MOS', ub.rootBp);
    let checkpoint = await Checkpoint.load(mos, MOS_DIRECTORY);
    let rewind: { frees: Dva[]; logObjects: ObjectId[] } | null = null;
    if (options.rewindToCheckpoint === true) {
      const rec = checkpoint.record;
      if (rec === null) {
        const why = checkpoint.state === 'discarding' ? 'its checkpoint is being discarded' : 'it has no checkpoint';
        throw mpError('ENOENT', `pool ${found.config.name} cannot be rewound: ${why}`, { pool: found.config.name });
      }
      mos = await ObjectSet.open(s.store, 'MOS', rec.rootBp);
      rewind = await rewindPlan(s.store, mos, rec, allocator);
      checkpoint = await Checkpoint.load(mos, MOS_DIRECTORY);
      if (checkpoint.state !== 'none') throw mpError('EPROTO', 'the checkpointed state has a checkpoint of its own', { checkpointTxg: rec.txg });
      ub = { ...ub, rootBp: rec.rootBp, checkpointTxg: txg(0) };
    }
    const dir = await Zap.open(await dmu.objectAccess(mos, null, MOS_DIRECTORY));
    const rootRecord = await dir.getNumber(ROOT_DATASET_KEY);
    if (rootRecord === undefined) throw mpError('EPROTO', 'pool directory has no root dataset', { pool: found.config.name });
    const pool = new Pool({
      config: found.config,
      vdevs: found.vdevs,
      allocator,
      ...s,
      mos,
      checkpoint,
      uberblock: ub,
      firstTxg: txg(Math.max(ub.txg, found.newestTxgOnDisk) + 1),
      env,
    });
    if (checkpoint.record !== null) allocator.retainBornUpTo(checkpoint.record.txg);
    await pool.dsl.load(objectId(rootRecord));
    pool.txgs.start();
    try {
      if (relabel) await pool.vdevAdmin().relabel();
      if (rewind !== null) {
        await pool.finishRewind(rewind.frees, rewind.logObjects, found.uberblock.txg);
      } else if ((await pool.dsl.replayIntentLogs(() => pool.assign({ netFree: true }), ub.txg)) > 0 || pool.logs.size > 0) {
        // Synchronous writes acknowledged after the last durable txg come back now.
        await pool.sync();
      }
      await pool.dsl.dropAbandonedReceives();
    } catch (e) {
      await pool.abandon();
      throw e;
    }
    if (pool.cp.state === 'discarding') pool.startDiscard();
    return pool;
  }

  /**
   * The rewind txg: frees what the later state held, empties every intent log (their records
   * are later than the checkpoint, or covered by it) and notes the txg rewound from.
   */
  private async finishRewind(frees: readonly Dva[], logObjects: readonly ObjectId[], fromTxg: Txg): Promise<void> {
    await this.syncTask(async (tx) => {
      for (const dva of frees) this.allocator.free(dva, tx.txg, txg(0));
      for (const obj of logObjects) await resetLogObject(this.mos, tx, obj, this.env.random);
      const dir = await Zap.open(await dmu.objectAccess(this.mos, tx, MOS_DIRECTORY));
      await dir.setNumber(REWOUND_FROM_KEY, fromTxg);
    });
  }

  // --- checkpoint (checkpoint.ts) ---

  /**
   * Takes a checkpoint: syncs the open txg, then records its uberblock in the MOS. From the next
   * txg on, no block that uberblock reaches is reused until the checkpoint is discarded.
   * EEXIST when one exists, EBUSY while the last one is being discarded.
   */
  async checkpoint(): Promise<CheckpointRecord> {
    this.checkOpen();
    this.cp.checkNone();
    await this.sync();
    let rec: CheckpointRecord | undefined;
    await this.syncTask(
      async (tx) => {
        rec = await this.cp.create(tx, this.ub, this.env.clock);
      },
      () => {
        // Retention starts before this txg frees anything: the uberblock being checkpointed
        // is the newest durable one, so every free from here on may concern it.
        if (this.cp.state === 'none') this.allocator.retainBornUpTo(this.ub.txg);
      },
    );
    assert(rec !== undefined);
    return rec;
  }

  /**
   * Discards the checkpoint: its uberblock goes in one txg (after which rewinding is no longer
   * possible), then a background task gives its space back in bounded chunks, one txg each.
   * ENOENT without a checkpoint, EBUSY while a discard runs.
   */
  async discardCheckpoint(): Promise<void> {
    this.checkOpen();
    await this.syncTask(async (tx) => {
      this.cp.checkActive();
      // Frees this txg retained so far stay with the checkpoint's lists; later ones are plain.
      await this.cp.retain(tx, this.allocator.takeRetained());
      this.allocator.retainBornUpTo(0);
      await this.cp.beginDiscard(tx);
    });
    this.startDiscard();
  }

  checkpointStatus(): CheckpointStatus & { discardError: string | null } {
    return { ...this.cp.status(), discardError: this.discardError?.message ?? null };
  }

  /** Resolves when no discard is running (the one running has finished or stopped). */
  async checkpointDiscardDone(): Promise<void> {
    while (this.discarding !== null) await this.discarding;
  }

  private startDiscard(): void {
    if (this.discarding !== null || this.cp.state !== 'discarding') return;
    this.discardStop = false;
    this.discardError = null;
    this.discarding = this.runDiscard().finally(() => {
      this.discarding = null;
    });
  }

  private async runDiscard(): Promise<void> {
    const memory = this.env.tuning?.checkpointDiscardMemoryBytes ?? DISCARD_MEMORY_BYTES_DEFAULT;
    const maxEntries = Math.max(1, Math.floor(memory / DISCARD_ENTRY_MEMORY_BYTES));
    try {
      while (!this.discardStop && !this.closed && this.cp.state === 'discarding') {
        const chunk = await this.cp.nextChunk(maxEntries);
        await this.syncTask((tx) => this.cp.discardStep(tx, chunk, (dva) => this.allocator.free(dva, tx.txg, txg(0))));
      }
    } catch (e) {
      // An exported or crashed pool stops here; the next import resumes the discard.
      if (!this.closed && !this.discardStop) this.discardError = e instanceof Error ? e : new Error(String(e));
    }
  }

  private async stopDiscard(): Promise<void> {
    this.discardStop = true;
    await this.checkpointDiscardDone();
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

  /**
   * Runs `run` against the MOS in the next txg's sync; resolves once that txg is durable.
   * `prepare` runs at the start of that sync, before anything in it writes or frees.
   */
  syncTask(run: (tx: dmu.Tx) => Promise<void>, prepare?: () => void): Promise<void> {
    this.checkOpen();
    const done = new Promise<void>((resolve, reject) => {
      this.tasks.push({ run, ...(prepare === undefined ? {} : { prepare }), done: (e) => (e === undefined ? resolve() : reject(e)) });
    });
    return this.txgs.sync().then(() => done);
  }

  /**
   * Like syncTask, but resolves once `run` has run in its txg's sync and the datasets it created
   * have their object sets, while the rest of that txg is still on its way to disk. Only for a
   * change nobody is told of until a later txg is durable (txgs reach disk in order): a
   * receive's temporary dataset, which the receive fills while the txg that made it syncs. If
   * that txg then fails, the pool suspends and the filling fails with it.
   */
  syncTaskRun(run: (tx: dmu.Tx) => Promise<void>): Promise<void> {
    this.checkOpen();
    const ran = new Promise<void>((resolve, reject) => {
      this.tasks.push({ run, ran: (e) => (e === undefined ? resolve() : reject(e)), done: () => undefined });
    });
    // A txg that fails before the task runs never calls `ran`: its failure settles the race.
    const synced = this.txgs.sync().then(() => ran);
    synced.catch(() => undefined); // once `ran` settled, a later failure is the pool's to report
    return Promise.race([ran, synced]);
  }

  /**
   * Whether a sync would make anything durable that is not yet: a dataset changed in a txg not
   * yet synced, a sync task waiting, or a txg on its way to disk (its datasets are written
   * before its uberblock). False means every change made so far is on disk.
   */
  hasUnsyncedChanges(): boolean {
    return this.tasks.length > 0 || this.dsl.hasUnsynced() || this.txgs.lastSyncedTxg + 1 < this.txgs.openTxg;
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
    return this.cp.state !== 'none';
  }

  /** offsetNext after syncing the object if it has unsynced changes (as ZFS does). */
  async offsetNext(os: ObjectSet, obj: ObjectId, offset: number, hole: boolean): Promise<number | null> {
    if (os.isDirty(obj)) await this.sync();
    return dmu.offsetNext(os, obj, offset, hole);
  }

  /** Syncs, stops the pipeline and closes the disks. */
  async export(): Promise<void> {
    this.checkOpen();
    await this.stopDiscard();
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
    await this.stopDiscard();
    await Promise.all([this.dsl.quiesce(), this.mos.quiesce(), ...[...this.logs].map((l) => l.quiesce())]);
  }

  private checkOpen(): void {
    if (this.closed) throw mpError('EINVAL', `pool ${this.name} is exported`, { pool: this.name });
  }

  private async syncTxg(t: Txg): Promise<void> {
    const tx = { txg: t };
    const tasks = this.tasks;
    this.tasks = [];
    for (const task of tasks) task.prepare?.();
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
    tasks.forEach((task, i) => task.ran?.(outcomes[i]));
    for (const log of this.logs) await log.syncState(tx);
    if (this.mos.hasDirty(t)) {
      // Space a checkpoint retains is listed in the same txg. Writing the MOS frees (and so may
      // retain) MOS blocks, whose listing dirties the MOS again: a later pass rewrites only
      // blocks born in this txg or in the lists, so the passes end.
      let mosRoot = this.mos.rootPointer();
      for (let pass = 1; this.mos.hasDirty(t); pass++) {
        assert(pass <= MOS_PASSES_MAX, `txg ${t}: the MOS still changes after ${MOS_PASSES_MAX} passes`);
        await this.cp.retain(tx, this.allocator.takeRetained());
        mosRoot = await this.mos.syncTxg(t);
        await this.cp.retain(tx, this.allocator.takeRetained());
      }
      await this.allocator.sync(t);
      await Promise.all(this.vdevs.map((v) => v.sync()));
      const ub: Uberblock = {
        txg: t, poolGuid: this.guid, timestampMs: this.env.clock.wallMs(), rootBp: mosRoot, checkpointTxg: this.cp.record?.txg ?? txg(0),
      };
      await writeUberblock(this.vdevs, ub);
      this.ub = ub;
    }
    assert(this.allocator.takeRetained().length === 0, `txg ${t} retained space it did not list`);
    this.dsl.txgSynced(t);
    for (const log of this.logs) log.txgSynced(t);
    this.allocator.syncDone(t);
    if (this.env.tuning?.checkEveryTxg === true) await this.checkInvariants();
    tasks.forEach((task, i) => task.done(outcomes[i]));
  }

  // --- vdev administration (vdev-admin.ts) ---

  /** Adds a top-level vdev: one leaf is a plain disk, several a mirror. Allowed with a checkpoint. */
  addVdev(leaves: readonly LeafInput[]): Promise<void> {
    this.checkOpen();
    return this.vdevAdmin().addVdev(leaves);
  }

  /** Attaches `leaf` to the vdev of `existing` (a path or guid): a disk becomes a mirror. EBUSY with a checkpoint. */
  attach(existing: LeafName, leaf: LeafInput): Promise<void> {
    this.checkOpen();
    return this.vdevAdmin().attach(existing, leaf);
  }

  /** Detaches a mirror child (a path or guid) and closes its disk. EBUSY with a checkpoint. */
  detach(leaf: LeafName): Promise<void> {
    this.checkOpen();
    return this.vdevAdmin().detach(leaf);
  }

  /** Gives the pool a new random guid; resolves with it. EBUSY with a checkpoint. */
  reguid(): Promise<Guid> {
    this.checkOpen();
    return this.vdevAdmin().reguid();
  }

  private admin: VdevAdmin | undefined;

  private vdevAdmin(): VdevAdmin {
    this.admin ??= new VdevAdmin({
      name: this.name,
      random: this.env.random,
      // The same array the block layer and the logs hold: a vdev added is seen by all of them.
      vdevs: this.vdevs as TopVdev[],
      allocator: this.allocator,
      config: () => this.config,
      setConfig: (c) => {
        this.config = c;
        this.guid = c.poolGuid;
      },
      checkpointHeld: () => this.checkpointHeld(),
      syncTask: (run) => this.syncTask(run),
      recordConfigTxg: async (tx) => {
        const dir = await Zap.open(await dmu.objectAccess(this.mos, tx, MOS_DIRECTORY));
        await dir.setNumber(CONFIG_TXG_KEY, tx.txg);
      },
    });
    return this.admin;
  }

  /**
   * Checks, with nothing dirty: the allocator's own invariants; every block reachable from the
   * uberblock — and from the checkpointed one — verifies; no two live blocks overlap; allocated
   * space equals the live blocks of both states, plus frees still deferred, plus (while a
   * discard runs) what the checkpoint lists still hold; with a checkpoint, its lists hold
   * exactly the blocks only the checkpointed state reaches (so none of them was reused); the
   * DSL's figures and deadlists agree with the blocks (dsl.ts).
   */
  async checkInvariants(): Promise<{ liveBytes: number; blocks: number }> {
    this.allocator.checkInvariants();
    const seen = new Set<string>();
    const current = await walkPoolSpace(this.store, this.mos, this.ub.rootBp, seen);
    const ranges = [...current.ranges];
    const live = new Set(seen);
    const listed = await this.cp.allEntries();
    const rec = this.cp.record;
    let heldBytes = 0;
    if (rec !== null) {
      const only = await walkPoolSpace(this.store, await ObjectSet.open(this.store, 'MOS', rec.rootBp), rec.rootBp, seen);
      const key = (d: Dva): string => `${d.vdev}:${d.offset}:${d.asize}`;
      const onlyKeys = new Set(only.ranges.map(key));
      assert(listed.length === only.ranges.length && listed.every((d) => onlyKeys.has(key(d))), `checkpoint lists ${listed.length} ranges, but ${only.ranges.length} blocks are reached only from the checkpoint`);
      ranges.push(...only.ranges);
      heldBytes = only.bytes;
    } else {
      ranges.push(...listed);
      heldBytes = listed.reduce((sum, d) => sum + d.asize, 0);
    }
    assert(heldBytes === this.cp.heldBytes(), `checkpoint holds ${heldBytes} bytes but counts ${this.cp.heldBytes()}`);
    ranges.sort((a, b) => a.vdev - b.vdev || a.offset - b.offset);
    for (let i = 1; i < ranges.length; i++) {
      const p = ranges[i - 1] as Dva;
      const r = ranges[i] as Dva;
      assert(r.vdev !== p.vdev || r.offset >= p.offset + p.asize, `block at vdev ${r.vdev} offset ${r.offset} overlaps another live block`);
    }
    const expected = current.bytes + heldBytes + this.allocator.deferredBytes();
    assert(
      this.allocator.allocatedBytes() === expected,
      `allocated ${this.allocator.allocatedBytes()} != live ${current.bytes} + checkpoint ${heldBytes} + deferred ${this.allocator.deferredBytes()}`,
    );
    await this.dsl.checkInvariants((bp) => live.has(blockKey(bp)));
    return { liveBytes: current.bytes, blocks: current.blocks };
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
      checkpoint: this.checkpointStatus(),
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
  checkpoint: CheckpointStatus & { discardError: string | null };
}

/**
 * What a rewind frees: every range allocated now that the checkpointed state does not reach
 * (EPROTO when the checkpointed state reaches space that is not allocated: the checkpoint was
 * not kept), and the intent logs of the checkpointed state.
 */
async function rewindPlan(store: BlockStore, cpMos: ObjectSet, rec: CheckpointRecord, allocator: SpaceAllocator): Promise<{ frees: Dva[]; logObjects: ObjectId[] }> {
  const keep = await walkPoolSpace(store, cpMos, rec.rootBp, new Set());
  const frees: Dva[] = [];
  const byVdev = new Map<number, Dva[]>();
  for (const d of keep.ranges) byVdev.set(d.vdev, [...(byVdev.get(d.vdev) ?? []), d]);
  for (const space of allocator.vdevSpaces()) {
    const group = allocator.group(space.vdev);
    const kept = byVdev.get(space.vdev) ?? [];
    byVdev.delete(space.vdev);
    frees.push(...group.allocatedExcept(kept).map((r) => ({ vdev: space.vdev, offset: r.start, asize: r.size })));
  }
  if (byVdev.size > 0) throw mpError('EPROTO', `the checkpointed state uses vdevs the pool does not have: ${[...byVdev.keys()].join(', ')}`, { checkpointTxg: rec.txg });
  return { frees, logObjects: keep.logObjects };
}
