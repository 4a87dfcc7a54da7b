// Block and stream checksums. Every checksum is 32 bytes so a block pointer has one fixed slot:
// fletcher-4 (fast, the default) or sha256 (cryptographic, selectable per dataset).
// Computed on write, verified on read, by the layer that can repair a mismatch.

import { createHash } from 'node:crypto';
import { fletcher4 } from './fletcher4.js';
import { mpError } from './errors.js';

export const CHECKSUM_BYTES = 32;

/** On-disk ids; never renumber. */
export const ChecksumKind = { fletcher4: 1, sha256: 2 } as const;
export type ChecksumKind = (typeof ChecksumKind)[keyof typeof ChecksumKind];
export type ChecksumName = keyof typeof ChecksumKind;

export function checksumKindFromName(name: string): ChecksumKind {
  if (!Object.hasOwn(ChecksumKind, name)) {
    throw mpError('EINVAL', `unknown checksum '${name}' (expected fletcher4 or sha256)`, { checksum: name });
  }
  return ChecksumKind[name as ChecksumName];
}

export function checksumKindFromId(id: number): ChecksumKind {
  if (id !== ChecksumKind.fletcher4 && id !== ChecksumKind.sha256) {
    throw mpError('EPROTO', `unknown checksum id ${id}`, { id });
  }
  return id;
}

export function sha256(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(data).digest());
}

export function checksum(kind: ChecksumKind, data: Uint8Array): Uint8Array {
  return kind === ChecksumKind.fletcher4 ? fletcher4(data) : sha256(data);
}

export function checksumMatches(kind: ChecksumKind, data: Uint8Array, expected: Uint8Array): boolean {
  if (expected.length !== CHECKSUM_BYTES) return false;
  const actual = checksum(kind, data);
  for (let i = 0; i < CHECKSUM_BYTES; i++) if (actual[i] !== expected[i]) return false;
  return true;
}
