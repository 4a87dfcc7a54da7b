// Dataset properties that users set: each has a default, a parser that gives the canonical value
// stored in the dataset's property ZAP, and is inherited by child datasets unless set locally.
//   recordsize  largest block of new objects, a power of two from 512 to 1M (default 128K)
//   checksum    fletcher4 | sha256, for new objects (default fletcher4)
//   sync        standard | always | disabled, how synchronous writes reach the intent log
//   readonly    on | off: data writes fail with EROFS

import { ChecksumKind, checksumKindFromName, mpError } from '../lib/index.js';

export const PROPERTY_NAMES = ['recordsize', 'checksum', 'sync', 'readonly'] as const;
export type PropertyName = (typeof PROPERTY_NAMES)[number];

export const PROPERTY_DEFAULTS: Readonly<Record<PropertyName, string>> = {
  recordsize: '128K',
  checksum: 'fletcher4',
  sync: 'standard',
  readonly: 'off',
};

const CHOICES: Partial<Record<PropertyName, readonly string[]>> = {
  checksum: Object.keys(ChecksumKind),
  sync: ['standard', 'always', 'disabled'],
  readonly: ['on', 'off'],
};

export function isPropertyName(name: string): name is PropertyName {
  return (PROPERTY_NAMES as readonly string[]).includes(name);
}

/** The canonical form of `value` for `name`; EINVAL for an unknown property or a bad value. */
export function canonicalProperty(name: string, value: string): string {
  if (!isPropertyName(name)) {
    throw mpError('EINVAL', `unknown property '${name}' (settable: ${PROPERTY_NAMES.join(', ')})`, { property: name });
  }
  if (name === 'recordsize') return formatRecordSize(parseRecordSize(value));
  const choices = CHOICES[name] ?? [];
  if (!choices.includes(value)) {
    throw mpError('EINVAL', `property ${name} must be one of ${choices.join(', ')}, got '${value}'`, { property: name, value });
  }
  return value;
}

/** Bytes of a recordsize value: `131072`, `128K`, `1M`. */
export function parseRecordSize(value: string): number {
  const m = /^(\d+)([KM]?)$/i.exec(value);
  const bytes = m === null ? NaN : Number(m[1]) * (m[2]?.toUpperCase() === 'K' ? 1024 : m[2]?.toUpperCase() === 'M' ? 1024 * 1024 : 1);
  if (!Number.isSafeInteger(bytes) || bytes < 512 || bytes > 1024 * 1024 || (bytes & (bytes - 1)) !== 0) {
    throw mpError('EINVAL', `recordsize must be a power of two from 512 to 1M, got '${value}'`, { property: 'recordsize', value });
  }
  return bytes;
}

function formatRecordSize(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${bytes / (1024 * 1024)}M`;
  if (bytes >= 1024) return `${bytes / 1024}K`;
  return String(bytes);
}

/** The checksum id new objects get under a `checksum` value. */
export function checksumOfProperty(value: string): number {
  return checksumKindFromName(value);
}
