// `npm run bench`: runs every suite (or those named on the command line), prints one table of
// ratios and writes bench/results/latest.json. Exits 1 with --strict when a target is missed.
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Figure, formatTable, meets } from './harness.js';
import * as checkpoint from './checkpoint.bench.js';
import * as checksum from './checksum.bench.js';
import * as dataset from './dataset.bench.js';
import * as zil from './intent-log.bench.js';
import * as pool from './pool.bench.js';
import * as stream from './stream.bench.js';
import * as transport from './transport.bench.js';

const SUITES: Record<string, { run(): Promise<Figure[]> }> = { checksum, pool, dataset, zil, checkpoint, stream, transport };

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const strict = args.includes('--strict');
  const names = args.filter((a) => !a.startsWith('--'));
  for (const n of names) {
    if (!(n in SUITES)) {
      process.stderr.write(`mirrorpool bench: EINVAL: unknown suite '${n}' (have: ${Object.keys(SUITES).join(', ')})\n`);
      process.exit(2);
    }
  }
  const figures: Figure[] = [];
  for (const [name, suite] of Object.entries(SUITES)) {
    if (names.length > 0 && !names.includes(name)) continue;
    process.stderr.write(`bench: ${name}...\n`);
    figures.push(...(await suite.run()));
  }
  process.stdout.write(`${formatTable(figures)}\n`);
  const machine = { node: process.version, cpus: cpus().length, cpu: cpus()[0]?.model ?? 'unknown' };
  // bench/results/ of the checkout, wherever the command runs from (this file runs as dist/bench/run.js).
  const results = fileURLToPath(new URL('../../bench/results/', import.meta.url));
  await mkdir(results, { recursive: true });
  await writeFile(join(results, 'latest.json'), `${JSON.stringify({ machine, figures }, null, 2)}\n`);
  const missed = figures.filter((f) => !meets(f));
  if (strict && missed.length > 0) process.exit(1);
}

await main();
