// The pool engine on real files, each figure against a peer measured in the same run (or a limit):
//   - sequential write of 1 GiB through the DMU (one object, 128 KiB blocks, 1 MiB writes, txg
//     syncs as the pool triggers them plus a final one per 256 MiB segment) vs raw 1 MiB writes
//     of the same bytes through FileDisk (which flushes ahead as the pool's disks do) with one sync
//     per pool txg sync, at the same byte cadence; the two
//     alternate segment by segment, because this VM's disk speed drifts by 2x within a minute;
//   - verified sequential read of that object after a fresh import (the block cache is empty) vs
//     raw 1 MiB preads of the same bytes, alternating in 128 MiB segments. Nothing is dropped from
//     the page cache: both files are read through the OS once just before (this VM pages out
//     cold page cache by itself), so both reads are served from warm page cache and this
//     measures the engine's CPU path (lookup, checksum, copies), not the device;
//   - random 4 KiB overwrites into the object (each its own transaction, then one sync; the time
//     includes the sync) vs raw random 4 KiB pwrites at the same offsets plus one fdatasync. With
//     128 KiB records each overwrite costs a 128 KiB read-modify-write and a 128 KiB copy-on-write
//     write (32x the bytes of the peer), so the target is 1/32 of the peer: the engine should lose
//     no more than its record size costs;
//   - import time of the pool holding 1 GiB (open the file, Pool.import until it resolves) vs a
//     limit of 1000 ms; median of three imports;
//   - import time of a fresh pool on a 1 TiB sparse file (1024 metaslabs of 1 GiB, one dataset),
//     the same way against the same limit: what a big, mostly empty disk costs every import;
//   - peak RSS growth during the sequential write over the RSS just before it, vs the configured
//     dirty limit (dirtyMaxBytes) + 256 MiB. RSS is process.memoryUsage.rss(), sampled after every
//     1 MiB write and by a 5 ms timer while the write runs (raw segments included, which add
//     nothing: they reuse one buffer); the baseline is taken in this process right before the
//     write starts (after the pool and object are created).
// Everything lives in a fresh folder under os.tmpdir(), removed afterwards.
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileDisk, Prng, SystemClock, SystemRandom } from '../src/lib/index.js';
import { DIRTY_MAX_BYTES_DEFAULT, ObjectType, Pool, type ObjectId, type PoolTuning, dmu } from '../src/engine/index.js';
import { type Figure, figure, GiB, MiB } from './harness.js';

const SUITE = 'pool';
const POOL_FILE_BYTES = 3 * GiB;
const OBJECT_BYTES = GiB;
const WRITE_BYTES = MiB;
const RECORD_BYTES = 128 * 1024;
const OVERWRITES = 20_000;
const OVERWRITE_BYTES = 4096;
const WRITE_SEGMENT_BYTES = 256 * MiB;
const READ_SEGMENT_BYTES = 128 * MiB;
/** The front of the pool file that holds the object (allocation fills the vdev from its start). */
const POOL_WARM_BYTES = OBJECT_BYTES + 256 * MiB;
const IMPORT_LIMIT_MS = 1000;
/** The vdev of the big-import figure: a sparse file, mostly never written. */
const BIG_VDEV_BYTES = 1024 * GiB;
const IMPORTS = 3;
const RSS_ALLOWANCE_BYTES = 256 * MiB;
const RSS_SAMPLE_MS = 5;
const SEED = 20_240_601;
/** The pool's defaults, spelled out because the RSS figure is held against dirtyMaxBytes. */
const TUNING = { dirtyMaxBytes: DIRTY_MAX_BYTES_DEFAULT, dirtySyncBytes: DIRTY_MAX_BYTES_DEFAULT / 4, cacheBytes: 64 * MiB } satisfies PoolTuning;

function env(): { clock: SystemClock; random: SystemRandom; tuning: PoolTuning } {
  return { clock: new SystemClock(), random: new SystemRandom(), tuning: TUNING };
}

