// Size and count parsing and size formatting for the command line.
import { describe, expect, it } from 'vitest';
import { hasCode } from '../lib/index.js';
import { formatSize, parseCount, parseSize } from './units.js';

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    if (hasCode(e, 'EINVAL')) return e.code;
    throw e;
  }
  return undefined;
}

describe('sizes on the command line', () => {
  it('parses binary units, fractions and plain bytes', () => {
    expect(parseSize('64M')).toBe(64 * 1024 ** 2);
    expect(parseSize('1G')).toBe(1024 ** 3);
    expect(parseSize('1.5G')).toBe(1.5 * 1024 ** 3);
    expect(parseSize('512k')).toBe(512 * 1024);
    expect(parseSize('2GiB')).toBe(2 * 1024 ** 3);
    expect(parseSize('4096')).toBe(4096);
    expect(parseSize('1T')).toBe(1024 ** 4);
  });

  it('rounds down to whole sectors', () => {
    expect(parseSize('1000')).toBe(512);
    expect(parseSize('1.1K')).toBe(1024);
  });

  it('rejects what is not a size with EINVAL', () => {
    for (const bad of ['', 'G', '12X', '-1M', '1..5G', '0', '100', '1e3', '9E', '1 G B']) {
      expect(codeOf(() => parseSize(bad)), bad).toBe('EINVAL');
    }
  });

  it('formats sizes with three significant digits and no trailing zeros', () => {
    expect(formatSize(0)).toBe('0B');
    expect(formatSize(512)).toBe('512B');
    expect(formatSize(1024)).toBe('1K');
    expect(formatSize(165_888)).toBe('162K');
    expect(formatSize(1.5 * 1024 ** 3)).toBe('1.5G');
    expect(formatSize(64 * 1024 ** 2)).toBe('64M');
    expect(formatSize(100 * 1024 ** 2)).toBe('100M');
    expect(formatSize(31_236_096)).toBe('29.8M');
    expect(formatSize(1.81 * 1024 ** 4)).toBe('1.81T');
  });

  it('parses counts within their bound', () => {
    expect(parseCount('16', 100)).toBe(16);
    for (const bad of ['0', '101', '-1', '1.5', 'x']) expect(codeOf(() => parseCount(bad, 100)), bad).toBe('EINVAL');
  });
});
