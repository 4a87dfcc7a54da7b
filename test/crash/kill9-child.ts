// Child process of the kill -9 test: imports the pool from real files, then runs workload
// operations from `start` on, syncing every few, printing `synced <k>` after each durable sync,
// until it is killed.
import { FileDisk, SystemClock, SystemRandom } from '../../src/lib/index.js';
import * as dmu from '../../src/engine/dmu.js';
import { Pool } from '../../src/engine/pool.js';
import type { ObjectId } from '../../src/engine/types.js';
import { PROGRESS_OBJECT, operation } from './workload.js';

const [dir, startArg] = process.argv.slice(2);
if (dir === undefined || startArg === undefined) throw new Error('usage: kill9-child <dir> <start>');
const paths = [`${dir}/vdev0`, `${dir}/vdev1`];
const leaves = await Promise.all(paths.map(async (path) => ({ disk: await FileDisk.open(path), path })));
const pool = await Pool.import(leaves, { clock: new SystemClock(), random: new SystemRandom(), tuning: { txgTimeoutMs: 0 } });
process.stdout.write('ready\n');
for (let k = Number(startArg); k < 1_000_000; k++) {
  const tx = await pool.assign();
  const op = operation(k);
  await dmu.write(pool.root, tx, op.object as ObjectId, op.offset, op.data);
  const progress = new Uint8Array(8);
  new DataView(progress.buffer).setFloat64(0, k, true);
  await dmu.write(pool.root, tx, PROGRESS_OBJECT as ObjectId, 0, progress);
  tx.commit();
  if (k % 3 === 2) {
    await pool.sync();
    process.stdout.write(`synced ${k}\n`);
  }
}
