import { describe, expect, it } from 'vitest';
import { ChecksumKind, Prng, SimDisk, bytesEqual, checksum, checksumMatches } from '../lib/index.js';
import type { ErrorCode } from '../lib/index.js';
import { type Guid, layout } from './types.js';
import { LEAF_ASIZE_BYTES_MIN, TopVdev, leafLayout } from './vdev.js';

const withCode = (code: ErrorCode): Error => expect.objectContaining({ name: 'MirrorpoolError', code }) as Error;
const LABEL = layout.labelBytes;
const MIB = 1024 * 1024;
const DATA_START = 2 * LABEL;

function disks(count: number, seed: number, sizeBytes = 4 * LABEL + 2 * MIB): SimDisk[] {
  const random = new Prng(seed);
  return Array.from({ length: count }, () => new SimDisk({ sizeBytes, random: random.fork() }));
}

function mirror(ds: readonly SimDisk[], index = 0): TopVdev {
  return new TopVdev({
    index,
    guid: BigInt(100 + index) as Guid,
    children: ds.map((disk, i) => ({ disk, guid: BigInt(1000 + i) as Guid, path: `/dev/sim${i}` })),
  });
}

function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  new Prng(seed).fill(out);
  return out;
}

/** Accepts only bytes whose fletcher-4 matches `data`'s, as the block layer would. */
function acceptFor(data: Uint8Array): (bytes: Uint8Array) => boolean {
  const sum = checksum(ChecksumKind.fletcher4, data);
  return (bytes) => checksumMatches(ChecksumKind.fletcher4, bytes, sum);
}

describe('leaf layout', () => {
  it('puts two labels at the front and two at the label-aligned end, with the space between', () => {
    const size = 10 * LABEL + 7 * 512; // the tail past the last whole label is unused
    const l = leafLayout(size);
    expect(l.labelOffsets).toEqual([0, LABEL, 8 * LABEL, 9 * LABEL]);
    expect(l.dataStartBytes).toBe(2 * LABEL);
    expect(l.asizeBytes).toBe(6 * LABEL);
  });

  it('keeps only the front labels that fit a disk too small for four', () => {
    expect(leafLayout(3 * LABEL).labelOffsets).toEqual([0, LABEL, undefined, undefined]);
    expect(leafLayout(3 * LABEL).asizeBytes).toBe(0);
    expect(leafLayout(100).labelOffsets).toEqual([undefined, undefined, undefined, undefined]);
  });

  it('refuses a vdev on a disk with too little space', () => {
    const [small] = disks(1, 1, 4 * LABEL + LEAF_ASIZE_BYTES_MIN - LABEL);
    expect(() => mirror([small!])).toThrow(withCode('EINVAL'));
  });
});

