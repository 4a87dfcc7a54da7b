// The Random contract: one suite every implementation passes (Prng and SystemRandom). Statistical
// checks use tolerances of about ten standard deviations, so a good generator, even an unseeded
// one, fails them with a probability far below one in 10^20.
import { describe, expect, it } from 'vitest';
import type { ErrorCode } from './errors.js';
import type { Random } from './random.js';

/** Matches a MirrorpoolError with `code` (typed as Error so toThrow takes it). */
const withCode = (code: ErrorCode): Error => expect.objectContaining({ name: 'MirrorpoolError', code }) as Error;

const DRAWS = 1000;

function draws<T>(next: () => T): T[] {
  return Array.from({ length: DRAWS }, next);
}

/** Counts `samples` draws of `bucketOf` into 10 buckets and checks each is within 10% of even. */
function expectUniform(bucketOf: () => number, samples = 100_000): void {
  const counts = new Array<number>(10).fill(0);
  const bad: number[] = [];
  for (let i = 0; i < samples; i++) {
    const b = bucketOf();
    if (Number.isInteger(b) && b >= 0 && b < 10) counts[b] = counts[b]! + 1;
    else bad.push(b);
  }
  expect(bad).toEqual([]);
  // Each count is Binomial(samples, 0.1): sd = 95 at 100k samples; 10% = 10,000 * 0.1 = 10.5 sd.
  const expected = samples / 10;
  for (const count of counts) expect(Math.abs(count - expected), `counts ${counts.join(',')}`).toBeLessThan(expected * 0.1);
}

export function randomContract(name: string, make: () => Random): void {
  describe(`Random contract: ${name}`, () => {
    it('returns u32 values that are 32-bit unsigned integers', () => {
      const r = make();
      const bad = draws(() => r.u32()).filter((x) => !(Number.isInteger(x) && x >= 0 && x < 2 ** 32));
      expect(bad).toEqual([]);
    });

    it('keeps int(n) in [0, n) for n = 1, 2, 3, 2^31 and 2^32', () => {
      const r = make();
      for (const n of [1, 2, 3, 2 ** 31, 2 ** 32]) {
        const bad = draws(() => r.int(n)).filter((x) => !(Number.isInteger(x) && x >= 0 && x < n));
        expect(bad, `int(${n})`).toEqual([]);
      }
      expect(r.int(1)).toBe(0);
    });

    it('reaches both halves of a large range', () => {
      const r = make();
      const high = draws(() => r.int(2 ** 32)).filter((x) => x >= 2 ** 31).length;
      expect(high).toBeGreaterThan(DRAWS * 0.3);
      expect(high).toBeLessThan(DRAWS * 0.7);
    });

    it('rejects a range that is not an integer in [1, 2^32] with EINVAL', () => {
      const r = make();
      for (const n of [0, -1, 1.5, 2 ** 32 + 1, NaN, Infinity]) {
        expect(() => r.int(n), String(n)).toThrow(withCode('EINVAL'));
      }
    });

    it('returns floats in [0, 1)', () => {
      const r = make();
      const bad = draws(() => r.float()).filter((x) => !(x >= 0 && x < 1));
      expect(bad).toEqual([]);
    });

    it('returns u64 values in [0, 2^64)', () => {
      const r = make();
      const values = draws(() => r.u64());
      expect(values.filter((x) => !(x >= 0n && x < 1n << 64n))).toEqual([]);
      expect(values.filter((x) => x >= 1n << 32n).length).toBeGreaterThan(DRAWS * 0.9);
    });

    it('never takes chance(0) and always takes chance(1)', () => {
      const r = make();
      expect(draws(() => r.chance(0)).filter((x) => x)).toEqual([]);
      expect(draws(() => r.chance(1)).filter((x) => !x)).toEqual([]);
    });

    it('takes chance(0.3) about 30% of the time', () => {
      const r = make();
      const taken = Array.from({ length: 10_000 }, () => r.chance(0.3)).filter((x) => x).length;
      // sd = 46; the tolerance is about 10 sd.
      expect(Math.abs(taken - 3000)).toBeLessThan(450);
    });

    it('rejects a probability outside [0, 1] with EINVAL', () => {
      const r = make();
      for (const p of [-0.1, 1.1, NaN, -Infinity]) {
        expect(() => r.chance(p), String(p)).toThrow(withCode('EINVAL'));
      }
    });

    it('fills every byte of buffers of length 0..9 and nothing outside them', () => {
      const r = make();
      for (let length = 0; length <= 9; length++) {
        const seen = new Uint8Array(length);
        for (let trial = 0; trial < 16; trial++) {
          const backing = new Uint8Array(length + 4).fill(0xa5);
          const view = backing.subarray(2, 2 + length);
          view.fill(0);
          r.fill(view);
          expect([backing[0], backing[1], backing[length + 2], backing[length + 3]], `length ${length}`).toEqual([0xa5, 0xa5, 0xa5, 0xa5]);
          for (let i = 0; i < length; i++) seen[i] = seen[i]! | view[i]!;
        }
        // Every position was written: a position left zero by 16 random fills has chance 2^-128.
        for (let i = 0; i < length; i++) expect(seen[i], `length ${length} byte ${i}`).not.toBe(0);
      }
    });

    it('spreads int(10) evenly over 10 buckets', () => {
      const r = make();
      expectUniform(() => r.int(10));
    });

    it('spreads float() evenly over 10 buckets', () => {
      const r = make();
      expectUniform(() => Math.floor(r.float() * 10));
    });

    it('spreads filled bytes evenly over 10 buckets', () => {
      const r = make();
      const buf = new Uint8Array(100_000);
      r.fill(buf);
      let i = 0;
      // 250 of the 256 byte values split evenly into 10 buckets of 25; the other 6 are skipped.
      expectUniform(() => {
        for (;;) {
          const b = buf[i++ % buf.length]!;
          if (b < 250) return Math.floor(b / 25);
        }
      }, 90_000);
    });
  });
}
