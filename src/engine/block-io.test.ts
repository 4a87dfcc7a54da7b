import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ChecksumKind, Prng, SimDisk, bytesEqual, checksum } from '../lib/index.js';
import type { ErrorCode } from '../lib/index.js';
import { BlockIo, type BlockWriteMeta } from './block-io.js';
import { decodeBlockPointer, encodeBlockPointer } from './blkptr.js';
import { BlockType, type Dva, type Guid, HOLE, type Txg, layout } from './types.js';
import { TopVdev } from './vdev.js';

const withCode = (code: ErrorCode): Error => expect.objectContaining({ name: 'MirrorpoolError', code }) as Error;
const DATA_START = 2 * layout.labelBytes;

interface Rig {
  disks: SimDisk[];
  vdevs: TopVdev[];
  io: BlockIo;
}

/** Two plain top-level vdevs, one disk each. */
function rig(seed: number): Rig {
  const random = new Prng(seed);
  const disks = [0, 1].map(() => new SimDisk({ sizeBytes: 4 * layout.labelBytes + 2 * 1024 * 1024, random: random.fork() }));
  const vdevs = disks.map(
    (disk, i) => new TopVdev({ index: i, guid: BigInt(10 + i) as Guid, children: [{ disk, guid: BigInt(20 + i) as Guid, path: `/dev/sim${i}` }] }),
  );
  return { disks, vdevs, io: new BlockIo(vdevs) };
}

function meta(lsize: number, checksumKind: number = ChecksumKind.fletcher4): BlockWriteMeta {
  return { type: BlockType.dnodes, level: 0, checksumKind, birth: 12 as Txg, fill: 1, lsize };
}

function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  new Prng(seed).fill(out);
  return out;
}

const ditto: Dva[] = [
  { vdev: 0, offset: 4096, asize: 4096 },
  { vdev: 1, offset: 65536, asize: 4096 },
];

const ctx = { what: 'dataset tank/a', object: 7, offset: 131072 };

