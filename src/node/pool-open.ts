// How a CLI command gets at a pool. Without a daemon: find the pool in the cache (--home), take
// the exclusive vdev lock (EBUSY when another process has it), open a FileDisk per vdev, import,
// run the command, export (which syncs) and close, release the lock; every path out — success or
// failure — closes the disks and releases the lock. When this process has resident pools
// installed for that home (resident-pools.ts, the daemon), withPool runs the command on the
// resident pool instead, and withPoolClosed evicts it around administration that opens the vdevs
// directly. Also the lock that serialises changes to the pool cache itself, across processes and
// within one. Called by pool-admin.ts, pool-debug.ts, cli-common.ts and the command groups.

import { mkdir, realpath } from 'node:fs/promises';
import { resolve } from 'node:path';
import { type LeafInput, Pool, type PoolEnv } from '../engine/index.js';
import { FileDisk, Gate, SystemClock, SystemRandom, hasCode, mpError } from '../lib/index.js';
import { type CachedPool, PoolCache } from './pool-cache.js';
import { ResidentPools, checkCachedGuid, exportAfterFailure } from './resident-pools.js';
import { VdevLock } from './vdev-lock.js';

/** Block cache of a pool the CLI opens: commands are short and read little. */
const CLI_CACHE_BYTES = 16 * 1024 * 1024;

/** The engine environment of a CLI process: real time and randomness, no txg timer (syncs are explicit). */
export function cliPoolEnv(): PoolEnv {
  return { clock: new SystemClock(), random: new SystemRandom(), tuning: { txgTimeoutMs: 0, cacheBytes: CLI_CACHE_BYTES } };
}

/** A leaf the CLI opened, with the path it was opened from (labels may hold an older path). */
export interface OpenLeaf extends LeafInput {
  readonly disk: FileDisk;
}

/**
 * Locks the vdev files, opens them, runs `fn`, then closes them and releases the lock, whatever
 * happened. EBUSY when another process holds a vdev; ENOENT for a missing file.
 */
export async function withLockedLeaves<T>(paths: readonly string[], fn: (leaves: readonly OpenLeaf[]) => Promise<T>): Promise<T> {
  const lock = await VdevLock.acquire(paths);
  const leaves: OpenLeaf[] = [];
  try {
    for (const path of paths) leaves.push({ disk: await FileDisk.open(path), path: resolve(path) });
    return await fn(leaves);
  } finally {
    await Promise.all(leaves.map((l) => l.disk.close()));
    await lock.release();
  }
}

/**
 * Imports the pool on already opened leaves, runs `fn`, exports it (sync + close). When
 * `expectGuid` is given, a pool with another guid on those files is ESTALE (the cache is outdated).
 */
export async function withImportedPool<T>(
  leaves: readonly OpenLeaf[],
  expectGuid: string | undefined,
  fn: (pool: Pool) => Promise<T>,
  options: { rewindToCheckpoint?: boolean } = {},
): Promise<T> {
  const pool = await Pool.import(leaves, cliPoolEnv(), options);
  let result: T;
  try {
    if (expectGuid !== undefined) checkCachedGuid(pool, expectGuid);
    result = await fn(pool);
  } catch (e) {
    await exportAfterFailure(pool);
    throw e;
  }
  await pool.export();
  return result;
}

/**
 * Opens the cached pool `name` for the duration of `fn` (ENOENT: not in the cache; EBUSY: in use);
 * what `fn` changed is durable when this resolves. With resident pools installed for `home`, `fn`
 * runs on the resident pool, which stays open afterwards.
 */
export async function withPool<T>(
  home: string,
  name: string,
  fn: (pool: Pool, entry: CachedPool, leaves: readonly OpenLeaf[]) => Promise<T>,
): Promise<T> {
  const resident = ResidentPools.current(home);
  if (resident !== undefined) return resident.use(name, fn);
  const entry = await new PoolCache(home).get(name);
  return withLockedLeaves(entry.vdevs, (leaves) => withImportedPool(leaves, entry.guid, (pool) => fn(pool, entry, leaves)));
}

/**
 * Runs `fn`, which locks and opens the vdevs of pool `name` itself (creating, importing,
 * changing or inspecting it), while the pool is not resident: with resident pools installed for
 * `home`, the pool is evicted first (its users finish, new ones wait until `fn` is done) and,
 * with `reopen`, imported again afterwards. Without resident pools it just runs `fn`.
 */
export function withPoolClosed<T>(home: string, name: string, o: { reopen: boolean }, fn: () => Promise<T>): Promise<T> {
  const resident = ResidentPools.current(home);
  return resident === undefined ? fn() : resident.withEvicted(name, fn, o);
}

/**
 * One gate per home folder: commands of one process (the daemon runs many at once) take turns
 * at the pool cache, since the file lock below refuses a second holder in the same process.
 * Bounded by the homes a process uses (one, in practice).
 */
const cacheGates = new Map<string, Gate>();

/**
 * Serialises read-modify-write of the pool cache: within this process through its gate, across
 * processes by locking the home folder itself like a vdev. EBUSY when another process is
 * changing the cache right now.
 */
export async function withCacheLock<T>(home: string, fn: (cache: PoolCache) => Promise<T>): Promise<T> {
  const dir = resolve(home);
  let gate = cacheGates.get(dir);
  if (gate === undefined) {
    gate = new Gate();
    cacheGates.set(dir, gate);
  }
  return gate.withExclusive(() => withHomeLocked(home, fn));
}

async function withHomeLocked<T>(home: string, fn: (cache: PoolCache) => Promise<T>): Promise<T> {
  await mkdir(resolve(home), { recursive: true, mode: 0o700 });
  let lock: VdevLock;
  try {
    lock = await VdevLock.acquire([await realpath(resolve(home))]);
  } catch (e) {
    if (!hasCode(e, 'EBUSY')) throw e;
    throw mpError('EBUSY', `the pool cache in ${resolve(home)} is being changed by another command; retry`, { home }, e);
  }
  try {
    return await fn(new PoolCache(home));
  } finally {
    await lock.release();
  }
}
