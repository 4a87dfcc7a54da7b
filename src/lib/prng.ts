// A seeded pseudo-random generator (xoshiro128**, state expanded from the seed by splitmix32).
// Same seed, same sequence, on every platform: the simulator and every randomized test draw from
// it and print the seed on failure. Not for keys or tokens (SystemRandom is).

import { RandomBase } from './random.js';
import { mpError } from './errors.js';

function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

export class Prng extends RandomBase {
  readonly seed: number;
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  /** `seed` is any integer in [0, 2^32); EINVAL otherwise. */
  constructor(seed: number) {
    super();
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
      throw mpError('EINVAL', `prng seed must be an integer in [0, 2^32), got ${seed}`, { seed });
    }
    this.seed = seed;
    const next = splitmix32(seed);
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  u32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** An independent generator derived from this one (for per-node or per-disk streams). */
  fork(): Prng {
    return new Prng(this.u32());
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
