// Test helpers for send/receive: pools on SimDisks and a way to compare datasets by content.
// Used only by tests.

import { Prng, SimClock, SimDisk, sha256 } from '../lib/index.js';
import { Pool, type PoolTuning, keyed } from '../engine/index.js';

export const SYNC_TEST_TUNING: PoolTuning = { txgTimeoutMs: 0, checkEveryTxg: true, dirtyMaxBytes: 64 * 1024 * 1024 };

/** A pool named `name` striped over `vdevs` SimDisks of 96 MiB in all (two of 48 MiB by default). */
export async function simPool(name: string, seed: number, tuning: PoolTuning = SYNC_TEST_TUNING, vdevs = 2): Promise<Pool> {
  const random = new Prng(seed);
  const disks = Array.from({ length: vdevs }, () => new SimDisk({ sizeBytes: 96 * 1024 * 1024 / vdevs, random: random.fork() }));
  return Pool.create(name, disks.map((disk, i) => [{ disk, path: `${name}${i}` }]), { clock: new SimClock(), random, tuning });
}

/** Deterministic bytes for a write. */
export function pattern(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  new Prng(seed + 1).fill(out);
  return out;
}

export async function put(pool: Pool, ds: string, key: string, data: Uint8Array): Promise<void> {
  await pool.dsl.withView(ds, 'write', (v) => keyed.putKey(v, () => pool.assign(), key, data));
}

/** Keys, sizes and content hashes of a dataset or snapshot, as one string. */
export async function content(pool: Pool, name: string): Promise<string> {
  return pool.dsl.withView(name, 'read', async (v) => {
    const out: string[] = [];
    for (const k of await keyed.listKeys(v)) {
      const bytes = await keyed.readKey(v, k.key, 0, k.size + 1);
      out.push(`${k.key}:${bytes.length}:${Buffer.from(sha256(bytes)).toString('hex').slice(0, 16)}`);
    }
    return out.join(' ');
  });
}

/** Every dataset and snapshot of the pool with its guid, and every dataset's content. */
export async function poolState(pool: Pool): Promise<string> {
  const out: string[] = [];
  for (const e of await pool.dsl.list({ types: ['filesystem', 'snapshot', 'bookmark'] })) {
    out.push(`${e.name} ${e.guid}`);
    if (e.type === 'filesystem') out.push(await content(pool, e.name));
  }
  return out.join('\n');
}

/** All chunks of an async iterable of bytes, concatenated (a plain Uint8Array: slice() copies). */
export async function collect(source: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const p of source) parts.push(p);
  return new Uint8Array(Buffer.concat(parts));
}

/** `bytes` in chunks of random sizes (1 byte to 64 KiB). */
export async function* chunks(bytes: Uint8Array, seed = 1): AsyncGenerator<Uint8Array> {
  const r = new Prng(seed);
  for (let at = 0; at < bytes.length; ) {
    const n = 1 + r.int(Math.min(64 * 1024, bytes.length - at));
    await Promise.resolve(); // a real source answers later
    yield bytes.subarray(at, at + n);
    at += n;
  }
}