/** One 1 MiB buffer of noise; each write stamps its index in the first 8 bytes so reads can be checked. */
function payload(): Uint8Array {
  const buf = new Uint8Array(WRITE_BYTES);
  new Prng(SEED).fill(buf);
  return buf;
}

function stamp(buf: Uint8Array, index: number): void {
  new DataView(buf.buffer, buf.byteOffset).setFloat64(0, index, true);
}

function stampOf(buf: Uint8Array): number {
  return new DataView(buf.buffer, buf.byteOffset).getFloat64(0, true);
}

class RssSampler {
  readonly baseline = process.memoryUsage.rss();
  peak = this.baseline;
  private readonly timer = setInterval(() => this.sample(), RSS_SAMPLE_MS);

  sample(): void {
    this.peak = Math.max(this.peak, process.memoryUsage.rss());
  }

  stop(): number {
    clearInterval(this.timer);
    this.sample();
    return this.peak - this.baseline;
  }
}

async function importPool(path: string): Promise<Pool> {
  const disk = await FileDisk.open(path);
  return Pool.import([{ disk, path }], env());
}

interface WriteResult {
  pool: Pool;
  obj: ObjectId;
  poolMs: number;
  rawMs: number;
  syncs: number;
  rssGrowthBytes: number;
}

/**
 * Writes the object through the pool and the same bytes to the raw file, alternating in
 * WRITE_SEGMENT_BYTES segments so both see the same device (its speed drifts with other load).
 * Each pool segment ends with a sync (its time includes its durability); the raw segment after it
 * makes as many syncs as that pool segment synced txgs, evenly spread, the last at its end. The raw
 * writes go through a FileDisk, the layer the pool writes through, so they flush ahead as the
 * pool's do (an fdatasync in the background every 8 MiB): the figure is what the engine costs over
 * the disk layer, not a difference in flushing.
 */
async function writes(poolPath: string, rawPath: string, buf: Uint8Array): Promise<WriteResult> {
  const disk = await FileDisk.open(poolPath, { createBytes: POOL_FILE_BYTES });
  const pool = await Pool.create('bench', [[{ disk, path: poolPath }]], env());
  const setup = await pool.assign();
  const obj = await dmu.createObject(pool.root, setup, { type: ObjectType.plain, blockBytes: RECORD_BYTES, checksumKind: 1 });
  setup.commit();
  await pool.sync();
  const raw = await FileDisk.open(rawPath, { createBytes: OBJECT_BYTES });
  const out = { pool, obj, poolMs: 0, rawMs: 0, syncs: 0, rssGrowthBytes: 0 };
  try {
    const perSegment = WRITE_SEGMENT_BYTES / WRITE_BYTES;
    const rss = new RssSampler();
    for (let first = 0; first < OBJECT_BYTES / WRITE_BYTES; first += perSegment) {
      const syncsBefore = pool.status().txgStats.txgsSynced ?? 0;
      let start = performance.now();
      for (let i = first; i < first + perSegment; i++) {
        stamp(buf, i);
        const tx = await pool.assign();
        try {
          await dmu.write(pool.root, tx, obj, i * WRITE_BYTES, buf);
        } finally {
          tx.commit();
        }
        rss.sample();
      }
      await pool.sync();
      out.poolMs += performance.now() - start;
      const syncs = (pool.status().txgStats.txgsSynced ?? 0) - syncsBefore;
      out.syncs += syncs;
      const every = Math.max(1, Math.round(perSegment / Math.max(1, syncs)));
      start = performance.now();
      for (let i = first; i < first + perSegment; i++) {
        stamp(buf, i);
        await raw.write(i * WRITE_BYTES, buf);
        if ((i + 1 - first) % every === 0 && i + 1 < first + perSegment) await raw.sync();
      }
      await raw.sync();
      out.rawMs += performance.now() - start;
    }
    out.rssGrowthBytes = rss.stop();
  } finally {
    await raw.close();
  }
  return out;
}

/**
 * Reads `bytes` of `path` through the OS and throws them away: the VM this runs on pages out cold
 * page cache on its own (DAMON reclaim), so both files are made warm again right before the reads.
 */
