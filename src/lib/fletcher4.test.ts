// fletcher4() against a slow, obviously correct BigInt reference: every length 0..300 at every
// alignment, inputs larger than one WebAssembly chunk, incremental splits, 64-bit wraparound, and
// the fixed vectors in fletcher4.vectors.json (computed with the reference, never with fletcher4).
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AssertionFailure } from './assert.js';
import { toHex } from './bytes.js';
import { FLETCHER4_DIGEST_BYTES, Fletcher4, fletcher4 } from './fletcher4.js';
import { limits } from './limits.js';
import { Prng } from './prng.js';

const U64 = 1n << 64n;

interface Accumulators {
  a: bigint;
  b: bigint;
  c: bigint;
  d: bigint;
}

/** Four accumulators over 32-bit LE words, zero-padded tail; `wrap` false keeps the exact sums. */
function referenceAccumulators(data: Uint8Array, wrap = true): Accumulators {
  const fold = (x: bigint): bigint => (wrap ? x % U64 : x);
  const padded = new Uint8Array(Math.ceil(data.length / 4) * 4);
  padded.set(data);
  let a = 0n;
  let b = 0n;
  let c = 0n;
  let d = 0n;
  for (let i = 0; i < padded.length; i += 4) {
    let w = 0n;
    for (let k = 3; k >= 0; k--) w = w * 256n + BigInt(padded[i + k]!);
    a = fold(a + w);
    b = fold(b + a);
    c = fold(c + b);
    d = fold(d + c);
  }
  return { a, b, c, d };
}

function reference(data: Uint8Array): Uint8Array {
  const { a, b, c, d } = referenceAccumulators(data);
  const out = new Uint8Array(FLETCHER4_DIGEST_BYTES);
  [a, b, c, d].forEach((acc, i) => {
    let x = acc;
    for (let k = 0; k < 8; k++) {
      out[i * 8 + k] = Number(x & 0xffn);
      x >>= 8n;
    }
  });
  return out;
}

function randomBytes(random: Prng, length: number): Uint8Array {
  const out = new Uint8Array(length);
  random.fill(out);
  return out;
}

interface VectorSpec {
  name: string;
  ascii?: string;
  hex?: string;
  length?: number;
  fill?: number;
  pattern?: 'index';
  digest: string;
}

function vectorInput(spec: VectorSpec): Uint8Array {
  if (spec.ascii !== undefined) return new TextEncoder().encode(spec.ascii);
  if (spec.hex !== undefined) return new Uint8Array(Buffer.from(spec.hex, 'hex'));
  const out = new Uint8Array(spec.length ?? 0);
  for (let i = 0; i < out.length; i++) out[i] = spec.fill ?? i & 0xff;
  return out;
}

const vectorFile = JSON.parse(readFileSync(new URL('./fletcher4.vectors.json', import.meta.url), 'utf8')) as {
  vectors: VectorSpec[];
};

