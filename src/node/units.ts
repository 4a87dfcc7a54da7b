// Sizes as people type and read them on the command line. parseSize takes `64M`, `1G`, `1.5G`,
// `512K`, `4096` (binary units: K = 1024) and rounds down to whole sectors, because a vdev is
// addressed in sectors; anything else is EINVAL. formatSize prints the zpool style: three
// significant digits, trailing zeros dropped (`1.5G`, `64M`, `162K`, `512B`). Called by cli-pool.

import { limits, mpError } from '../lib/index.js';

const UNITS = ['B', 'K', 'M', 'G', 'T', 'P', 'E'] as const;
const SIZE_SYNTAX = /^([0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*([kmgtpe]?)(?:i?b)?$/i;

/** Bytes for a size like `64M` or `1.5G`, rounded down to a sector multiple; EINVAL otherwise. */
export function parseSize(text: string): number {
  const m = SIZE_SYNTAX.exec(text.trim());
  const digits = m?.[1];
  if (m === null || digits === undefined) {
    throw mpError('EINVAL', `'${text}' is not a size (examples: 64M, 1G, 1.5G, 4096)`, { size: text });
  }
  const unit = (m[2] ?? '').toUpperCase();
  const power = unit === '' ? 0 : UNITS.indexOf(unit as (typeof UNITS)[number]);
  const exact = Number(digits) * 1024 ** power;
  const bytes = Math.floor(exact / limits.sectorBytes) * limits.sectorBytes;
  if (!Number.isFinite(exact) || bytes <= 0 || bytes > limits.diskBytesMax) {
    throw mpError('EINVAL', `size '${text}' must be from ${limits.sectorBytes} bytes to ${formatSize(limits.diskBytesMax)}`, {
      size: text,
    });
  }
  return bytes;
}

/** `1.5G`-style text for a byte count (binary units, three significant digits). */
export function formatSize(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return '-';
  let power = 0;
  while (power < UNITS.length - 1 && bytes >= 1024 ** (power + 1)) power++;
  if (power === 0) return `${bytes}B`;
  const value = bytes / 1024 ** power;
  const decimals = value < 10 ? 2 : value < 100 ? 1 : 0;
  const fixed = value.toFixed(decimals);
  const text = decimals > 0 ? fixed.replace(/\.?0+$/, '') : fixed;
  return `${text}${UNITS[power]}`;
}

/** A positive integer option value (counts such as --max-objects); EINVAL otherwise. */
export function parseCount(text: string, max: number): number {
  const n = /^[0-9]+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > max) {
    throw mpError('EINVAL', `'${text}' must be a whole number from 1 to ${max}`, { value: text });
  }
  return n;
}
