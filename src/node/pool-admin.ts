// The pool commands that change which pools exist or are imported, or their vdevs: create, import
// (and the scan that lists importable pools), export, sync, add, attach, detach, reguid. Each
// either completes or leaves the cache file as it was: the pool cache is written last, under its
// lock, and a failed create or add removes the vdev files it made. Once the engine has made a
// vdev change durable the cache is updated even if the export after it fails, so it names the
// disks the pool's labels name. Every path that locks and imports vdevs itself runs inside
// withPoolClosed: in a process with resident pools (the daemon) the pool is evicted first, so its
// lock is free and no command runs on it meanwhile, and imported again afterwards (export leaves
// it closed and out of the registry). Arguments arrive validated by cli-pool.ts (counts,
// duplicates, sizes).

import { rm, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { type CheckpointRecord, type Guid, Pool, readDiskLabels } from '../engine/index.js';
import { FileDisk, assert, hasCode, mpError } from '../lib/index.js';
import { type CachedPool, PoolCache } from './pool-cache.js';
import { type OpenLeaf, cliPoolEnv, withCacheLock, withImportedPool, withLockedLeaves, withPool, withPoolClosed } from './pool-open.js';
import { type ImportablePool, type ScanResult, scanForPools } from './pool-scan.js';

export interface CreatePoolOptions {
  /** All vdevs form one mirror; otherwise each is its own striped top-level vdev. */
  readonly mirror: boolean;
  /** Size of the vdev files that do not exist yet. */
  readonly sizeBytes: number;
  /** Overwrite files that hold a mirrorpool label (of a pool not in the cache). */
  readonly force: boolean;
}

/** EEXIST when a pool of that name is imported; EBUSY when a vdev belongs to an imported pool. */
function checkFree(cached: readonly CachedPool[], name: string | null, paths: readonly string[]): void {
  if (name !== null && cached.some((p) => p.name === name)) throw mpError('EEXIST', `a pool named '${name}' is already imported`, { pool: name });
  for (const path of paths) {
    const owner = cached.find((p) => p.vdevs.includes(path));
    if (owner !== undefined) {
      throw mpError('EBUSY', `${path} is a vdev of the imported pool '${owner.name}'`, { path, pool: owner.name });
    }
  }
}

/** Whether `path` exists; EEXIST when it carries a mirrorpool label and `force` is off. */
async function existingVdev(path: string, force: boolean): Promise<boolean> {
  let disk: FileDisk;
  try {
    disk = await FileDisk.open(path);
  } catch (e) {
    if (hasCode(e, 'ENOENT')) return false;
    throw e;
  }
  try {
    const { configs } = await readDiskLabels(disk);
    const label = configs[0]?.config;
    if (label !== undefined && !force) {
      throw mpError('EEXIST', `${path} holds a label of pool '${label.name}' (guid ${label.poolGuid}); -f overwrites it`, {
        path,
        pool: label.name,
        guid: label.poolGuid.toString(),
      });
    }
  } finally {
    await disk.close();
  }
  return true;
}

/** Creates the pool, records it in the cache, and returns its cache entry. */
export async function createPool(home: string, name: string, vdevs: readonly string[], o: CreatePoolOptions): Promise<CachedPool> {
  const paths = vdevs.map((v) => resolve(v));
  checkFree(await new PoolCache(home).list(), name, paths);
  return withPoolClosed(home, name, { reopen: true }, async () => {
    const missing: string[] = [];
    for (const path of paths) if (!(await existingVdev(path, o.force))) missing.push(path);
    const created: string[] = [];
    try {
      for (const path of missing) {
        await (await FileDisk.open(path, { createBytes: o.sizeBytes })).close();
        created.push(path);
      }
      const guid = await withLockedLeaves(paths, async (leaves) => {
        const pool = await Pool.create(name, o.mirror ? [leaves] : leaves.map((l) => [l]), cliPoolEnv());
        await pool.export();
        return pool.guid.toString();
      });
      const entry: CachedPool = { name, guid, vdevs: paths };
      await withCacheLock(home, (cache) => cache.add(entry));
      return entry;
    } catch (e) {
      await Promise.all(created.map((path) => rm(path, { force: true })));
      throw e;
    }
  });
}

/** Pools under `sources` that are not in this home's cache. */
export async function listImportable(home: string, sources: readonly string[]): Promise<ScanResult> {
  const cached = new Set((await new PoolCache(home).list()).map((p) => p.guid));
  const scan = await scanForPools(sources);
  return { pools: scan.pools.filter((p) => !cached.has(p.guid)), notVdevs: scan.notVdevs };
}

/** The one pool `target` (a name or a guid) names among the scanned pools. */
function pick(scan: ScanResult, cached: readonly CachedPool[], target: string, sources: readonly string[]): ImportablePool {
  const matches = scan.pools.filter((p) => p.name === target || p.guid === target);
  const imported = matches.find((p) => cached.some((c) => c.guid === p.guid || c.name === p.name));
  if (imported !== undefined) {
    throw mpError('EEXIST', `a pool named '${imported.name}' is already imported`, { pool: imported.name, guid: imported.guid });
  }
  const found = matches[0];
  if (found === undefined) {
    throw mpError('ENOENT', `no pool '${target}' found in ${sources.join(', ')}`, { pool: target, dirs: [...sources] });
  }
  if (matches.length > 1) {
    const guids = matches.map((p) => p.guid);
    throw mpError('EINVAL', `${matches.length} pools are named '${target}' (guids ${guids.join(', ')}); import one by guid`, {
      pool: target,
      guids,
    });
  }
  return found;
}

/**
 * Imports the pool named (or with the guid) `target` from the files under `sources` and records it
 * in the cache; with `rewindToCheckpoint` the checkpointed state becomes current first (everything
 * after it is gone). EEXIST when it or its name is already imported; EPROTO when a file named with
 * --dir is not a vdev; ENOENT when no such pool is found.
 */
export async function importPool(home: string, sources: readonly string[], target: string, options: { rewindToCheckpoint?: boolean } = {}): Promise<CachedPool> {
  const cached = await new PoolCache(home).list();
  if (cached.some((p) => p.name === target)) throw mpError('EEXIST', `a pool named '${target}' is already imported`, { pool: target });
  const scan = await scanForPools(sources);
  const bad = scan.notVdevs[0];
  if (bad !== undefined) throw mpError('EPROTO', `${bad} is not a mirrorpool vdev (no valid label)`, { path: bad });
  const found = pick(scan, cached, target, sources);
  return withPoolClosed(home, found.name, { reopen: true }, async () => {
    await withLockedLeaves(found.vdevs, (leaves) => withImportedPool(leaves, found.guid, () => Promise.resolve(), options));
    const entry: CachedPool = { name: found.name, guid: found.guid, vdevs: [...found.vdevs] };
    await withCacheLock(home, (cache) => cache.add(entry));
    return entry;
  });
}

/**
 * Syncs and closes the pool, then drops it from the cache. A resident pool is exported by its
 * eviction and is not reopened.
 */
export async function exportPool(home: string, name: string): Promise<void> {
  await withPool(home, name, async (pool) => {
    await pool.sync();
  });
  await withPoolClosed(home, name, { reopen: false }, () => withCacheLock(home, (cache) => cache.remove(name)));
}

/** Takes a checkpoint of pool `name`; returns it. */
export async function checkpointPool(home: string, name: string): Promise<CheckpointRecord> {
  return withPool(home, name, (pool) => pool.checkpoint());
}

/**
 * Discards the checkpoint of pool `name` and waits while its space is given back, chunk by chunk
 * (an interrupted discard goes on whenever the pool is next open). Returns the bytes given back.
 */
export async function discardCheckpoint(home: string, name: string): Promise<number> {
  return withPool(home, name, async (pool) => {
    const held = pool.checkpointStatus().heldBytes;
    await pool.discardCheckpoint();
    await pool.checkpointDiscardDone();
    const error = pool.checkpointStatus().discardError;
    if (error !== null) throw mpError('EIO', `the checkpoint discard stopped: ${error} (it goes on when the pool is next opened)`, { pool: name });
    return held;
  });
}

/** Forces a txg sync; returns the txg of the newest uberblock on disk afterwards. */
export async function syncPool(home: string, name: string): Promise<number> {
  return withPool(home, name, async (pool) => {
    await pool.sync();
    return pool.uberblock.txg;
  });
}

export interface NewVdevOptions {
  /** Size of the vdev files that do not exist yet. */
  readonly sizeBytes: number;
  /** Overwrite files that hold a mirrorpool label (of a pool not in the cache). */
  readonly force: boolean;
}

export interface AddVdevOptions extends NewVdevOptions {
  /** All vdevs form one mirror; otherwise each is its own top-level vdev. */
  readonly mirror: boolean;
}

/**
 * Checks that `paths` belong to no imported pool and hold no label (unless forced), creates the
 * missing ones at `sizeBytes`, and runs `fn`; files it created that `fn` did not put in the pool
 * (`kept`) are removed when it fails.
 */
async function withNewVdevFiles<T>(
  home: string,
  paths: readonly string[],
  o: NewVdevOptions,
  fn: (kept: Set<string>) => Promise<T>,
): Promise<T> {
  checkFree(await new PoolCache(home).list(), null, paths);
  const missing: string[] = [];
  for (const path of paths) if (!(await existingVdev(path, o.force))) missing.push(path);
  const created: string[] = [];
  const kept = new Set<string>();
  try {
    for (const path of missing) {
      await (await FileDisk.open(path, { createBytes: o.sizeBytes })).close();
      created.push(path);
    }
    return await fn(kept);
  } catch (e) {
    await Promise.all(created.filter((path) => !kept.has(path)).map((path) => rm(path, { force: true })));
    throw e;
  }
}

/**
 * Imports the cached pool `entry` with `extra` vdev files locked and opened beside its own, runs
 * `change` on it, and records `cached(entry)` in the cache once `change` has returned — even when
 * exporting afterwards fails, since the pool's labels already describe the change.
 */
async function changeVdevs(
  home: string,
  entry: CachedPool,
  extra: readonly string[],
  change: (pool: Pool, own: readonly OpenLeaf[], extra: readonly OpenLeaf[]) => Promise<CachedPool>,
): Promise<CachedPool> {
  let next: CachedPool | null = null;
  try {
    await withLockedLeaves([...entry.vdevs, ...extra], (leaves) => {
      const own = leaves.slice(0, entry.vdevs.length);
      return withImportedPool(own, entry.guid, async (pool) => {
        next = await change(pool, own, leaves.slice(entry.vdevs.length));
      });
    });
  } finally {
    const changed: CachedPool | null = next;
    if (changed !== null) await withCacheLock(home, (cache) => cache.replace(changed));
  }
  assert(next !== null);
  return next;
}

/** The guid of the pool's leaf opened from `path` (one of the cached vdevs); ENOENT when it is none. */
function leafGuidAt(pool: Pool, entry: CachedPool, own: readonly OpenLeaf[], path: string): Guid {
  const disk = own.find((l) => l.path === path)?.disk;
  const leaf = pool.vdevs.flatMap((v) => v.children).find((c) => c.disk === disk);
  if (disk === undefined || leaf === undefined) {
    throw mpError('ENOENT', `${path} is not a vdev of pool '${entry.name}'`, { path, pool: entry.name });
  }
  return leaf.guid;
}

/** Adds top-level vdevs (one mirror with `mirror`) to the cached pool `name`; files that do not exist are created. */
export function addVdevs(home: string, name: string, vdevs: readonly string[], o: AddVdevOptions): Promise<CachedPool> {
  return withPoolClosed(home, name, { reopen: true }, async () => {
    const entry = await new PoolCache(home).get(name);
    return addToEntry(home, entry, vdevs, o);
  });
}

async function addToEntry(home: string, entry: CachedPool, vdevs: readonly string[], o: AddVdevOptions): Promise<CachedPool> {
  const paths = vdevs.map((v) => resolve(v));
  return withNewVdevFiles(home, paths, o, (kept) =>
    changeVdevs(home, entry, paths, async (pool, _own, added) => {
      const groups = o.mirror ? [added] : added.map((l) => [l]);
      try {
        for (const group of groups) {
          await pool.addVdev(group);
          for (const l of group) kept.add(l.path);
        }
      } catch (e) {
        // Vdevs added before a later one failed stay in the pool: the cache must name them.
        if (kept.size > 0) await withCacheLock(home, (cache) => cache.replace({ ...entry, vdevs: [...entry.vdevs, ...kept] }));
        throw e;
      }
      return { ...entry, vdevs: [...entry.vdevs, ...kept] };
    }),
  );
}

/**
 * Attaches `newVdev` to the vdev `vdev` of the cached pool `name` (a disk becomes a mirror). A new
 * file is created at `sizeBytes`, or when that is null at the size of `vdev`'s file.
 */
export function attachVdev(
  home: string,
  name: string,
  vdev: string,
  newVdev: string,
  o: { sizeBytes: number | null; force: boolean },
): Promise<CachedPool> {
  return withPoolClosed(home, name, { reopen: true }, () => attachToEntry(home, name, vdev, newVdev, o));
}

async function attachToEntry(
  home: string,
  name: string,
  vdev: string,
  newVdev: string,
  o: { sizeBytes: number | null; force: boolean },
): Promise<CachedPool> {
  const entry = await new PoolCache(home).get(name);
  const [path, newPath] = [resolve(vdev), resolve(newVdev)];
  if (!entry.vdevs.includes(path)) throw mpError('ENOENT', `${path} is not a vdev of pool '${name}'`, { path, pool: name });
  const sizeBytes = o.sizeBytes ?? (await stat(path)).size;
  return withNewVdevFiles(home, [newPath], { sizeBytes, force: o.force }, (kept) =>
    changeVdevs(home, entry, [newPath], async (pool, own, [added]) => {
      assert(added !== undefined);
      await pool.attach(leafGuidAt(pool, entry, own, path), added);
      kept.add(newPath);
      const at = entry.vdevs.indexOf(path) + 1;
      return { ...entry, vdevs: [...entry.vdevs.slice(0, at), newPath, ...entry.vdevs.slice(at)] };
    }),
  );
}

/** Detaches the mirror child `vdev` from the cached pool `name`; its file stays, without a label. */
export function detachVdev(home: string, name: string, vdev: string): Promise<CachedPool> {
  return withPoolClosed(home, name, { reopen: true }, async () => {
    const entry = await new PoolCache(home).get(name);
    const path = resolve(vdev);
    if (!entry.vdevs.includes(path)) throw mpError('ENOENT', `${path} is not a vdev of pool '${name}'`, { path, pool: name });
    return changeVdevs(home, entry, [], async (pool, own) => {
      await pool.detach(leafGuidAt(pool, entry, own, path));
      return { ...entry, vdevs: entry.vdevs.filter((v) => v !== path) };
    });
  });
}

/** Gives the cached pool `name` a new guid; returns it. */
export function reguidPool(home: string, name: string): Promise<string> {
  return withPoolClosed(home, name, { reopen: true }, async () => {
    const entry = await new PoolCache(home).get(name);
    const next = await changeVdevs(home, entry, [], async (pool) => ({ ...entry, guid: (await pool.reguid()).toString() }));
    return next.guid;
  });
}
