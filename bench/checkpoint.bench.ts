// Discarding a pool checkpoint on real files: the space a checkpoint holds goes back to the
// metaslabs in chunks of at most checkpointDiscardMemoryBytes per txg, so memory stays bounded
// however much the checkpoint holds. One dataset of 1 GiB (1 MiB puts, 32 KiB records: about
// 33 000 blocks) is written and synced; a checkpoint is taken and the dataset destroyed, so the
// checkpoint alone holds the whole 1 GiB. The discard then runs with a limit of LIMIT_BYTES
// (several txgs). Figures:
//   - peak memory growth during the discard (V8 heap plus array buffers, sampled every
//     millisecond against the level after a full collection just before it), against the limit
//     plus a constant for the txg machinery (CONSTANT_BYTES); target <= 1;
//   - the time of the discard, against the time the same pool takes to destroy an identical
//     1 GiB dataset with no checkpoint (which frees the same number of blocks at once); reported
//     with a loose target, since the discard adds a txg per chunk on purpose.
// Everything lives in a fresh folder under os.tmpdir(), removed afterwards.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FileDisk, Prng, SystemClock, SystemRandom } from '../src/lib/index.js';
import { Pool, type PoolTuning, keyed } from '../src/engine/index.js';
import { type Figure, figure, fullGc, GiB, MiB } from './harness.js';

const SUITE = 'checkpoint';
const POOL_FILE_BYTES = 3 * GiB;
const VALUE_BYTES = MiB;
const KEYS = 1024;
const RECORDSIZE = '32K';
const LIMIT_BYTES = 2 * MiB;
const CONSTANT_BYTES = 32 * MiB;
/** The discard may take this many times a plain destroy of the same blocks. */
const TIME_RATIO_MAX = 4;
const SEED = 20_261_130;
const TUNING = { txgTimeoutMs: 0, dirtyMaxBytes: 256 * MiB, dirtySyncBytes: 64 * MiB, cacheBytes: 64 * MiB, checkpointDiscardMemoryBytes: LIMIT_BYTES } satisfies PoolTuning;

function log(line: string): void {
  process.stderr.write(`  checkpoint: ${line}\n`);
}

function memoryBytes(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

async function fill(pool: Pool, ds: string, noise: Uint8Array): Promise<void> {
  await pool.dsl.create(ds, new Map([['recordsize', RECORDSIZE]]));
  for (let k = 0; k < KEYS; k++) {
    new DataView(noise.buffer).setFloat64(0, k, true);
    await pool.dsl.withView(ds, 'write', (v) => keyed.putKey(v, () => pool.assign(), `k${k}`, noise));
  }
  await pool.sync();
}

/** Runs `fn` after a full collection; returns its wall time and the peak memory growth meanwhile. */
async function watched(fn: () => Promise<unknown>): Promise<{ ms: number; peakBytes: number }> {
  fullGc();
  await sleep(25);
  const base = memoryBytes();
  let peak = base;
  const timer = setInterval(() => {
    peak = Math.max(peak, memoryBytes());
  }, 1);
  const start = performance.now();
  try {
    await fn();
  } finally {
    clearInterval(timer);
  }
  const ms = performance.now() - start;
  peak = Math.max(peak, memoryBytes());
  return { ms, peakBytes: peak - base };
}

export async function run(): Promise<Figure[]> {
  const dir = await mkdtemp(join(tmpdir(), 'mirrorpool-bench-checkpoint-'));
  try {
    const path = join(dir, 'vdev0');
    const disk = await FileDisk.open(path, { createBytes: POOL_FILE_BYTES });
    const pool = await Pool.create('bench', [[{ disk, path }]], { clock: new SystemClock(), random: new SystemRandom(), tuning: TUNING });
    try {
      const noise = new Uint8Array(VALUE_BYTES);
      new Prng(SEED).fill(noise);
      // The peer: destroying 1 GiB of the same shape with no checkpoint.
      await fill(pool, 'bench/plain', noise);
      const plain = await watched(() => pool.dsl.destroy('bench/plain'));
      for (let i = 0; i < 4; i++) await pool.sync();
      await fill(pool, 'bench/held', noise);
      await pool.checkpoint();
      await pool.dsl.destroy('bench/held');
      await pool.sync();
      const held = pool.checkpointStatus().heldBytes;
      if (held < GiB) throw new Error(`bench: the checkpoint holds only ${(held / MiB).toFixed(1)} MiB`);
      const txgBefore = pool.lastSyncedTxg;
      const discard = await watched(async () => {
        await pool.discardCheckpoint();
        await pool.checkpointDiscardDone();
      });
      const status = pool.checkpointStatus();
      if (status.state !== 'none' || status.discardError !== null) throw new Error(`bench: the discard ended ${status.state}: ${status.discardError}`);
      log(`held ${(held / MiB).toFixed(1)} MiB; discard took ${discard.ms.toFixed(0)} ms over ${pool.lastSyncedTxg - txgBefore} txgs, peak growth ${(discard.peakBytes / MiB).toFixed(1)} MiB`);
      log(`plain destroy of the same shape: ${plain.ms.toFixed(0)} ms, peak growth ${(plain.peakBytes / MiB).toFixed(1)} MiB`);
      await pool.checkInvariants();
      return [
        figure({
          suite: SUITE, name: `discard ${(held / GiB).toFixed(2)} GiB: peak memory growth`, value: discard.peakBytes / MiB, unit: 'MiB',
          versus: { label: `limit ${LIMIT_BYTES / MiB} MiB + ${CONSTANT_BYTES / MiB} MiB`, value: (LIMIT_BYTES + CONSTANT_BYTES) / MiB },
          target: { op: '<=', ratio: 1 },
        }),
        figure({
          suite: SUITE, name: `discard ${(held / GiB).toFixed(2)} GiB: time`, value: discard.ms, unit: 'ms',
          versus: { label: 'destroy of 1 GiB, no checkpoint', value: plain.ms }, target: { op: '<=', ratio: TIME_RATIO_MAX },
        }),
      ];
    } finally {
      await pool.export();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
