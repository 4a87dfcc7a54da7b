// SendSource.chunks(): the stream's bytes staged in one reused buffer for consumers that copy each
// chunk before asking for the next (an RPC stream). The chunks, copied as they come, make exactly
// the stream that frames() yields; BEGIN, and a part too large for the buffer, come alone.
import { describe, expect, it } from 'vitest';
import { Prng, SimClock, SimDisk, bytesEqual, concatBytes } from '../lib/index.js';
import { Pool, keyed } from '../engine/index.js';
import { sendSource } from './send-source.js';

async function put(pool: Pool, ds: string, key: string, seed: number, bytes: number): Promise<void> {
  const data = new Uint8Array(bytes);
  new Prng(seed).fill(data);
  await pool.dsl.withView(ds, 'write', (v) => keyed.putKey(v, () => pool.assign(), key, data));
}

describe('SendSource', () => {
  it('stages the stream in chunks of one reused buffer that, copied as they come, make the stream', async () => {
    const random = new Prng(60);
    const disk = new SimDisk({ sizeBytes: 96 * 1024 * 1024, random: random.fork() });
    const pool = await Pool.create('src', [[{ disk, path: 'src0' }]], { clock: new SimClock(), random, tuning: { txgTimeoutMs: 0 } });
    await pool.dsl.create('src/small', new Map([['recordsize', '16K']]));
    await pool.dsl.create('src/large', new Map([['recordsize', '256K']]));
    for (let i = 0; i < 6; i++) await put(pool, 'src/small', `k${i}`, 60 + i, 300_000);
    await put(pool, 'src/large', 'big', 70, 3 * 1024 * 1024);
    await pool.dsl.snapshot('src/small@s');
    await pool.dsl.snapshot('src/large@s');
    for (const to of ['src/small@s', 'src/large@s']) {
      const source = await sendSource(pool, { to });
      const copies: Uint8Array[] = [];
      const buffers = new Set<ArrayBufferLike>();
      let whole = 0;
      for await (const chunk of source.chunks()) {
        copies.push(chunk.slice());
        buffers.add(chunk.buffer);
        if (chunk.length === 256 * 1024) whole++;
        chunk.fill(0x5a); // the consumer is done with it
      }
      const frames: Uint8Array[] = [];
      for await (const frame of source.frames()) frames.push(frame);
      expect(bytesEqual(concatBytes(copies), concatBytes(frames)), to).toBe(true);
      // BEGIN comes alone, so that the receiver checks its target while the first blocks are read.
      expect(bytesEqual(copies[0] ?? new Uint8Array(0), frames[0] ?? new Uint8Array(1)), to).toBe(true);
      if (to === 'src/small@s') {
        // About 2 MiB of 16 KiB frames: several chunks, all of the one staging buffer.
        expect(copies.length, to).toBeGreaterThan(4);
        expect(buffers.size, to).toBe(1);
      } else {
        // Twelve 256 KiB blocks, as large as the staging buffer: each passes through whole.
        expect(whole, to).toBe(12);
      }
    }
  });
});
