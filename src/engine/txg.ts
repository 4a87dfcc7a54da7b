// The txg pipeline of one pool. Transactions are assigned to the open txg and hold it open until
// they commit; a sync closes the open txg and waits for its holds to drain (quiescing: new
// transactions wait for that, then go to the next txg), then runs the pool's sync function for it
// (syncing) while the next txg fills. One txg syncs at a time, in order. Syncs start on demand,
// on a timer (Clock) and when dirty data passes a threshold; past the dirty limit, assign() waits
// for a sync (backpressure), so memory stays bounded. A failed sync suspends the pool: every
// later call fails with the same error until the pool is imported again.

import { assert, type Clock, mpError, MirrorpoolError } from '../lib/index.js';
import type { Tx } from './dmu.js';
import { type Txg, txg } from './types.js';

export interface TxHandle extends Tx {
  /** Ends the transaction: its txg may now close. Exactly once. */
  commit(): void;
}

export interface TxgOptions {
  /** The first txg to open (the imported uberblock's txg + 1). */
  firstTxg: Txg;
  clock: Clock;
  /** Writes txg t to disk and makes it durable. */
  syncTxg: (t: Txg) => Promise<void>;
  /** Dirty bytes held in memory now: of txg `t` only when given, else of every txg. */
  dirtyBytes: (t?: Txg) => number;
  /** Past this, assign() waits for a sync. */
  dirtyMaxBytes: number;
  /** Past this, a sync starts on its own. */
  dirtySyncBytes: number;
  /** A sync starts at least this often while anything is dirty (0: no timer). */
  timeoutMs: number;
}

export type TxgState = 'open' | 'quiescing' | 'syncing';

export class TxgManager {
  private readonly o: TxgOptions;
  private open: Txg;
  private synced: Txg;
  private readonly holds = new Map<Txg, number>();
  private readonly drained = new Map<Txg, () => void>();
  /** While the txg before the open one waits for its transactions to commit: resolves when they have. */
  private quiescing: Promise<void> | null = null;
  private chain: Promise<void> = Promise.resolve();
  private syncWaiters: (() => void)[] = [];
  /** The newest txg a dirty-bytes sync was started for (one kick per txg). */
  private kicked: Txg = txg(0);
  private failure: MirrorpoolError | null = null;
  private readonly stopTimer = new AbortController();
  private timerLoop: Promise<void> | null = null;
  readonly stats = { txgsSynced: 0, lastSyncMs: 0, totalSyncMs: 0, throttledAssigns: 0 };

  constructor(options: TxgOptions) {
    assert(options.firstTxg >= 1);
    assert(options.dirtySyncBytes <= options.dirtyMaxBytes);
    this.o = options;
    this.open = options.firstTxg;
    this.synced = txg(options.firstTxg - 1);
  }

  get openTxg(): Txg {
    return this.open;
  }

  get lastSyncedTxg(): Txg {
    return this.synced;
  }

  /** Starts the timer that syncs every timeoutMs. */
  start(): void {
    if (this.o.timeoutMs <= 0 || this.timerLoop !== null) return;
    this.timerLoop = this.runTimer();
  }

  private async runTimer(): Promise<void> {
    for (;;) {
      try {
        await this.o.clock.sleep(this.o.timeoutMs, this.stopTimer.signal);
      } catch (e) {
        if (e instanceof MirrorpoolError && e.code === 'ECANCELED') return;
        throw e;
      }
      if (this.failure !== null) return;
      if (this.o.dirtyBytes() > 0 || this.holds.size > 0) await this.sync().catch(() => undefined);
    }
  }

