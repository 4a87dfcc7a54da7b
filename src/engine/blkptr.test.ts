import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ChecksumKind, Prng, fromHex, toHex } from '../lib/index.js';
import type { ErrorCode } from '../lib/index.js';
import {
  BLKPTR_LEVEL_MAX,
  TOP_VDEVS_MAX,
  blockPointersEqual,
  decodeBlockPointer,
  decodeBlockPointerArray,
  encodeBlockPointer,
  encodeBlockPointers,
} from './blkptr.js';
import { type BlockPointer, BlockType, HOLE, type Txg, layout } from './types.js';

const withCode = (code: ErrorCode): Error => expect.objectContaining({ name: 'MirrorpoolError', code }) as Error;

const SECTOR = layout.sectorBytes;

const sample: BlockPointer = {
  dvas: [
    { vdev: 0, offset: 0x1_2345_6000, asize: 16384 },
    { vdev: 2, offset: 512, asize: 16384 },
  ],
  lsize: 16384,
  psize: 16384,
  type: BlockType.indirect,
  level: 2,
  checksumKind: ChecksumKind.fletcher4,
  birth: 4242 as Txg,
  fill: 300,
  checksum: Uint8Array.from({ length: 32 }, (_, i) => i + 1),
};

const SAMPLE_HEX = [
  '00000000' + '20000000' + 'b0a2910000000000', // DVA 0: vdev 0, 32 sectors, sector 0x91a2b0
  '02000000' + '20000000' + '0100000000000000', // DVA 1: vdev 2, 32 sectors, sector 1
  '00'.repeat(16), // DVA 2: unused
  '02' + '02' + '02' + '01' + '00000000', // count, type indirect, level 2, fletcher4, reserved
  '20000000' + '20000000', // lsize, psize in sectors
  '9210000000000000', // birth 4242
  '2c01000000000000', // fill 300
  '00'.repeat(16), // reserved
  '0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20', // checksum
].join('');

const freedHole: BlockPointer = { ...HOLE, birth: 77 as Txg, level: 1, type: BlockType.data };
// No DVAs, type data, level 1, no checksum kind, sizes 0, birth 77, the rest zero.
const FREED_HOLE_HEX = '00'.repeat(48) + '00010100' + '00'.repeat(12) + '4d00000000000000' + '00'.repeat(56);

const arbSectors = (maxSectors: number): fc.Arbitrary<number> => fc.integer({ min: 1, max: maxSectors }).map((n) => n * SECTOR);

const arbBlockPointer: fc.Arbitrary<BlockPointer> = fc
  .record({
    sectors: fc.integer({ min: 1, max: 2048 }),
    extra: fc.array(fc.integer({ min: 0, max: 64 }), { minLength: 1, maxLength: 3 }),
    offsets: fc.array(fc.integer({ min: 0, max: 2 ** 40 }), { minLength: 3, maxLength: 3 }),
    vdevs: fc.array(fc.integer({ min: 0, max: TOP_VDEVS_MAX - 1 }), { minLength: 3, maxLength: 3 }),
    type: fc.constantFrom(...Object.values(BlockType).filter((t) => t !== BlockType.none)),
    level: fc.integer({ min: 0, max: BLKPTR_LEVEL_MAX }),
    checksumKind: fc.constantFrom(ChecksumKind.fletcher4, ChecksumKind.sha256),
    birth: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    fill: fc.maxSafeNat(),
    checksum: fc.uint8Array({ minLength: 32, maxLength: 32 }),
  })
  .map((r) => {
    const psize = r.sectors * SECTOR;
    // Distinct vdev per DVA slot, or the same vdev at far-apart offsets: never overlapping.
    const dvas = r.extra.map((x, i) => ({
      vdev: r.vdevs[i]!,
      offset: (r.offsets[i]! + i * 2 ** 41) * SECTOR,
      asize: psize + x * SECTOR,
    }));
    return { ...r, dvas, lsize: psize, psize, birth: r.birth as Txg };
  })
  .map(({ dvas, lsize, psize, type, level, checksumKind, birth, fill, checksum }) => ({
    dvas,
    lsize,
    psize,
    type,
    level,
    checksumKind,
    birth,
    fill,
    checksum,
  }));

const arbHole: fc.Arbitrary<BlockPointer> = fc
  .record({
    birth: fc.maxSafeNat(),
    level: fc.integer({ min: 0, max: BLKPTR_LEVEL_MAX }),
    type: fc.constantFrom(...Object.values(BlockType)),
    lsize: fc.oneof(fc.constant(0), arbSectors(64)),
  })
  .map((r) => ({ ...HOLE, ...r, birth: r.birth as Txg }));

