// The pool commands that change which pools exist or are imported: create, import (and the scan
// that lists importable pools), export, sync. Each either completes or leaves the cache file as
// it was: the pool cache is written last, under its lock, and a failed create removes the vdev
// files it made. Arguments arrive validated by cli-pool.ts (counts, duplicates, sizes).

import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Pool, readDiskLabels } from '../engine/index.js';
import { FileDisk, hasCode, mpError } from '../lib/index.js';
import { type CachedPool, PoolCache } from './pool-cache.js';
import { cliPoolEnv, withCacheLock, withImportedPool, withLockedLeaves, withPool } from './pool-open.js';
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
function checkFree(cached: readonly CachedPool[], name: string, paths: readonly string[]): void {
  if (cached.some((p) => p.name === name)) throw mpError('EEXIST', `a pool named '${name}' is already imported`, { pool: name });
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
 * in the cache. EEXIST when it or its name is already imported; EPROTO when a file named with
 * --dir is not a vdev; ENOENT when no such pool is found.
 */
export async function importPool(home: string, sources: readonly string[], target: string): Promise<CachedPool> {
  const cached = await new PoolCache(home).list();
  if (cached.some((p) => p.name === target)) throw mpError('EEXIST', `a pool named '${target}' is already imported`, { pool: target });
  const scan = await scanForPools(sources);
  const bad = scan.notVdevs[0];
  if (bad !== undefined) throw mpError('EPROTO', `${bad} is not a mirrorpool vdev (no valid label)`, { path: bad });
  const found = pick(scan, cached, target, sources);
  await withLockedLeaves(found.vdevs, (leaves) => withImportedPool(leaves, found.guid, () => Promise.resolve()));
  const entry: CachedPool = { name: found.name, guid: found.guid, vdevs: [...found.vdevs] };
  await withCacheLock(home, (cache) => cache.add(entry));
  return entry;
}

/** Syncs and closes the pool, then drops it from the cache. */
export async function exportPool(home: string, name: string): Promise<void> {
  await withPool(home, name, async (pool) => {
    await pool.sync();
  });
  await withCacheLock(home, (cache) => cache.remove(name));
}

/** Forces a txg sync; returns the txg of the newest uberblock on disk afterwards. */
export async function syncPool(home: string, name: string): Promise<number> {
  return withPool(home, name, async (pool) => {
    await pool.sync();
    return pool.uberblock.txg;
  });
}