  /**
   * Assigns a transaction to the open txg, waiting first while dirty data is over the limit: for
   * the txg already syncing when there is one (the open txg keeps filling behind it), else for a
   * sync of the open txg. It also waits while the txg before the open one still has transactions
   * (quiescing): one of them could otherwise change an object set after this one had, and an
   * object set keeps its changes in one layer per txg, older txgs below newer ones (objset.ts).
   */
  async assign(): Promise<TxHandle> {
    this.throwIfFailed();
    let waited = false;
    for (;;) {
      if (this.o.dirtyBytes() > this.o.dirtyMaxBytes) {
        if (!waited) this.stats.throttledAssigns++;
        waited = true;
        if (this.synced < this.open - 1) await this.nextSync();
        else await this.sync();
      } else if (this.quiescing !== null) {
        await this.quiescing;
      } else {
        break;
      }
      this.throwIfFailed();
    }
    // Kick once per txg, and only when the open txg itself is past the threshold: the syncing
    // txg's bytes are already on their way out, and kicking on every assign while it syncs would
    // close a tiny txg (and pay its fsyncs) per transaction.
    const t = this.open;
    if (this.kicked < t && this.o.dirtyBytes(t) > this.o.dirtySyncBytes) {
      this.kicked = t;
      this.kick();
    }
    this.holds.set(t, (this.holds.get(t) ?? 0) + 1);
    let done = false;
    return {
      txg: t,
      commit: () => {
        assert(!done, 'transaction committed twice');
        done = true;
        this.release(t);
      },
    };
  }

  /** Syncs every txg up to and including the open one; resolves with the last synced txg. */
  async sync(): Promise<Txg> {
    this.throwIfFailed();
    const target = this.open;
    while (this.synced < target) {
      await this.syncOne();
      this.throwIfFailed();
    }
    return this.synced;
  }

  /** Stops the timer, syncs what is dirty; the manager is unusable afterwards. */
  async close(): Promise<void> {
    this.stopTimer.abort();
    await this.timerLoop;
    if (this.failure === null) await this.sync();
    this.failure ??= mpError('EINVAL', 'pool is closed');
  }

  /** Stops the timer without syncing (a crash, for tests); the manager is unusable afterwards. */
  async abandon(): Promise<void> {
    this.stopTimer.abort();
    await this.timerLoop;
    this.failure ??= mpError('EINVAL', 'pool is closed');
  }

  /** Whether a txg failed to sync (the pool is suspended). */
  failed(): boolean {
    return this.failure !== null && this.failure.message.startsWith('pool suspended');
  }

  /** Resolves after the next txg finishes syncing. */
  nextSync(): Promise<void> {
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  private kick(): void {
    void this.sync().catch(() => undefined);
  }

  private syncOne(): Promise<void> {
    const run = this.chain.then(async () => {
      if (this.failure !== null) return;
      const t = this.open;
      if (this.synced >= t) return;
      this.open = txg(t + 1); // quiescing: new transactions go to the next txg, once t drained
      this.quiescing = this.drain(t);
      await this.quiescing;
      this.quiescing = null;
      const start = this.o.clock.nowMs();
      try {
        await this.o.syncTxg(t);
      } catch (e) {
        this.failure = e instanceof MirrorpoolError ? e : mpError('EIO', `txg ${t} failed to sync`, { txg: t }, e);
        this.failure = mpError(this.failure.code, `pool suspended: txg ${t} failed to sync: ${this.failure.message}`, { txg: t });
      }
      const ms = this.o.clock.nowMs() - start;
      if (this.failure === null) {
        this.synced = t;
        this.stats.txgsSynced++;
        this.stats.lastSyncMs = ms;
        this.stats.totalSyncMs += ms;
      }
      const waiters = this.syncWaiters;
      this.syncWaiters = [];
      for (const w of waiters) w();
    });
    this.chain = run;
    return run;
  }

  private drain(t: Txg): Promise<void> {
    if ((this.holds.get(t) ?? 0) === 0) return Promise.resolve();
    return new Promise((resolve) => this.drained.set(t, resolve));
  }

  private release(t: Txg): void {
    const n = (this.holds.get(t) ?? 0) - 1;
    assert(n >= 0);
    if (n > 0) {
      this.holds.set(t, n);
      return;
    }
    this.holds.delete(t);
    const waiter = this.drained.get(t);
    this.drained.delete(t);
    waiter?.();
  }

  private throwIfFailed(): void {
    if (this.failure !== null) throw this.failure;
  }

  state(t: Txg): TxgState | 'synced' {
    if (t <= this.synced) return 'synced';
    if (t === this.open) return 'open';
    return (this.holds.get(t) ?? 0) > 0 ? 'quiescing' : 'syncing';
  }
}