describe('block pointer codec', () => {
  it('encodes a fixed pointer to fixed bytes (golden vector)', () => {
    const bytes = encodeBlockPointer(sample);
    expect(bytes.length).toBe(layout.blockPointerBytes);
    expect(toHex(bytes)).toBe(SAMPLE_HEX);
    expect(blockPointersEqual(decodeBlockPointer(fromHex(SAMPLE_HEX)), sample)).toBe(true);
  });

  it('keeps the birth txg of a hole (golden vector)', () => {
    expect(toHex(encodeBlockPointer(freedHole))).toBe(FREED_HOLE_HEX);
    const back = decodeBlockPointer(fromHex(FREED_HOLE_HEX));
    expect(back.dvas).toEqual([]);
    expect(back.birth).toBe(77);
    expect(back.level).toBe(1);
  });

  it('encodes the never-written hole as 128 zero bytes and decodes zeros back to it', () => {
    expect(encodeBlockPointer(HOLE).every((b) => b === 0)).toBe(true);
    expect(blockPointersEqual(decodeBlockPointer(new Uint8Array(128)), HOLE)).toBe(true);
  });

  it('round-trips any valid pointer', () => {
    fc.assert(
      fc.property(fc.oneof(arbBlockPointer, arbHole), (bp) => {
        const back = decodeBlockPointer(encodeBlockPointer(bp));
        expect(blockPointersEqual(back, bp)).toBe(true);
        expect(toHex(encodeBlockPointer(back))).toBe(toHex(encodeBlockPointer(bp)));
      }),
      { numRuns: 500 },
    );
  });

  it('round-trips arrays and zero-pads an indirect block with holes', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(arbBlockPointer, arbHole, fc.constant(HOLE)), { maxLength: 8 }), fc.nat({ max: 4 }), (bps, pad) => {
        const bytes = encodeBlockPointers(bps, (bps.length + pad) * 128);
        const back = decodeBlockPointerArray(bytes);
        expect(back.length).toBe(bps.length + pad);
        bps.forEach((bp, i) => expect(blockPointersEqual(back[i]!, bp)).toBe(true));
        bps.forEach((bp, i) => expect(toHex(bytes.subarray(i * 128, (i + 1) * 128))).toBe(toHex(encodeBlockPointer(bp))));
        back.slice(bps.length).forEach((h) => expect(blockPointersEqual(h, HOLE)).toBe(true));
      }),
      { numRuns: 200 },
    );
  });
});

/** Encodes `sample`, changes it with `edit`, and expects the decoder to refuse it. */
function expectGarbage(edit: (bytes: Uint8Array, view: DataView) => void): void {
  const bytes = encodeBlockPointer(sample);
  edit(bytes, new DataView(bytes.buffer));
  expect(() => decodeBlockPointer(bytes)).toThrow(withCode('EPROTO'));
}

describe('block pointer decode refuses garbage', () => {
  it('refuses an unknown type, level or checksum kind', () => {
    expectGarbage((b) => (b[49] = 99));
    expectGarbage((b) => (b[49] = BlockType.none));
    expectGarbage((b) => (b[50] = BLKPTR_LEVEL_MAX + 1));
    expectGarbage((b) => (b[51] = 0));
    expectGarbage((b) => (b[51] = 7));
  });

  it('refuses more than three DVAs or data in an unused DVA slot', () => {
    expectGarbage((b) => (b[48] = 4));
    expectGarbage((b) => (b[48] = 255));
    expectGarbage((b) => (b[32] = 1));
  });

  it('refuses zero sizes, a psize above an asize, and sizes beyond one disk I/O', () => {
    expectGarbage((b, v) => v.setUint32(56, 0, true));
    expectGarbage((b, v) => v.setUint32(60, 0, true));
    expectGarbage((b, v) => v.setUint32(4, 16, true));
    expectGarbage((b, v) => v.setUint32(4, 0, true));
    expectGarbage((b, v) => (v.setUint32(56, 0xffffffff, true), v.setUint32(60, 0xffffffff, true)));
  });

  it('refuses offsets beyond 2^53, a bad vdev, a txg beyond 2^53 and overlapping copies', () => {
    expectGarbage((b, v) => v.setUint32(12, 0x4000, true));
    expectGarbage((b, v) => v.setUint32(12, 0xffffffff, true));
    expectGarbage((b, v) => v.setUint32(0, TOP_VDEVS_MAX, true));
    expectGarbage((b, v) => v.setUint32(68, 0x200000, true));
    expectGarbage((b, v) => v.setUint32(76, 0xffffffff, true));
    expectGarbage((b) => b.copyWithin(16, 0, 16));
  });

  it('refuses a written block born in txg 0, reserved bytes set, and malformed holes', () => {
    expectGarbage((b) => b.fill(0, 64, 72));
    expectGarbage((b) => (b[53] = 1));
    expectGarbage((b) => (b[90] = 1));
    const hole = encodeBlockPointer(freedHole);
    for (const [at, value] of [[72, 1], [100, 1], [51, 9], [60, 2]] as const) {
      const bad = hole.slice();
      bad[at] = value;
      expect(() => decodeBlockPointer(bad), `byte ${at}`).toThrow(withCode('EPROTO'));
    }
  });

  it('refuses buffers of the wrong length', () => {
    expect(() => decodeBlockPointer(new Uint8Array(127))).toThrow(withCode('EPROTO'));
    expect(() => decodeBlockPointerArray(new Uint8Array(200))).toThrow(withCode('EPROTO'));
  });

  it('never crashes on random bytes or random single-byte corruption (seeded)', () => {
    const seed = 20240611;
    const random = new Prng(seed);
    const base = encodeBlockPointer(sample);
    let valid = 0;
    for (let i = 0; i < 3000; i++) {
      const bytes = new Uint8Array(128);
      if (i % 2 === 0) {
        random.fill(bytes);
      } else {
        bytes.set(base);
        for (let k = 0; k < 1 + random.int(3); k++) bytes[random.int(128)] = random.int(256);
      }
      try {
        const bp = decodeBlockPointer(bytes);
        expect(toHex(encodeBlockPointer(bp)), `seed ${seed} case ${i}`).toBe(toHex(bytes));
        valid++;
      } catch (e) {
        expect(e, `seed ${seed} case ${i}`).toEqual(withCode('EPROTO'));
      }
    }
    expect(valid).toBeGreaterThan(0);
  });

  it('refuses to encode an invalid pointer (a programmer error)', () => {
    expect(() => encodeBlockPointer({ ...sample, psize: 100, lsize: 100 })).toThrow(/invalid pointer/);
    expect(() => encodeBlockPointer({ ...sample, dvas: [] , fill: 0, checksum: new Uint8Array(31) })).toThrow(/invalid pointer/);
  });
});
