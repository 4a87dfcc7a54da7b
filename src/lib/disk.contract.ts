// The Disk contract: one suite every implementation passes (FileDisk on a temp file, SimDisk in
// memory). See the rules in disk.ts. `make` returns a fresh zeroed disk of `sizeBytes` and a
// cleanup that closes it and removes anything it left behind.
import { afterEach, describe, expect, it } from 'vitest';
import type { Disk } from './disk.js';
import type { ErrorCode } from './errors.js';
import { limits } from './limits.js';
import { Prng } from './prng.js';

export type MakeDisk = (sizeBytes: number) => Promise<{ disk: Disk; cleanup(): Promise<void> }>;

/** Matches a MirrorpoolError with `code` (typed as Error so toThrow takes it). */
const withCode = (code: ErrorCode): Error => expect.objectContaining({ name: 'MirrorpoolError', code }) as Error;

const SECTOR = limits.sectorBytes;
const SIZE = 128 * SECTOR;

function pattern(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  new Prng(seed).fill(out);
  return out;
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** Calls `op` so a synchronous throw and a rejection look the same. */
async function attempt<T>(op: () => Promise<T>): Promise<T> {
  return op();
}

export function diskContract(name: string, make: MakeDisk): void {
  describe(`Disk contract: ${name}`, () => {
    const cleanups: Array<() => Promise<void>> = [];

    async function fresh(sizeBytes = SIZE): Promise<Disk> {
      const made = await make(sizeBytes);
      cleanups.push(() => made.cleanup());
      return made.disk;
    }

    /** A disk whose every byte is pattern(seed) and which has been synced. */
    async function filled(seed: number, sizeBytes = SIZE): Promise<{ disk: Disk; contents: Uint8Array }> {
      const disk = await fresh(sizeBytes);
      const contents = pattern(seed, sizeBytes);
      await disk.write(0, contents);
      await disk.sync();
      return { disk, contents };
    }

    afterEach(async () => {
      for (const cleanup of cleanups.splice(0)) await cleanup();
    });

    it('reports the size it was made with', async () => {
      const disk = await fresh();
      expect(disk.size()).toBe(SIZE);
    });

    it('reads back what was written', async () => {
      const disk = await fresh();
      const writes: Array<[number, Uint8Array]> = [
        [0, pattern(1, SECTOR)],
        [5 * SECTOR, pattern(2, 3 * SECTOR)],
        [SIZE - 2 * SECTOR, pattern(3, 2 * SECTOR)],
      ];
      for (const [offset, data] of writes) await disk.write(offset, data);
      for (const [offset, data] of writes) expect(same(await disk.read(offset, data.length), data), `at ${offset}`).toBe(true);
    });

    it('reads back a durable write, and checks its range like write', async () => {
      const disk = await fresh();
      const data = pattern(4, 2 * SECTOR);
      await disk.writeDurable(3 * SECTOR, data);
      expect(same(await disk.read(3 * SECTOR, data.length), data)).toBe(true);
      await expect(disk.writeDurable(SIZE - SECTOR, data)).rejects.toMatchObject({ code: 'EINVAL' });
      await expect(disk.writeDurable(1, data)).rejects.toMatchObject({ code: 'EINVAL' });
    });

    it('reads zeros from sectors never written', async () => {
      const disk = await fresh();
      await disk.write(2 * SECTOR, pattern(4, SECTOR));
      expect(same(await disk.read(0, 2 * SECTOR), new Uint8Array(2 * SECTOR))).toBe(true);
      expect(same(await disk.read(3 * SECTOR, SIZE - 3 * SECTOR), new Uint8Array(SIZE - 3 * SECTOR))).toBe(true);
    });

    it('allows zero-length reads and writes anywhere up to the end', async () => {
      const disk = await fresh();
      expect((await disk.read(SIZE, 0)).length).toBe(0);
      expect((await disk.read(0, 0)).length).toBe(0);
      await disk.write(SIZE, new Uint8Array(0));
      expect(same(await disk.read(0, SIZE), new Uint8Array(SIZE))).toBe(true);
    });

    it('reads and writes the largest allowed I/O in full', async () => {
      const max = limits.diskIoBytesMax;
      const disk = await fresh(max + 2 * SECTOR);
      const data = pattern(5, max);
      await disk.write(SECTOR, data);
      const back = await disk.read(SECTOR, max);
      expect(back.length).toBe(max);
      expect(same(back, data)).toBe(true);
      expect(same(await disk.read(0, SECTOR), new Uint8Array(SECTOR))).toBe(true);
      expect(same(await disk.read(max + SECTOR, SECTOR), new Uint8Array(SECTOR))).toBe(true);
    });

    const badRanges: Array<[string, number, number]> = [
      ['an unaligned offset', 1, SECTOR],
      ['an offset one short of a sector', SECTOR - 1, SECTOR],
      ['an unaligned length', 0, SECTOR + 1],
      ['a length under a sector', 0, 1],
      ['a negative offset', -SECTOR, SECTOR],
      ['a negative length', 0, -SECTOR],
      ['a NaN offset', NaN, SECTOR],
      ['a NaN length', 0, NaN],
      ['an infinite length', 0, Infinity],
      ['a fractional offset', 0.5, SECTOR],
      ['a range past the end', SIZE - SECTOR, 2 * SECTOR],
      ['an offset at the end', SIZE, SECTOR],
      ['an offset far past the end', 2 * SIZE, SECTOR],
      ['more than diskIoBytesMax', 0, limits.diskIoBytesMax + SECTOR],
    ];

    it.each(badRanges)('rejects a read with %s with EINVAL', async (_what, offset, length) => {
      const { disk } = await filled(6);
      await expect(attempt(() => disk.read(offset, length))).rejects.toEqual(withCode('EINVAL'));
    });

    // A write's length is its buffer's, which cannot be negative, NaN or infinite.
    const badWriteRanges = badRanges.filter(([, , length]) => Number.isSafeInteger(length) && length >= 0);

    it.each(badWriteRanges)('rejects a write with %s with EINVAL and changes nothing', async (_what, offset, length) => {
      const { disk, contents } = await filled(7);
      const data = pattern(8, length);
      await expect(attempt(() => disk.write(offset, data))).rejects.toEqual(withCode('EINVAL'));
      expect(same(await disk.read(0, SIZE), contents)).toBe(true);
      expect(disk.size()).toBe(SIZE);
    });

    it('writes parts back to back as one write of their concatenation', async () => {
      const { disk, contents } = await filled(20);
      // Parts of any length (here 1 and 511 bytes among whole sectors) as long as the total is whole sectors.
      const parts = [pattern(21, 3 * SECTOR), pattern(22, 1), pattern(23, SECTOR - 1), new Uint8Array(0), pattern(24, 2 * SECTOR)];
      const total = parts.reduce((n, p) => n + p.length, 0);
      await disk.writev(4 * SECTOR, parts);
      const expected = contents.slice();
      let at = 4 * SECTOR;
      for (const p of parts) {
        expected.set(p, at);
        at += p.length;
      }
      expect(same(await disk.read(0, SIZE), expected)).toBe(true);
      // More parts than one system call takes (IOV_MAX is 1024 on Linux), from views into one buffer.
      const many = pattern(25, 1536 * 32);
      await disk.writev(0, Array.from({ length: 1536 }, (_, i) => many.subarray(i * 32, (i + 1) * 32)));
      expect(same(await disk.read(0, many.length), many)).toBe(true);
      expect(same(await disk.read(many.length, SIZE - many.length), contents.subarray(many.length))).toBe(true);
      expect(total).toBe(6 * SECTOR);
    });

    it.each(badWriteRanges)('rejects a gathered write with %s with EINVAL and changes nothing', async (_what, offset, length) => {
      const { disk, contents } = await filled(26);
      const data = pattern(27, length);
      const cut = Math.floor(length / 3);
      await expect(attempt(() => disk.writev(offset, [data.subarray(0, cut), data.subarray(cut)]))).rejects.toEqual(withCode('EINVAL'));
      expect(same(await disk.read(0, SIZE), contents)).toBe(true);
    });

    it('grows with zeros and keeps the old data', async () => {
      const { disk, contents } = await filled(9);
      await disk.resize(2 * SIZE);
      expect(disk.size()).toBe(2 * SIZE);
      expect(same(await disk.read(0, SIZE), contents)).toBe(true);
      expect(same(await disk.read(SIZE, SIZE), new Uint8Array(SIZE))).toBe(true);
      const tail = pattern(10, SECTOR);
      await disk.write(2 * SIZE - SECTOR, tail);
      expect(same(await disk.read(2 * SIZE - SECTOR, SECTOR), tail)).toBe(true);
    });

    it('shrinks, refusing I/O past the new end with EINVAL', async () => {
      const { disk, contents } = await filled(11);
      const half = SIZE / 2;
      await disk.resize(half);
      expect(disk.size()).toBe(half);
      expect(same(await disk.read(0, half), contents.subarray(0, half))).toBe(true);
      await expect(attempt(() => disk.read(half, SECTOR))).rejects.toEqual(withCode('EINVAL'));
      await expect(attempt(() => disk.read(half - SECTOR, 2 * SECTOR))).rejects.toEqual(withCode('EINVAL'));
      await expect(attempt(() => disk.write(half, pattern(12, SECTOR)))).rejects.toEqual(withCode('EINVAL'));
    });

    it('forgets what was cut off when it grows again after shrinking', async () => {
      const { disk } = await filled(13);
      await disk.resize(SIZE / 2);
      await disk.resize(SIZE);
      expect(same(await disk.read(SIZE / 2, SIZE / 2), new Uint8Array(SIZE / 2))).toBe(true);
    });

    it('can shrink to zero bytes and grow back', async () => {
      const { disk } = await filled(14);
      await disk.resize(0);
      expect(disk.size()).toBe(0);
      expect((await disk.read(0, 0)).length).toBe(0);
      await expect(attempt(() => disk.read(0, SECTOR))).rejects.toEqual(withCode('EINVAL'));
      await disk.resize(SECTOR);
      expect(same(await disk.read(0, SECTOR), new Uint8Array(SECTOR))).toBe(true);
    });

    it('rejects a bad size for resize with EINVAL and keeps the disk as it was', async () => {
      const { disk, contents } = await filled(15);
      for (const bytes of [-SECTOR, SECTOR + 1, 1, 0.5, NaN, Infinity, limits.diskBytesMax + SECTOR]) {
        await expect(attempt(() => disk.resize(bytes)), String(bytes)).rejects.toEqual(withCode('EINVAL'));
      }
      expect(disk.size()).toBe(SIZE);
      expect(same(await disk.read(0, SIZE), contents)).toBe(true);
    });

    it('resolves sync, with and without writes since the last one', async () => {
      const disk = await fresh();
      await disk.sync();
      await disk.write(0, pattern(16, SECTOR));
      await disk.sync();
      await disk.sync();
      expect(same(await disk.read(0, SECTOR), pattern(16, SECTOR))).toBe(true);
    });

    it('lands every one of many concurrent non-overlapping writes', async () => {
      const disk = await fresh();
      const random = new Prng(17);
      const order = Array.from({ length: SIZE / SECTOR }, (_, i) => i);
      for (let i = order.length - 1; i > 0; i--) {
        const j = random.int(i + 1);
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      const expected = pattern(18, SIZE);
      await Promise.all(order.map((i) => disk.write(i * SECTOR, expected.slice(i * SECTOR, (i + 1) * SECTOR))));
      expect(same(await disk.read(0, SIZE), expected)).toBe(true);
    });

    it('serves concurrent reads of the same range', async () => {
      const { disk, contents } = await filled(19);
      const reads = await Promise.all(Array.from({ length: 8 }, () => disk.read(SECTOR, 4 * SECTOR)));
      for (const r of reads) expect(same(r, contents.subarray(SECTOR, 5 * SECTOR))).toBe(true);
    });

    it('hands the caller a buffer of its own on read', async () => {
      const { disk, contents } = await filled(20);
      const first = await disk.read(0, 2 * SECTOR);
      const second = await disk.read(0, 2 * SECTOR);
      expect(first.buffer).not.toBe(second.buffer);
      first.fill(0xee);
      expect(same(second, contents.subarray(0, 2 * SECTOR))).toBe(true);
      expect(same(await disk.read(0, 2 * SECTOR), contents.subarray(0, 2 * SECTOR))).toBe(true);
    });

    it('reads into a buffer it is given, at the view\'s own offset, and refuses one of another length', async () => {
      const { disk, contents } = await filled(23);
      const backing = new Uint8Array(5 * SECTOR).fill(0x77);
      const into = backing.subarray(SECTOR, 4 * SECTOR);
      expect(await disk.read(2 * SECTOR, 3 * SECTOR, into)).toBe(into);
      expect(same(into, contents.subarray(2 * SECTOR, 5 * SECTOR))).toBe(true);
      expect(backing[SECTOR - 1]).toBe(0x77);
      expect(backing[4 * SECTOR]).toBe(0x77);
      await expect(attempt(() => disk.read(0, SECTOR, new Uint8Array(2 * SECTOR)))).rejects.toEqual(withCode('EINVAL'));
    });

    it('lets the caller reuse its buffer once a write resolves', async () => {
      const disk = await fresh();
      const data = pattern(21, 2 * SECTOR);
      const expected = data.slice();
      await disk.write(SECTOR, data);
      data.fill(0xee);
      expect(same(await disk.read(SECTOR, 2 * SECTOR), expected)).toBe(true);
      await disk.sync();
      expect(same(await disk.read(SECTOR, 2 * SECTOR), expected)).toBe(true);
    });

    it('writes from a view at its own offset', async () => {
      const disk = await fresh();
      const backing = pattern(22, 3 * SECTOR);
      await disk.write(0, backing.subarray(SECTOR, 2 * SECTOR));
      expect(same(await disk.read(0, SECTOR), backing.subarray(SECTOR, 2 * SECTOR))).toBe(true);
      expect(same(await disk.read(SECTOR, SECTOR), new Uint8Array(SECTOR))).toBe(true);
    });

    it('can be closed twice', async () => {
      const disk = await fresh();
      await disk.close();
      await disk.close();
    });
  });
}