describe('fletcher4', () => {
  it('matches the reference for every length 0..300 at every alignment', () => {
    const random = new Prng(0x5eed_f4);
    for (let length = 0; length <= 300; length++) {
      const backing = randomBytes(random, length + 8);
      for (let offset = 0; offset < 8; offset++) {
        const input = backing.subarray(offset, offset + length);
        expect(toHex(fletcher4(input)), `length ${length} offset ${offset}`).toBe(toHex(reference(input)));
      }
    }
  });

  it('matches the reference on inputs that cross WebAssembly chunk boundaries', () => {
    const random = new Prng(7);
    const sizes = [limits.fletcherChunkBytes, limits.fletcherChunkBytes + 4, limits.fletcherChunkBytes * 2 - 1, 1024 * 1024 + 13];
    for (const size of sizes) {
      expect(size).toBeGreaterThanOrEqual(limits.fletcherChunkBytes);
      const backing = randomBytes(random, size + 3);
      const input = backing.subarray(3);
      expect(toHex(fletcher4(input)), `size ${size}`).toBe(toHex(reference(input)));
    }
  });

  it('wraps every accumulator at 2^64 exactly as the reference does', () => {
    const input = new Uint8Array(64 * 1024).fill(0xff);
    const exact = referenceAccumulators(input, false);
    // The input really does overflow: otherwise this test would prove nothing about wraparound.
    expect(exact.c).toBeGreaterThan(U64);
    expect(exact.d).toBeGreaterThan(U64);
    expect(toHex(fletcher4(input))).toBe(toHex(reference(input)));
  });

  it('gives the same digest for any incremental split as in one shot', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 600 }),
        fc.array(fc.nat({ max: 600 }), { maxLength: 12 }),
        (data, cuts) => {
          const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((x, y) => x - y);
          const hasher = new Fletcher4();
          let prev = 0;
          for (const p of [...points, data.length]) {
            hasher.update(data.subarray(prev, p));
            prev = p;
          }
          expect(toHex(hasher.digest())).toBe(toHex(fletcher4(data)));
        },
      ),
      { seed: 0xf4, numRuns: 300 },
    );
  });

  it('gives the same digest for a large input fed in random-sized pieces', () => {
    const random = new Prng(99);
    const data = randomBytes(random, 3 * limits.fletcherChunkBytes + 5);
    const hasher = new Fletcher4();
    for (let pos = 0; pos < data.length; ) {
      const step = 1 + random.int(limits.fletcherChunkBytes);
      hasher.update(data.subarray(pos, pos + step));
      pos += step;
    }
    expect(toHex(hasher.digest())).toBe(toHex(reference(data)));
  });

  it('pad() zero-fills a partial word: the digest of the pieces, each padded, back to back', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 8 }), (pieces) => {
        const hasher = new Fletcher4();
        for (const p of pieces) hasher.update(p).pad();
        const padded = pieces.map((p) => Buffer.concat([p, new Uint8Array((4 - (p.length % 4)) % 4)]));
        expect(toHex(hasher.digest())).toBe(toHex(reference(Buffer.concat(padded))));
      }),
      { seed: 0xf5, numRuns: 300 },
    );
  });

  it('append() of a piece\'s digest gives the state reading the piece would', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.uint8Array({ maxLength: 300 }), fc.boolean()), { maxLength: 8 }),
        (pieces) => {
          const read = new Fletcher4();
          const appended = new Fletcher4();
          for (const [p, byDigest] of pieces) {
            read.pad().update(p).pad();
            if (byDigest) appended.append(fletcher4(p), p.length);
            else appended.pad().update(p).pad();
          }
          expect(toHex(appended.digest())).toBe(toHex(read.digest()));
        },
      ),
      { seed: 0xf6, numRuns: 300 },
    );
  });

  it('append() wraps at 2^64 as reading does, for a piece as large as a stream WRITE', () => {
    // Both the state before (64 KiB of 0xff overflows c and d) and the piece itself wrap.
    const before = new Uint8Array(64 * 1024 + 3).fill(0xff);
    const piece = randomBytes(new Prng(7), limits.streamWriteBytesMax - 1);
    piece.fill(0xff, 0, 4096);
    const appended = new Fletcher4().update(before).append(fletcher4(piece), piece.length).digest();
    const whole = Buffer.concat([before, new Uint8Array(1), piece, new Uint8Array(1)]);
    expect(toHex(appended)).toBe(toHex(reference(whole)));
  });

  it('matches the fixed vectors kept in fletcher4.vectors.json', () => {
    expect(vectorFile.vectors.length).toBeGreaterThanOrEqual(5);
    for (const spec of vectorFile.vectors) {
      expect(toHex(fletcher4(vectorInput(spec))), spec.name).toBe(spec.digest);
    }
  });

  it('computes the fixed vectors with the reference too', () => {
    for (const spec of vectorFile.vectors) {
      expect(toHex(reference(vectorInput(spec))), spec.name).toBe(spec.digest);
    }
  });

  it('returns a 32-byte digest the caller owns', () => {
    const first = fletcher4(new Uint8Array([1, 2, 3, 4]));
    expect(first.length).toBe(FLETCHER4_DIGEST_BYTES);
    first.fill(0);
    expect(toHex(fletcher4(new Uint8Array([1, 2, 3, 4])))).toBe(toHex(reference(new Uint8Array([1, 2, 3, 4]))));
  });

  it('fails an assertion on update after digest', () => {
    const hasher = new Fletcher4().update(new Uint8Array(5));
    hasher.digest();
    expect(() => hasher.update(new Uint8Array(1))).toThrow(AssertionFailure);
  });

  it('fails an assertion on digest twice', () => {
    const hasher = new Fletcher4();
    hasher.digest();
    expect(() => hasher.digest()).toThrow(AssertionFailure);
  });
});