describe('block I/O', () => {
  it('writes every copy and returns a pointer carrying the checksum', async () => {
    const { disks, io } = rig(1);
    const data = pattern(4096, 2);
    const bp = await io.write(data, ditto, meta(4096, ChecksumKind.sha256));
    expect(bp).toMatchObject({ dvas: ditto, lsize: 4096, psize: 4096, type: BlockType.dnodes, birth: 12, fill: 1 });
    expect(bytesEqual(bp.checksum, checksum(ChecksumKind.sha256, data))).toBe(true);
    expect(bytesEqual(await disks[0]!.read(DATA_START + 4096, 4096), data)).toBe(true);
    expect(bytesEqual(await disks[1]!.read(DATA_START + 65536, 4096), data)).toBe(true);
    expect(bytesEqual(await io.read(decodeBlockPointer(encodeBlockPointer(bp)), ctx), data)).toBe(true);
  });

  it('reads a hole as lsize zeros without touching a disk', async () => {
    const { disks, io } = rig(3);
    expect((await io.read(HOLE, ctx)).length).toBe(0);
    const zeros = await io.read({ ...HOLE, lsize: 8192, birth: 5 as Txg }, ctx);
    expect(zeros.length).toBe(8192);
    expect(zeros.every((b) => b === 0)).toBe(true);
    expect(disks.map((d) => d.stats.reads)).toEqual([0, 0]);
  });

  it('heals a corrupt ditto copy from the good one', async () => {
    const { disks, io } = rig(4);
    const data = pattern(4096, 5);
    const bp = await io.write(data, ditto, meta(4096));
    disks[0]!.flipBit(DATA_START + 4096 + 1234, 6);
    expect(bytesEqual(await io.read(bp, ctx), data)).toBe(true);
    expect(bytesEqual(await disks[0]!.read(DATA_START + 4096, 4096), data)).toBe(true);
    expect(io.counters).toMatchObject({ healedBlocks: 1, healedCopies: 1, unrecoverableErrors: 0 });
  });

  it('heals a copy whose device failed the read', async () => {
    const { disks, io } = rig(5);
    const data = pattern(4096, 6);
    const bp = await io.write(data, ditto, meta(4096));
    disks[0]!.injectFault({ op: 'read', effect: { kind: 'eio' }, times: 1 });
    expect(bytesEqual(await io.read(bp, ctx), data)).toBe(true);
    expect(io.counters.healedBlocks).toBe(1);
  });

  it('fails with ECKSUM naming the object and offset when every copy is corrupt', async () => {
    const { disks, io } = rig(6);
    const bp = await io.write(pattern(4096, 7), ditto, meta(4096));
    disks[0]!.flipBit(DATA_START + 4096, 0);
    disks[1]!.flipBit(DATA_START + 65536 + 4095, 7);
    const err = await io.read(bp, ctx).catch((e: unknown) => e);
    expect(err).toEqual(withCode('ECKSUM'));
    expect(err).toMatchObject({ details: { what: 'dataset tank/a', object: 7, offset: 131072 } });
    expect(io.counters.unrecoverableErrors).toBe(1);
  });

  it('fails with EIO when no copy can be read at all', async () => {
    const { disks, io } = rig(7);
    const bp = await io.write(pattern(512, 8), ditto.map((d) => ({ ...d, asize: 512 })), meta(512));
    for (const d of disks) d.injectFault({ op: 'read', effect: { kind: 'eio' } });
    const err = await io.read(bp, ctx).catch((e: unknown) => e);
    expect(err).toEqual(withCode('EIO'));
    expect(err).toMatchObject({ details: { object: 7, offset: 131072 } });
  });

  it('treats a copy on a vdev the pool does not have as bad and reads the next', async () => {
    const { io } = rig(8);
    const data = pattern(4096, 9);
    const bp = await io.write(data, [ditto[1]!], meta(4096));
    const wild = { ...bp, dvas: [{ vdev: 9, offset: 0, asize: 4096 }, ...bp.dvas] };
    expect(bytesEqual(await io.read(wild, ctx), data)).toBe(true);
    const beyond = { ...bp, dvas: [{ vdev: 0, offset: 1 << 30, asize: 4096 }, ...bp.dvas] };
    expect(bytesEqual(await io.read(beyond, ctx), data)).toBe(true);
  });

  it('keeps a block when one copy cannot be written, and fails with EIO when none can', async () => {
    const { disks, io } = rig(10);
    const data = pattern(4096, 11);
    const fault = disks[1]!.injectFault({ op: 'write', effect: { kind: 'eio' } });
    const bp = await io.write(data, ditto, meta(4096));
    expect(io.counters.copyWriteErrors).toBe(1);
    fault.remove();
    disks[0]!.flipBit(DATA_START + 4096, 1);
    await expect(io.read(bp, ctx)).rejects.toEqual(withCode('ECKSUM'));
    for (const d of disks) d.injectFault({ op: 'write', effect: { kind: 'eio' } });
    await expect(io.write(data, ditto, meta(4096))).rejects.toEqual(withCode('EIO'));
  });

  it('returns the data whenever at least one copy is intact, and leaves every copy repaired', async () => {
    const seed = 12;
    const random = new Prng(seed);
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 16 }),
        fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }).filter((bad) => bad.includes(false)),
        async (sectors, bad) => {
          const { disks, io } = rig(random.u32());
          const length = sectors * 512;
          const data = pattern(length, random.u32());
          const dvas = [
            { vdev: 0, offset: 0, asize: length },
            { vdev: 1, offset: 8192 * 2, asize: length },
            { vdev: 0, offset: 8192 * 3, asize: length },
          ];
          const bp = await io.write(data, dvas, meta(length));
          for (const [i, d] of dvas.entries()) {
            if (bad[i] === true) disks[d.vdev]!.flipBit(DATA_START + d.offset + random.int(length), random.int(8));
          }
          expect(bytesEqual(await io.read(bp, ctx), data), `seed ${seed}`).toBe(true);
          for (const d of dvas) {
            // Copies after the first good one are not read, so they are not healed either.
            const firstGood = bad.indexOf(false);
            if (dvas.indexOf(d) > firstGood) continue;
            expect(bytesEqual(await disks[d.vdev]!.read(DATA_START + d.offset, length), data), `seed ${seed}`).toBe(true);
          }
        },
      ),
      { numRuns: 60, seed },
    );
  });
});
