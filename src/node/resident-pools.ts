// Pools a long-running process keeps imported between commands. The node daemon installs one
// registry per process (ResidentPools.install); withPool (pool-open.ts) then hands every command
// whose --home is the registry's to use() instead of importing and exporting the pool itself, and
// the pool administration paths (pool-admin.ts, pool-debug.ts) evict a pool through
// withPoolClosed before they open its vdevs directly, and reopen it afterwards.
// Invariants:
// - a pool is open at most once: one import in flight per name, shared by concurrent first users;
//   an open pool holds its vdev lock (a second opener, in this process or another, gets EBUSY);
// - each pool has a Gate: use() holds it shared (commands run concurrently, the engine takes
//   concurrent transactions), evict() and withEvicted() exclusive, so an export never runs under a
//   command and commands arriving meanwhile wait for it;
// - use() returns only once what its function changed is durable (a txg sync, as the export of
//   the per-command path made it); after a failure the pool stays open unless it is broken (EIO,
//   or suspended by a failed sync), and then it is evicted;
// - every path that closes a pool closes its disks and releases its lock, whatever export did;
// - after close() starts no pool opens again; close() uninstalls the registry.

import { resolve } from 'node:path';
import { Pool, type PoolEnv } from '../engine/index.js';
import { FileDisk, Gate, MirrorpoolError, assert, hasCode, mpError } from '../lib/index.js';
import { type CachedPool, PoolCache } from './pool-cache.js';
import type { OpenLeaf } from './pool-open.js';
import { VdevLock } from './vdev-lock.js';

/** What a command runs on an open pool: its cache entry and the leaves it was opened from. */
export type PoolUser<T> = (pool: Pool, entry: CachedPool, leaves: readonly OpenLeaf[]) => Promise<T>;

export interface OpenAllResult {
  readonly opened: string[];
  readonly failures: { pool: string; error: MirrorpoolError }[];
}

interface OpenPool {
  readonly pool: Pool;
  readonly entry: CachedPool;
  readonly leaves: readonly OpenLeaf[];
  readonly lock: VdevLock;
}

interface Slot {
  readonly gate: Gate;
  open: OpenPool | null;
  /** The import in flight, awaited by every user that arrived before it finished. */
  opening: Promise<OpenPool> | null;
  /** Calls running on the slot or waiting at its gate; a closed slot without any is dropped. */
  holders: number;
}

type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown; broken: boolean };

let installed: ResidentPools | undefined;

/** ESTALE when the pool on a cached pool's vdevs is not the one the cache names. */
export function checkCachedGuid(pool: Pool, cachedGuid: string): void {
  if (pool.guid.toString() === cachedGuid) return;
  throw mpError('ESTALE', `the vdevs of pool '${pool.name}' hold pool guid ${pool.guid}, the cache says ${cachedGuid}`, {
    pool: pool.name,
    guid: pool.guid.toString(),
    cachedGuid,
  });
}

/** Exports a pool after a failure; the failure that led here is the one reported. */
export async function exportAfterFailure(pool: Pool): Promise<void> {
  try {
    await pool.export();
  } catch (e) {
    if (!(e instanceof MirrorpoolError)) throw e;
    // The disks are closed by whoever opened them; the first failure is what the caller sees.
  }
}

/** A pool a command leaves unable to sync, or that reported a device error, is not kept open. */
function isBroken(pool: Pool, error: unknown): boolean {
  return hasCode(error, 'EIO') || pool.status().state === 'SUSPENDED';
}

export class ResidentPools {
  private readonly slots = new Map<string, Slot>();
  private closing = false;

  private constructor(
    /** The home folder (resolved) whose pool cache names the pools. */
    readonly home: string,
    private readonly env: PoolEnv,
  ) {}

  /** Installs the registry of this process for `home`; one at a time (close() uninstalls it). */
  static install(home: string, env: PoolEnv): ResidentPools {
    assert(installed === undefined, `resident pools are already installed for ${installed?.home}`);
    installed = new ResidentPools(resolve(home), env);
    return installed;
  }