async function warm(path: string, bytes: number): Promise<void> {
  const fh = await open(path, 'r');
  try {
    const buf = new Uint8Array(WRITE_BYTES);
    for (let at = 0; at < bytes; at += WRITE_BYTES) await fh.read(buf, 0, WRITE_BYTES, at);
  } finally {
    await fh.close();
  }
}

/**
 * Reads the object through the pool and the same bytes from the raw file, alternating in
 * READ_SEGMENT_BYTES segments so both see the same machine (other load comes and goes). The pool
 * keeps its read-ahead stream across segments, so it starts each segment with at most two 1 MiB
 * spans in flight (under 2% of a segment).
 */
async function reads(pool: Pool, obj: ObjectId, rawPath: string): Promise<{ poolMs: number; rawMs: number }> {
  const fh = await open(rawPath, 'r');
  let poolMs = 0;
  let rawMs = 0;
  try {
    const perSegment = READ_SEGMENT_BYTES / WRITE_BYTES;
    for (let seg = 0; seg < OBJECT_BYTES / READ_SEGMENT_BYTES; seg++) {
      let start = performance.now();
      for (let i = seg * perSegment; i < (seg + 1) * perSegment; i++) {
        const got = await dmu.read(pool.root, obj, i * WRITE_BYTES, WRITE_BYTES);
        if (got.length !== WRITE_BYTES || stampOf(got) !== i) throw new Error(`pool read of MiB ${i} returned the wrong bytes`);
      }
      poolMs += performance.now() - start;
      start = performance.now();
      for (let i = seg * perSegment; i < (seg + 1) * perSegment; i++) {
        const buf = new Uint8Array(WRITE_BYTES);
        const { bytesRead } = await fh.read(buf, 0, WRITE_BYTES, i * WRITE_BYTES);
        if (bytesRead !== WRITE_BYTES || stampOf(buf) !== i) throw new Error(`raw read of MiB ${i} returned the wrong bytes`);
      }
      rawMs += performance.now() - start;
    }
  } finally {
    await fh.close();
  }
  return { poolMs, rawMs };
}

function overwriteOffsets(): number[] {
  const prng = new Prng(SEED + 1);
  const slots = OBJECT_BYTES / OVERWRITE_BYTES;
  return Array.from({ length: OVERWRITES }, () => prng.int(slots) * OVERWRITE_BYTES);
}

async function poolOverwrites(pool: Pool, obj: ObjectId, offsets: readonly number[]): Promise<number> {
  const data = new Uint8Array(OVERWRITE_BYTES).fill(0xa5);
  const start = performance.now();
  for (const offset of offsets) {
    const tx = await pool.assign();
    try {
      await dmu.write(pool.root, tx, obj, offset, data);
    } finally {
      tx.commit();
    }
  }
  await pool.sync();
  return performance.now() - start;
}

async function rawOverwrites(path: string, offsets: readonly number[]): Promise<number> {
  const data = new Uint8Array(OVERWRITE_BYTES).fill(0xa5);
  const fh = await open(path, 'r+');
  try {
    const start = performance.now();
    for (const offset of offsets) await fh.write(data, 0, OVERWRITE_BYTES, offset);
    await fh.datasync();
    return performance.now() - start;
  } finally {
    await fh.close();
  }
}

async function importTimes(path: string): Promise<{ ms: number; pool: Pool }> {
  const times: number[] = [];
  for (let i = 0; ; i++) {
    const start = performance.now();
    const pool = await importPool(path);
    times.push(performance.now() - start);
    if (i + 1 === IMPORTS) {
      times.sort((a, b) => a - b);
      return { ms: times[Math.floor(IMPORTS / 2)] ?? 0, pool };
    }
    await pool.export();
  }
}

function log(line: string): void {
  process.stderr.write(`  pool: ${line}\n`);
}

