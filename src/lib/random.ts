// The Random interface: every source of randomness the core uses (guids, jitter, fault choice)
// comes through it, so a simulation replays from one seed. SystemRandom draws from the OS CSPRNG;
// Prng (prng.ts) is the seeded, reproducible implementation. Both derive every helper from u32()
// in RandomBase, so the two behave identically apart from the bits.

import { randomFillSync } from 'node:crypto';
import { assert } from './assert.js';
import { mpError } from './errors.js';

export interface Random {
  /** A uniform 32-bit unsigned integer. */
  u32(): number;
  /** A uniform integer in [0, n); n is an integer in [1, 2^32]. EINVAL otherwise. */
  int(n: number): number;
  /** A uniform float in [0, 1). */
  float(): number;
  /** True with probability p (0 <= p <= 1). */
  chance(p: number): boolean;
  /** A uniform 64-bit unsigned integer. */
  u64(): bigint;
  /** Fills `buf` with random bytes; the caller owns `buf`. */
  fill(buf: Uint8Array): void;
}

const TWO_POW_32 = 0x1_0000_0000;

export abstract class RandomBase implements Random {
  abstract u32(): number;

  int(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > TWO_POW_32) {
      throw mpError('EINVAL', `random range must be an integer in [1, 2^32], got ${n}`, { n });
    }
    // Rejection sampling keeps the result exactly uniform.
    const limit = TWO_POW_32 - (TWO_POW_32 % n);
    for (;;) {
      const x = this.u32();
      if (x < limit) return x % n;
    }
  }

  float(): number {
    // 53 random bits.
    const hi = this.u32() >>> 5;
    const lo = this.u32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  chance(p: number): boolean {
    if (!(p >= 0 && p <= 1)) throw mpError('EINVAL', `probability must be in [0, 1], got ${p}`, { p });
    return this.float() < p;
  }

  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }

  fill(buf: Uint8Array): void {
    let i = 0;
    for (; i + 4 <= buf.length; i += 4) {
      const x = this.u32();
      buf[i] = x & 0xff;
      buf[i + 1] = (x >>> 8) & 0xff;
      buf[i + 2] = (x >>> 16) & 0xff;
      buf[i + 3] = x >>> 24;
    }
    if (i < buf.length) {
      let x = this.u32();
      for (; i < buf.length; i++, x >>>= 8) buf[i] = x & 0xff;
    }
  }
}

/** Randomness from the operating system, for real nodes. */
export class SystemRandom extends RandomBase {
  private readonly pool = new Uint32Array(256);
  private next = this.pool.length;

  u32(): number {
    if (this.next === this.pool.length) {
      randomFillSync(this.pool);
      this.next = 0;
    }
    const x = this.pool[this.next++];
    assert(x !== undefined);
    return x;
  }

  override fill(buf: Uint8Array): void {
    randomFillSync(buf);
  }
}
