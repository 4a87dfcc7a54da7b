// The pool cache in the CLI's home folder (--home, MIRRORPOOL_HOME, default ./.mirrorpool):
// which pools are imported and from which vdev paths, so commands find a pool by name. Written
// atomically; a damaged cache is EPROTO naming the file, never silently dropped.

import { mkdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { mpError } from '../lib/index.js';
import { writeFileAtomic } from './atomic-file.js';

export interface CachedPool {
  name: string;
  guid: string;
  vdevs: string[];
}

interface CacheFile {
  version: 1;
  pools: CachedPool[];
}

export class PoolCache {
  readonly path: string;

  constructor(readonly home: string) {
    this.path = join(resolve(home), 'pools.json');
  }

  async list(): Promise<CachedPool[]> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    return parse(text, this.path).pools;
  }

  async get(name: string): Promise<CachedPool> {
    const found = (await this.list()).find((p) => p.name === name);
    if (found === undefined) throw mpError('ENOENT', `no pool named '${name}' is imported`, { pool: name, cache: this.path });
    return found;
  }

  async add(pool: CachedPool): Promise<void> {
    const pools = await this.list();
    if (pools.some((p) => p.name === pool.name)) {
      throw mpError('EEXIST', `a pool named '${pool.name}' is already imported`, { pool: pool.name });
    }
    await this.save([...pools, { ...pool, vdevs: pool.vdevs.map((v) => resolve(v)) }]);
  }

  /** Replaces the entry of `pool.name` (vdevs added or detached, a new guid). ENOENT when it is not cached. */
  async replace(pool: CachedPool): Promise<void> {
    const pools = await this.list();
    if (!pools.some((p) => p.name === pool.name)) throw mpError('ENOENT', `no pool named '${pool.name}' is imported`, { pool: pool.name });
    const entry = { ...pool, vdevs: pool.vdevs.map((v) => resolve(v)) };
    await this.save(pools.map((p) => (p.name === pool.name ? entry : p)));
  }

  async remove(name: string): Promise<void> {
    const pools = await this.list();
    if (!pools.some((p) => p.name === name)) throw mpError('ENOENT', `no pool named '${name}' is imported`, { pool: name });
    await this.save(pools.filter((p) => p.name !== name));
  }

  private async save(pools: CachedPool[]): Promise<void> {
    await mkdir(resolve(this.home), { recursive: true, mode: 0o700 });
    const file: CacheFile = { version: 1, pools };
    await writeFileAtomic(this.path, `${JSON.stringify(file, null, 2)}\n`);
  }
}

function parse(text: string, path: string): CacheFile {
  const bad = (why: string): Error => mpError('EPROTO', `pool cache ${path} is damaged: ${why}`, { path });
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw bad('not JSON');
  }
  if (typeof json !== 'object' || json === null || (json as { version?: unknown }).version !== 1) throw bad('unknown version');
  const pools = (json as { pools?: unknown }).pools;
  if (!Array.isArray(pools)) throw bad('no pool list');
  for (const p of pools as unknown[]) {
    const ok =
      typeof p === 'object' && p !== null &&
      typeof (p as CachedPool).name === 'string' &&
      typeof (p as CachedPool).guid === 'string' &&
      Array.isArray((p as CachedPool).vdevs) &&
      (p as CachedPool).vdevs.every((v) => typeof v === 'string');
    if (!ok) throw bad('a pool entry is malformed');
  }
  return { version: 1, pools: pools as CachedPool[] };
}