describe('top-level vdev', () => {
  it('maps DVA offset 0 to leaf byte 2 * labelBytes and reads back what it wrote', async () => {
    const ds = disks(1, 2);
    const v = mirror(ds);
    expect(v.kind).toBe('disk');
    const data = pattern(8192, 3);
    await v.write(4096, data);
    expect(bytesEqual(await ds[0]!.read(DATA_START + 4096, 8192), data)).toBe(true);
    expect(bytesEqual(await v.read(4096, 8192), data)).toBe(true);
    expect(v.stats()).toMatchObject({ readBytes: 8192, writeBytes: 8192, readErrors: 0 });
  });

  it('gives a mirror the asize of its smallest child', () => {
    const [a] = disks(1, 4, 4 * LABEL + 4 * MIB);
    const [b] = disks(1, 5, 4 * LABEL + 2 * MIB);
    const v = mirror([a!, b!]);
    expect(v.kind).toBe('mirror');
    expect(v.asizeBytes).toBe(2 * MIB);
  });

  it('refuses I/O outside its space or not in whole sectors', async () => {
    const v = mirror(disks(1, 6));
    await expect(v.read(v.asizeBytes, 512)).rejects.toEqual(withCode('EINVAL'));
    await expect(v.write(v.asizeBytes - 512, new Uint8Array(1024))).rejects.toEqual(withCode('EINVAL'));
    await expect(v.read(100, 512)).rejects.toEqual(withCode('EINVAL'));
  });

  it('reads from the next child when the first returns EIO and rewrites the failed child', async () => {
    const ds = disks(2, 7);
    const v = mirror(ds);
    const data = pattern(4096, 8);
    await v.write(0, data);
    await ds[0]!.write(DATA_START, new Uint8Array(4096)); // child 0 holds stale bytes...
    const fault = ds[0]!.injectFault({ op: 'read', effect: { kind: 'eio' }, times: 1 }); // ...and fails its read
    expect(bytesEqual(await v.read(0, 4096, acceptFor(data)), data)).toBe(true);
    fault.remove();
    expect(bytesEqual(await ds[0]!.read(DATA_START, 4096), data)).toBe(true);
    const s = v.stats();
    expect(s.heals).toBe(1);
    expect(s.children[0]).toMatchObject({ readErrors: 1, heals: 1 });
    expect(s.children[1]).toMatchObject({ readErrors: 0, heals: 0 });
  });

  it('reads past a flipped bit on one child and heals that child', async () => {
    const ds = disks(3, 9);
    const v = mirror(ds);
    const data = pattern(8192, 10);
    await v.write(512, data);
    ds[0]!.flipBit(DATA_START + 512 + 77, 3);
    ds[1]!.flipBit(DATA_START + 512 + 8000, 0);
    expect(bytesEqual(await v.read(512, 8192, acceptFor(data)), data)).toBe(true);
    for (const d of ds) expect(bytesEqual(await d.read(DATA_START + 512, 8192), data)).toBe(true);
    const s = v.stats();
    expect(s.children.map((c) => c.checksumErrors)).toEqual([1, 1, 0]);
    expect(s.heals).toBe(2);
  });

  it('fails with ECKSUM and the location when every child is corrupt', async () => {
    const ds = disks(2, 11);
    const v = mirror(ds, 3);
    const data = pattern(4096, 12);
    await v.write(8192, data);
    ds[0]!.flipBit(DATA_START + 8192, 0);
    ds[1]!.injectFault({ op: 'read', effect: { kind: 'flip' } });
    const err = await v.read(8192, 4096, acceptFor(data)).catch((e: unknown) => e);
    expect(err).toEqual(withCode('ECKSUM'));
    expect(err).toMatchObject({ details: { vdev: 3, offset: 8192, length: 4096 } });
    expect(v.stats().checksumErrors).toBe(1);
  });

  it('fails with EIO and the location when no child can be read', async () => {
    const ds = disks(2, 13);
    const v = mirror(ds);
    await v.write(0, pattern(512, 14));
    for (const d of ds) d.injectFault({ op: 'read', effect: { kind: 'eio' } });
    const err = await v.read(0, 512).catch((e: unknown) => e);
    expect(err).toEqual(withCode('EIO'));
    expect(err).toMatchObject({ details: { vdev: 0, offset: 0, length: 512 } });
  });

  it('succeeds a write one child fails, marks that child faulted and reads the others first', async () => {
    const ds = disks(2, 15);
    const v = mirror(ds);
    ds[0]!.injectFault({ op: 'write', effect: { kind: 'eio' }, times: 1 });
    const data = pattern(4096, 16);
    await v.write(0, data);
    const s = v.stats();
    expect(s.children[0]).toMatchObject({ faulted: true, writeErrors: 1 });
    expect(s.children[1]).toMatchObject({ faulted: false, writeErrors: 0 });
    // Without an accept check the stale child must not be believed: the healthy one goes first.
    expect(bytesEqual(await v.read(0, 4096), data)).toBe(true);
    expect(ds[0]!.stats.reads).toBe(0);
  });

  it('fails a write with EIO when every child fails it', async () => {
    const ds = disks(2, 17);
    const v = mirror(ds);
    for (const d of ds) d.injectFault({ op: 'write', effect: { kind: 'eio' } });
    await expect(v.write(0, pattern(512, 18))).rejects.toEqual(withCode('EIO'));
    expect(v.stats().writeErrors).toBe(1);
  });

  it('makes writes durable on every child with sync', async () => {
    const ds = disks(2, 19);
    const v = mirror(ds);
    const data = pattern(1024, 20);
    await v.write(1024, data);
    await v.sync();
    for (const d of ds) expect(bytesEqual(d.durableBytes(DATA_START + 1024, 1024), data)).toBe(true);
    ds[1]!.injectFault({ op: 'sync', effect: { kind: 'eio' } });
    await v.sync();
    expect(v.stats().children[1]!.faulted).toBe(true);
    ds[0]!.injectFault({ op: 'sync', effect: { kind: 'eio' } });
    await expect(v.sync()).rejects.toEqual(withCode('EIO'));
  });

  it('reads and writes the label areas of a leaf at both ends', async () => {
    const ds = disks(1, 21);
    const v = mirror(ds);
    const leaf = v.children[0]!;
    const size = ds[0]!.size();
    for (const [label, base] of [[0, 0], [1, LABEL], [2, size - 2 * LABEL], [3, size - LABEL]] as const) {
      const data = pattern(1024, 30 + label);
      await leaf.writeLabel(label, 2048, data);
      expect(bytesEqual(await ds[0]!.read(base + 2048, 1024), data)).toBe(true);
      expect(bytesEqual(await leaf.readLabel(label, 2048, 1024), data)).toBe(true);
    }
  });
});

describe('leaf write merging', () => {
  it('merges back-to-back writes that wait behind the ones in flight, and lands every byte', async () => {
    const [disk] = disks(1, 31);
    if (disk === undefined) throw new Error('no disk');
    const v = mirror([disk]);
    const writes = Array.from({ length: 64 }, (_, i) => ({ offset: i * 4096, data: pattern(4096, 100 + i) }));
    await Promise.all(writes.map((w) => v.write(w.offset, w.data)));
    expect(disk.stats.writes).toBeLessThan(writes.length);
    for (const w of writes) expect(bytesEqual(await v.read(w.offset, 4096), w.data), `offset ${w.offset}`).toBe(true);
  });

  it('fails every write merged into a write the disk refused', async () => {
    const [disk] = disks(1, 32);
    if (disk === undefined) throw new Error('no disk');
    const v = mirror([disk]);
    const start = leafLayout(disk.size()).dataStartBytes;
    disk.injectFault({ op: 'write', range: [start + 40 * 4096, start + 41 * 4096], effect: { kind: 'eio' } });
    const results = await Promise.allSettled(Array.from({ length: 64 }, (_, i) => v.write(i * 4096, pattern(4096, i))));
    expect(results[40]?.status).toBe('rejected');
    expect(results[0]?.status).toBe('fulfilled'); // issued at once, alone
  });
});
