import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { toHex } from './bytes.js';
import {
  CHECKSUM_BYTES,
  ChecksumKind,
  checksum,
  checksumKindFromId,
  checksumKindFromName,
  checksumMatches,
  sha256,
} from './checksum.js';
import type { ErrorCode } from './errors.js';
import { fletcher4 } from './fletcher4.js';
import { Prng } from './prng.js';

const abc = new TextEncoder().encode('abc');

/** Matches a MirrorpoolError with `code` (typed as Error so toThrow takes it). */
const withCode = (code: ErrorCode): Error => expect.objectContaining({ name: 'MirrorpoolError', code }) as Error;

describe('sha256', () => {
  it('gives the FIPS 180-2 digest of "abc"', () => {
    expect(toHex(sha256(abc))).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it('agrees with node:crypto on random inputs', () => {
    const random = new Prng(3);
    for (const length of [0, 1, 55, 56, 64, 1000]) {
      const data = new Uint8Array(length);
      random.fill(data);
      expect(toHex(sha256(data))).toBe(createHash('sha256').update(data).digest('hex'));
    }
  });
});

describe('checksum', () => {
  it('dispatches on the kind and always gives 32 bytes', () => {
    expect(toHex(checksum(ChecksumKind.fletcher4, abc))).toBe(toHex(fletcher4(abc)));
    expect(toHex(checksum(ChecksumKind.sha256, abc))).toBe(toHex(sha256(abc)));
    expect(checksum(ChecksumKind.fletcher4, abc).length).toBe(CHECKSUM_BYTES);
    expect(checksum(ChecksumKind.sha256, abc).length).toBe(CHECKSUM_BYTES);
  });

  it('keeps the on-disk ids', () => {
    expect(ChecksumKind).toEqual({ fletcher4: 1, sha256: 2 });
  });

  it('matches the data it was computed from', () => {
    for (const kind of [ChecksumKind.fletcher4, ChecksumKind.sha256]) {
      expect(checksumMatches(kind, abc, checksum(kind, abc))).toBe(true);
    }
  });

  it('does not match changed data or the other kind', () => {
    const sum = checksum(ChecksumKind.sha256, abc);
    expect(checksumMatches(ChecksumKind.sha256, new TextEncoder().encode('abd'), sum)).toBe(false);
    expect(checksumMatches(ChecksumKind.fletcher4, abc, sum)).toBe(false);
    const flipped = sum.slice();
    flipped[31] = flipped[31]! ^ 1;
    expect(checksumMatches(ChecksumKind.sha256, abc, flipped)).toBe(false);
  });

  it('does not match an expected value of the wrong length', () => {
    const sum = checksum(ChecksumKind.fletcher4, abc);
    expect(checksumMatches(ChecksumKind.fletcher4, abc, sum.subarray(0, 31))).toBe(false);
    expect(checksumMatches(ChecksumKind.fletcher4, abc, new Uint8Array([...sum, 0]))).toBe(false);
    expect(checksumMatches(ChecksumKind.fletcher4, abc, new Uint8Array(0))).toBe(false);
  });
});

describe('checksum kinds', () => {
  it('resolves names and ids', () => {
    expect(checksumKindFromName('fletcher4')).toBe(ChecksumKind.fletcher4);
    expect(checksumKindFromName('sha256')).toBe(ChecksumKind.sha256);
    expect(checksumKindFromId(1)).toBe(ChecksumKind.fletcher4);
    expect(checksumKindFromId(2)).toBe(ChecksumKind.sha256);
  });

  it('rejects an unknown name with EINVAL', () => {
    expect(() => checksumKindFromName('nope')).toThrow(withCode('EINVAL'));
    expect(() => checksumKindFromName('toString')).toThrow(withCode('EINVAL'));
    expect(() => checksumKindFromName('')).toThrow(withCode('EINVAL'));
  });

  it('rejects an unknown on-disk id with EPROTO', () => {
    for (const id of [0, 3, 9, -1, 1.5, NaN]) expect(() => checksumKindFromId(id), String(id)).toThrow(withCode('EPROTO'));
  });
});
