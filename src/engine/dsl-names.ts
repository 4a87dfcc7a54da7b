// Dataset names: `pool/a/b` for a dataset, `pool/a@snap` for a snapshot, `pool/a#mark` for a
// bookmark. Components use letters, digits and `_ . : -` (like ZFS), the whole name is at most
// NAME_BYTES_MAX bytes. Parsing is the only way a name enters the DSL, so every later step can
// trust it.

import { mpError } from '../lib/index.js';

export const NAME_BYTES_MAX = 255;
const COMPONENT = /^[A-Za-z0-9_.:-]+$/;
/**
 * A dataset component may end in this: the temporary dataset a receive writes into
 * (`pool/a%recv`). Only the receive creates such names; listings leave them out.
 */
export const RECV_SUFFIX = '%recv';
/** Where a stopped receive's temporary dataset keeps its resume token (in its property ZAP). */
export const RESUME_TOKEN_KEY = 'receive_resume_token';

export interface DatasetName {
  readonly pool: string;
  /** Components below the pool's root dataset ([] is the root dataset itself). */
  readonly path: readonly string[];
  readonly snapshot?: string;
  readonly bookmark?: string;
}

export type NameKind = 'dataset' | 'snapshot' | 'bookmark';

function invalid(text: string, why: string): never {
  throw mpError('EINVAL', `invalid dataset name '${text}': ${why}`, { name: text });
}

function checkComponent(text: string, part: string, what: string, internal = false): void {
  if (internal && part.endsWith(RECV_SUFFIX) && part.length > RECV_SUFFIX.length) part = part.slice(0, -RECV_SUFFIX.length);
  if (part.length === 0) invalid(text, `empty ${what}`);
  if (part === '.' || part === '..') invalid(text, `'${part}' is not a valid ${what}`);
  if (!COMPONENT.test(part)) invalid(text, `${what} '${part}' may only hold letters, digits and _ . : -`);
}

/** Parses `text`; `allowed` lists the kinds the caller accepts (EINVAL for any other). */
export function parseName(text: string, allowed: readonly NameKind[]): DatasetName {
  if (typeof text !== 'string' || text.length === 0) invalid(String(text), 'empty');
  if (Buffer.byteLength(text, 'utf8') > NAME_BYTES_MAX) invalid(text, `longer than ${NAME_BYTES_MAX} bytes`);
  const at = text.indexOf('@');
  const hash = text.indexOf('#');
  if (at >= 0 && hash >= 0) invalid(text, 'both @ and #');
  const cut = at >= 0 ? at : hash;
  const base = cut >= 0 ? text.slice(0, cut) : text;
  const tail = cut >= 0 ? text.slice(cut + 1) : undefined;
  const kind: NameKind = at >= 0 ? 'snapshot' : hash >= 0 ? 'bookmark' : 'dataset';
  if (!allowed.includes(kind)) invalid(text, `expected a ${allowed.join(' or ')} name`);
  const parts = base.split('/');
  const [pool, ...path] = parts;
  if (pool === undefined || pool.length === 0) invalid(text, 'no pool name');
  if (!/^[A-Za-z]/.test(pool)) invalid(text, 'the pool name must start with a letter');
  checkComponent(text, pool, 'pool name');
  for (const [i, p] of path.entries()) checkComponent(text, p, 'component', i === path.length - 1);
  if (tail !== undefined) checkComponent(text, tail, kind === 'snapshot' ? 'snapshot name' : 'bookmark name');
  return {
    pool,
    path,
    ...(kind === 'snapshot' && tail !== undefined ? { snapshot: tail } : {}),
    ...(kind === 'bookmark' && tail !== undefined ? { bookmark: tail } : {}),
  };
}

/** Is this the name of a receive's temporary dataset (or something under one)? */
export function isReceiveTemp(text: string): boolean {
  return text.includes(RECV_SUFFIX);
}

/** Names with %recv belong to receive: EINVAL for anyone naming one. */
export function notReserved(text: string): void {
  if (isReceiveTemp(text)) invalid(text, `names with ${RECV_SUFFIX} are reserved for receive`);
}

export function formatName(n: DatasetName): string {
  const base = [n.pool, ...n.path].join('/');
  if (n.snapshot !== undefined) return `${base}@${n.snapshot}`;
  if (n.bookmark !== undefined) return `${base}#${n.bookmark}`;
  return base;
}