  /**
   * The installed registry when `home` resolves to its folder. Another spelling of the folder
   * through a symlink is not recognised: that command opens the pool itself and the vdev lock
   * refuses it (EBUSY), so nothing is opened twice.
   */
  static current(home: string): ResidentPools | undefined {
    return installed !== undefined && installed.home === resolve(home) ? installed : undefined;
  }

  /** Imports every pool of the cache; one that fails is reported and does not stop the others. */
  async openAll(): Promise<OpenAllResult> {
    const opened: string[] = [];
    const failures: { pool: string; error: MirrorpoolError }[] = [];
    for (const entry of await new PoolCache(this.home).list()) {
      try {
        await this.held(entry.name, (slot) => slot.gate.withShared(() => this.opened(entry.name, slot)));
        opened.push(entry.name);
      } catch (e) {
        if (!(e instanceof MirrorpoolError)) throw e;
        failures.push({ pool: entry.name, error: e });
      }
    }
    return { opened, failures };
  }

  /**
   * Runs `fn` on pool `name`, importing it on first use and keeping it open; then syncs, so what
   * `fn` changed is durable when this resolves. ENOENT: not in the cache; EBUSY: another process
   * holds its vdevs; ECANCELED: the registry is closing.
   */
  async use<T>(name: string, fn: PoolUser<T>): Promise<T> {
    const outcome = await this.held(name, (slot) => slot.gate.withShared(() => this.runUser(name, slot, fn)));
    if (outcome.ok) return outcome.value;
    if (outcome.broken) await this.evictAfterFailure(name);
    throw outcome.error;
  }

  /**
   * Waits for the users of pool `name` to finish (new ones wait meanwhile), exports it and
   * releases its vdev lock. A no-op when it is not open. An export that fails still closes the
   * disks and releases the lock, and its error is thrown.
   */
  async evict(name: string): Promise<void> {
    await this.held(name, (slot) => slot.gate.withExclusive(() => this.closeSlot(slot)));
  }

  /**
   * Evicts pool `name` and runs `fn` while no command can open it (the pool administration
   * paths, which lock and import the vdevs themselves). With `reopen` the pool is imported again
   * afterwards, from the cache as `fn` left it, whether `fn` succeeded or not; a pool that does
   * not import then stays closed, and the next command that uses it reports why.
   */
  async withEvicted<T>(name: string, fn: () => Promise<T>, o: { reopen: boolean }): Promise<T> {
    return this.held(name, (slot) =>
      slot.gate.withExclusive(async () => {
        try {
          await this.closeSlot(slot);
          return await fn();
        } finally {
          if (o.reopen) await this.reopen(name, slot);
        }
      }),
    );
  }

  /** Evicts every pool (each export syncs it) and uninstalls the registry; the first failure is thrown. */
  async close(): Promise<void> {
    this.closing = true;
    let failure: MirrorpoolError | null = null;
    try {
      for (const name of [...this.slots.keys()]) {
        try {
          await this.evict(name);
        } catch (e) {
          if (!(e instanceof MirrorpoolError)) throw e;
          failure ??= mpError(e.code, `pool ${name}: ${e.message}`, e.details, e);
        }
      }
    } finally {
      if (installed === this) installed = undefined;
    }
    if (failure !== null) throw failure;
  }

  /** The open pools, by name. */
  list(): readonly { name: string; pool: Pool }[] {
    const open = [...this.slots].flatMap(([name, slot]) => (slot.open === null ? [] : [{ name, pool: slot.open.pool }]));
    return open.sort((a, b) => a.name.localeCompare(b.name));
  }

