// Synchronous writes through the intent log, on real files, against peers measured in this run:
//   - one writer: 4 KiB synchronous writes (keyed writeKey with sync, recordsize 4K, random
//     offsets in a 16 MiB key) vs a raw loop of 4 KiB pwrite + fdatasync at random offsets in a
//     16 MiB file on the same file system (target >= 0.8x);
//   - 64 concurrent writers doing the same (each to its own 1 MiB key) vs the one writer (target >= 5x:
//     group commit shares one log write and one fsync among the writers waiting);
//   - p50 and p99 latency of the one writer and of the 64 writers, each against the raw loop's
//     p50/p99 (reported; the 64-writer latency includes waiting for a shared flush).
// Both sides overwrite space that is already allocated: the pool's keys are written and synced
// before timing (and its log fills new extents with zeros in the txg that allocates them), and the
// raw file is written in full and synced before timing. A sparse raw file would make about half of
// its writes allocate a block, so each fdatasync would also commit the file system's journal.
// The pool's txg timer runs as in production (5 s), so txg syncs happen alongside; each pool loop
// is long enough to span about one txg interval, so whether a sync falls into it is no lottery.
// The raw loop runs while the pool is clean (synced before, untimed), so it never waits for the
// pool's txg work in the same process.
// Everything lives in a fresh folder under os.tmpdir(), removed afterwards.
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileDisk, Prng, SystemClock, SystemRandom } from '../src/lib/index.js';
import { Pool, keyed } from '../src/engine/index.js';
import { type Figure, figure, MiB } from './harness.js';

const SUITE = 'intent log';
const POOL_FILE_BYTES = 1024 * MiB;
const KEY_BYTES = 16 * MiB;
/** Each of the concurrent writers' keys. */
const LANE_KEY_BYTES = MiB;
const WRITE_BYTES = 4096;
/** Each timed loop spans about one txg interval (5 s) or more, so it pays about its share of txg syncs. */
const SINGLE_OPS = 10_000;
const WRITERS = 64;
const CONCURRENT_OPS_EACH = 400;
const SEED = 20_251_122;

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

/** The raw peer's file: every block written once and synced, as the pool's key is. */
async function rawFile(path: string): Promise<void> {
  const fh = await open(path, 'w+');
  try {
    const chunk = new Uint8Array(MiB);
    for (let at = 0; at < KEY_BYTES; at += chunk.length) await fh.write(chunk, 0, chunk.length, at);
    await fh.datasync();
  } finally {
    await fh.close();
  }
}

async function rawLoop(path: string, offsets: readonly number[], data: Uint8Array): Promise<{ opsPerSec: number; lat: number[] }> {
  const fh = await open(path, 'r+');
  try {
    const lat: number[] = [];
    const start = performance.now();
    for (const off of offsets) {
      const t0 = performance.now();
      await fh.write(data, 0, data.length, off);
      await fh.datasync();
      lat.push(performance.now() - t0);
    }
    return { opsPerSec: offsets.length / ((performance.now() - start) / 1000), lat: lat.sort((a, b) => a - b) };
  } finally {
    await fh.close();
  }
}

async function syncWrites(pool: Pool, key: string, offsets: readonly number[], data: Uint8Array, lat: number[]): Promise<void> {
  await pool.dsl.withView('bench/a', 'write', async (v) => {
    for (const off of offsets) {
      const t0 = performance.now();
      await keyed.writeKey(v, () => pool.assign(), key, off, data, { sync: true });
      lat.push(performance.now() - t0);
    }
  });
}

export async function run(): Promise<Figure[]> {
  const dir = await mkdtemp(join(tmpdir(), 'mirrorpool-bench-zil-'));
  try {
    const random = new Prng(SEED);
    const data = new Uint8Array(WRITE_BYTES);
    random.fill(data);
    const offsets = (n: number, bytes = KEY_BYTES): number[] => Array.from({ length: n }, () => random.int(bytes / WRITE_BYTES) * WRITE_BYTES);
    const poolPath = join(dir, 'pool');
    const disk = await FileDisk.open(poolPath, { createBytes: POOL_FILE_BYTES });
    const pool = await Pool.create('bench', [[{ disk, path: poolPath }]], { clock: new SystemClock(), random: new SystemRandom() });
    try {
      await pool.dsl.create('bench/a', new Map([['recordsize', '4K']]));
      await pool.dsl.withView('bench/a', 'write', async (v) => {
        for (let w = 0; w < WRITERS; w++) await keyed.putKey(v, () => pool.assign(), `k${w}`, new Uint8Array(w === 0 ? KEY_BYTES : LANE_KEY_BYTES));
      });
      await pool.sync();
      await syncWrites(pool, 'k0', offsets(2000), data, []); // warm up: the log exists and allocates ahead at this pace
      // The raw loop runs while the pool has nothing to sync: the pool's txg work is not its cost.
      await pool.sync();
      const rawPath = join(dir, 'raw');
      await rawFile(rawPath);
      const raw = await rawLoop(rawPath, offsets(SINGLE_OPS), data);
      const single: number[] = [];
      const t1 = performance.now();
      await syncWrites(pool, 'k0', offsets(SINGLE_OPS), data, single);
      const singleRate = SINGLE_OPS / ((performance.now() - t1) / 1000);
      single.sort((a, b) => a - b);
      const many: number[] = [];
      const lanes = Array.from({ length: WRITERS }, () => offsets(CONCURRENT_OPS_EACH, LANE_KEY_BYTES));
      const t2 = performance.now();
      await Promise.all(lanes.map((lane, w) => syncWrites(pool, `k${w}`, lane, data, many)));
      const manyRate = (WRITERS * CONCURRENT_OPS_EACH) / ((performance.now() - t2) / 1000);
      many.sort((a, b) => a - b);
      const ms = (label: string, value: number, peer: number, peerLabel: string): Figure =>
        figure({ suite: SUITE, name: label, value, unit: 'ms', versus: { label: peerLabel, value: peer }, target: { op: '<=', ratio: label.includes('64') ? 64 : 2 } });
      return [
        figure({
          suite: SUITE,
          name: '4 KiB sync writes, one writer',
          value: singleRate,
          unit: 'ops/s',
          versus: { label: 'raw pwrite+fdatasync ops/s', value: raw.opsPerSec },
          target: { op: '>=', ratio: 0.8 },
        }),
        figure({
          suite: SUITE,
          name: `4 KiB sync writes, ${WRITERS} writers`,
          value: manyRate,
          unit: 'ops/s',
          versus: { label: 'one writer ops/s', value: singleRate },
          target: { op: '>=', ratio: 5 },
        }),
        ms('p50 latency, one writer', percentile(single, 50), percentile(raw.lat, 50), 'raw p50 ms'),
        ms('p99 latency, one writer', percentile(single, 99), percentile(raw.lat, 99), 'raw p99 ms'),
        ms(`p50 latency, ${WRITERS} writers`, percentile(many, 50), percentile(raw.lat, 50), 'raw p50 ms'),
        ms(`p99 latency, ${WRITERS} writers`, percentile(many, 99), percentile(raw.lat, 99), 'raw p99 ms'),
      ];
    } finally {
      await pool.export();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
