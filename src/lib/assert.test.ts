import { describe, expect, it } from 'vitest';
import { AssertionFailure, assert, assertUint, unreachable } from './assert.js';
import { MirrorpoolError } from './errors.js';

describe('assert', () => {
  it('passes on a truthy condition', () => {
    expect(() => assert(true)).not.toThrow();
    expect(() => assert(1)).not.toThrow();
  });

  it('throws an AssertionFailure, not a MirrorpoolError, on a falsy condition', () => {
    for (const falsy of [false, 0, '', null, undefined, NaN]) {
      expect(() => assert(falsy)).toThrow(AssertionFailure);
    }
    try {
      assert(false, 'x');
    } catch (e) {
      expect(e).not.toBeInstanceOf(MirrorpoolError);
      expect((e as Error).name).toBe('AssertionFailure');
    }
  });
});

describe('unreachable', () => {
  it('always throws an AssertionFailure', () => {
    expect(() => unreachable('surprise' as never)).toThrow(AssertionFailure);
  });
});

describe('assertUint', () => {
  it('returns a non-negative safe integer unchanged', () => {
    expect(assertUint(0)).toBe(0);
    expect(assertUint(Number.MAX_SAFE_INTEGER)).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('throws an AssertionFailure for anything else', () => {
    for (const bad of [-1, 1.5, NaN, Infinity, 2 ** 53]) {
      expect(() => assertUint(bad), String(bad)).toThrow(AssertionFailure);
    }
  });
});