  private async runUser<T>(name: string, slot: Slot, fn: PoolUser<T>): Promise<Outcome<T>> {
    const { pool, entry, leaves } = await this.opened(name, slot);
    try {
      const value = await fn(pool, entry, leaves);
      // Durable before the answer, as the per-command export was; a read-only command costs no txg.
      if (pool.hasUnsyncedChanges()) await pool.sync();
      return { ok: true, value };
    } catch (error) {
      // As the per-command export did: what the command changed before it failed is made durable.
      await syncAfterFailure(pool);
      return { ok: false, error, broken: isBroken(pool, error) };
    }
  }

  /** The open pool of `slot`, importing it when it is not open. Call only with the slot's gate held. */
  private opened(name: string, slot: Slot): Promise<OpenPool> {
    if (slot.open !== null) return Promise.resolve(slot.open);
    if (this.closing) return Promise.reject(mpError('ECANCELED', `pool ${name}: the resident pools are shutting down`, { pool: name }));
    slot.opening ??= this.importCached(name).then(
      (open) => {
        slot.open = open;
        slot.opening = null;
        return open;
      },
      (e: unknown) => {
        slot.opening = null;
        throw e;
      },
    );
    return slot.opening;
  }

  /** Locks, opens and imports the cached pool `name`; on failure nothing stays open or locked. */
  private async importCached(name: string): Promise<OpenPool> {
    const entry = await new PoolCache(this.home).get(name);
    const lock = await VdevLock.acquire(entry.vdevs);
    const leaves: OpenLeaf[] = [];
    let pool: Pool | null = null;
    try {
      for (const path of entry.vdevs) leaves.push({ disk: await FileDisk.open(path), path: resolve(path) });
      pool = await Pool.import(leaves, this.env);
      checkCachedGuid(pool, entry.guid);
      return { pool, entry, leaves, lock };
    } catch (e) {
      if (pool !== null) await exportAfterFailure(pool);
      await Promise.all(leaves.map((l) => l.disk.close()));
      await lock.release();
      throw e;
    }
  }

  /** Exports the pool of `slot` if it is open. Call only with the slot's gate held exclusive. */
  private async closeSlot(slot: Slot): Promise<void> {
    assert(slot.opening === null, 'a pool is being imported under an exclusive hold');
    const open = slot.open;
    if (open === null) return;
    slot.open = null;
    try {
      await open.pool.export();
    } finally {
      await Promise.all(open.leaves.map((l) => l.disk.close()));
      await open.lock.release();
    }
  }

  private async reopen(name: string, slot: Slot): Promise<void> {
    if (this.closing) return;
    try {
      await this.opened(name, slot);
    } catch (e) {
      if (!(e instanceof MirrorpoolError)) throw e;
      // The change that ran is done either way; the next command that uses the pool imports it
      // again and reports why it cannot.
    }
  }

  private async evictAfterFailure(name: string): Promise<void> {
    try {
      await this.evict(name);
    } catch (e) {
      if (!(e instanceof MirrorpoolError)) throw e;
      // A broken pool often cannot export; its disks are closed and its lock released anyway,
      // and the command's own error is the one reported.
    }
  }

  /** Runs `fn` on the slot of `name`, made on demand and dropped once unused and closed. */
  private async held<T>(name: string, fn: (slot: Slot) => Promise<T>): Promise<T> {
    let slot = this.slots.get(name);
    if (slot === undefined) {
      slot = { gate: new Gate(), open: null, opening: null, holders: 0 };
      this.slots.set(name, slot);
    }
    slot.holders++;
    try {
      return await fn(slot);
    } finally {
      slot.holders--;
      if (slot.holders === 0 && slot.open === null) {
        assert(slot.opening === null, 'an import outlived every user of its pool');
        this.slots.delete(name);
      }
    }
  }
}

async function syncAfterFailure(pool: Pool): Promise<void> {
  try {
    await pool.sync();
  } catch (e) {
    if (!(e instanceof MirrorpoolError)) throw e;
    // The command's own error is reported; a pool that cannot sync is suspended, so broken.
  }
}
