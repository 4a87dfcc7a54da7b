// Fletcher-4 throughput against node:crypto sha256 on the same buffers, in the same run.
import { fletcher4, sha256 } from '../src/lib/index.js';
import { type Figure, figure, rate, GiB, MiB } from './harness.js';

export async function run(): Promise<Figure[]> {
  const figures: Figure[] = [];
  for (const size of [MiB, 128 * 1024]) {
    const buf = new Uint8Array(size);
    for (let i = 0; i < size; i++) buf[i] = (i * 2654435761) >>> 24;
    const f4 = ((await rate(() => fletcher4(buf))) * size) / GiB;
    const sha = ((await rate(() => sha256(buf))) * size) / GiB;
    figures.push(
      figure({
        suite: 'checksum',
        name: `fletcher4 ${size / 1024} KiB`,
        value: f4,
        unit: 'GiB/s',
        versus: { label: 'sha256', value: sha },
        target: { op: '>=', ratio: 3 },
      }),
    );
  }
  return figures;
}
