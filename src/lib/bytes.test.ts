import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  bytesEqual,
  concatBytes,
  fromHex,
  readU64,
  readU64Number,
  toHex,
  writeU64,
  writeU64Number,
} from './bytes.js';
import type { ErrorCode } from './errors.js';

/** Matches a MirrorpoolError with `code` (typed as Error so toThrow takes it). */
const withCode = (code: ErrorCode): Error => expect.objectContaining({ name: 'MirrorpoolError', code }) as Error;

describe('bytesEqual', () => {
  it('compares length and content', () => {
    expect(bytesEqual(new Uint8Array(0), new Uint8Array(0))).toBe(true);
    expect(bytesEqual(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 3]))).toBe(true);
    expect(bytesEqual(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 4]))).toBe(false);
    expect(bytesEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2, 0]))).toBe(false);
  });

  it('compares views by their own bytes, not their backing buffers', () => {
    const backing = new Uint8Array([9, 1, 2, 9]);
    expect(bytesEqual(backing.subarray(1, 3), new Uint8Array([1, 2]))).toBe(true);
  });
});

describe('hex', () => {
  it('round-trips any bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const hex = toHex(bytes);
        expect(hex).toMatch(/^[0-9a-f]*$/);
        expect(hex.length).toBe(bytes.length * 2);
        expect(bytesEqual(fromHex(hex), bytes)).toBe(true);
      }),
      { seed: 1 },
    );
  });

  it('encodes only the bytes of a view', () => {
    const backing = new Uint8Array([0xaa, 0x01, 0xff, 0xbb]);
    expect(toHex(backing.subarray(1, 3))).toBe('01ff');
  });

  it('accepts upper-case digits', () => {
    expect(toHex(fromHex('DEADbeef'))).toBe('deadbeef');
  });

  it('rejects odd lengths and non-hex digits with EINVAL', () => {
    for (const bad of ['abc', 'zz', '0g', ' 00', '00 ', '0x00', '-1']) {
      expect(() => fromHex(bad), bad).toThrow(withCode('EINVAL'));
    }
  });
});

describe('concatBytes', () => {
  it('joins parts in order', () => {
    const backing = new Uint8Array([7, 8, 9]);
    const out = concatBytes([new Uint8Array([1, 2]), new Uint8Array(0), backing.subarray(1), new Uint8Array([3])]);
    expect([...out]).toEqual([1, 2, 8, 9, 3]);
  });

  it('returns a fresh empty array for no parts', () => {
    expect(concatBytes([]).length).toBe(0);
  });

  it('copies, so later changes to a part do not show', () => {
    const part = new Uint8Array([1, 2]);
    const out = concatBytes([part]);
    part[0] = 9;
    expect([...out]).toEqual([1, 2]);
  });
});

describe('64-bit fields', () => {
  it('round-trips any u64 at any offset', () => {
    fc.assert(
      fc.property(fc.bigUintN(64), fc.nat({ max: 8 }), (value, offset) => {
        const buf = new Uint8Array(16);
        writeU64(buf, offset, value);
        expect(readU64(buf, offset)).toBe(value);
      }),
      { seed: 2 },
    );
  });

  it('writes little-endian', () => {
    const buf = new Uint8Array(8);
    writeU64(buf, 0, 0x0102030405060708n);
    expect(toHex(buf)).toBe('0807060504030201');
    writeU64Number(buf, 0, 0x1f_0000_0001);
    expect(toHex(buf)).toBe('010000001f000000');
  });

  it('reads from a view at its own offset', () => {
    const backing = new Uint8Array(12);
    writeU64(backing, 3, 42n);
    expect(readU64(backing.subarray(3, 11), 0)).toBe(42n);
    expect(readU64Number(backing.subarray(3, 11), 0)).toBe(42);
  });

  it('round-trips every safe integer through the Number variants', () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), (value) => {
        const buf = new Uint8Array(8);
        writeU64Number(buf, 0, value);
        expect(readU64Number(buf, 0)).toBe(value);
        expect(readU64(buf, 0)).toBe(BigInt(value));
      }),
      { seed: 3 },
    );
    const buf = new Uint8Array(8);
    writeU64Number(buf, 0, Number.MAX_SAFE_INTEGER);
    expect(readU64Number(buf, 0)).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('rejects fields past the end, negative and fractional offsets with EINVAL', () => {
    const buf = new Uint8Array(8);
    for (const offset of [1, 8, -1, 0.5, NaN, Infinity]) {
      expect(() => readU64(buf, offset), `read ${offset}`).toThrow(withCode('EINVAL'));
      expect(() => readU64Number(buf, offset), `readNumber ${offset}`).toThrow(withCode('EINVAL'));
      expect(() => writeU64(buf, offset, 1n), `write ${offset}`).toThrow(withCode('EINVAL'));
      expect(() => writeU64Number(buf, offset, 1), `writeNumber ${offset}`).toThrow(withCode('EINVAL'));
    }
    expect(() => readU64(new Uint8Array(7), 0)).toThrow(withCode('EINVAL'));
    expect([...buf]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('rejects values that do not fit 64 unsigned bits with EINVAL and writes nothing', () => {
    const buf = new Uint8Array(8);
    expect(() => writeU64(buf, 0, 1n << 64n)).toThrow(withCode('EINVAL'));
    expect(() => writeU64(buf, 0, -1n)).toThrow(withCode('EINVAL'));
    for (const value of [-1, 0.5, 2 ** 53, NaN, Infinity]) {
      expect(() => writeU64Number(buf, 0, value), String(value)).toThrow(withCode('EINVAL'));
    }
    expect([...buf]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('refuses to read a value above 2^53 as a number with EPROTO', () => {
    const buf = new Uint8Array(8);
    writeU64(buf, 0, 1n << 53n);
    expect(() => readU64Number(buf, 0)).toThrow(withCode('EPROTO'));
    writeU64(buf, 0, 0xffff_ffff_ffff_ffffn);
    expect(() => readU64Number(buf, 0)).toThrow(withCode('EPROTO'));
    writeU64(buf, 0, (1n << 53n) - 1n);
    expect(readU64Number(buf, 0)).toBe(2 ** 53 - 1);
  });
});