/** Median import ms of a fresh pool with one dataset on a sparse file of BIG_VDEV_BYTES. */
async function bigVdevImport(dir: string): Promise<number> {
  const path = join(dir, 'big.img');
  const pool = await Pool.create('big', [[{ disk: await FileDisk.open(path, { createBytes: BIG_VDEV_BYTES }), path }]], env());
  await pool.dsl.create('big/d');
  await pool.export();
  const imp = await importTimes(path);
  await imp.pool.export();
  await rm(path);
  return imp.ms;
}

export async function run(): Promise<Figure[]> {
  const dir = await mkdtemp(join(tmpdir(), 'mirrorpool-bench-'));
  try {
    const poolPath = join(dir, 'pool.img');
    const rawPath = join(dir, 'raw.bin');
    const buf = payload();
    const w = await writes(poolPath, rawPath, buf);
    log(`write ${w.poolMs.toFixed(0)} ms (raw ${w.rawMs.toFixed(0)} ms), ${w.syncs} txg syncs, peak RSS +${(w.rssGrowthBytes / MiB).toFixed(0)} MiB`);
    await w.pool.export();
    const imp = await importTimes(poolPath);
    const pool = imp.pool;
    await warm(poolPath, POOL_WARM_BYTES);
    await warm(rawPath, OBJECT_BYTES);
    const { poolMs: readMs, rawMs: rawReadMs } = await reads(pool, w.obj, rawPath);
    const offsets = overwriteOffsets();
    const overwriteMs = await poolOverwrites(pool, w.obj, offsets);
    log(`overwrites ${overwriteMs.toFixed(0)} ms, status ${JSON.stringify(pool.status().txgStats)}`);
    await pool.export();
    const rawOverwriteMs = await rawOverwrites(rawPath, offsets);
    const bigImportMs = await bigVdevImport(dir);
    log(`import of a fresh pool on a ${BIG_VDEV_BYTES / GiB} GiB sparse file: ${bigImportMs.toFixed(0)} ms`);
    const gibPerS = (ms: number): number => OBJECT_BYTES / GiB / (ms / 1000);
    const perS = (ms: number): number => OVERWRITES / (ms / 1000);
    return [
      figure({
        suite: SUITE,
        name: 'seq write 1 GiB (128K rec)',
        value: gibPerS(w.poolMs),
        unit: 'GiB/s',
        versus: { label: `raw write+${w.syncs} fsync`, value: gibPerS(w.rawMs) },
        target: { op: '>=', ratio: 0.5 },
      }),
      figure({
        suite: SUITE,
        name: 'seq read 1 GiB verified, fresh import',
        value: gibPerS(readMs),
        unit: 'GiB/s',
        versus: { label: 'raw read (page cache)', value: gibPerS(rawReadMs) },
        target: { op: '>=', ratio: 0.5 },
      }),
      figure({
        suite: SUITE,
        name: `random 4K overwrite x${OVERWRITES / 1000}k +sync`,
        value: perS(overwriteMs),
        unit: 'ops/s',
        versus: { label: 'raw pwrite+fsync', value: perS(rawOverwriteMs) },
        target: { op: '>=', ratio: OVERWRITE_BYTES / RECORD_BYTES },
      }),
      figure({
        suite: SUITE,
        name: 'import (1 GiB held), median of 3',
        value: imp.ms,
        unit: 'ms',
        versus: { label: 'limit', value: IMPORT_LIMIT_MS },
        target: { op: '<=', ratio: 1 },
      }),
      figure({
        suite: SUITE,
        name: 'import (fresh pool, 1 TiB vdev), median of 3',
        value: bigImportMs,
        unit: 'ms',
        versus: { label: 'limit', value: IMPORT_LIMIT_MS },
        target: { op: '<=', ratio: 1 },
      }),
      figure({
        suite: SUITE,
        name: 'peak RSS growth during seq write',
        value: w.rssGrowthBytes / MiB,
        unit: 'MiB',
        versus: { label: 'dirtyMax+256M', value: (TUNING.dirtyMaxBytes + RSS_ALLOWANCE_BYTES) / MiB },
        target: { op: '<=', ratio: 1 },
      }),
    ];
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
