// Client tokens: 'mpt1.<payload>.<mac>', payload = base64url(JSON {v, id, scope, iat, exp}), mac =
// base64url(HMAC-SHA256(key, 'mpt1.' + payload)) with a key derived (HKDF) from the cluster
// secret, so any node of the cluster verifies tokens any node issued. Invariants: verifyToken
// checks length and shape, then the MAC (constant time), then the claims, then expiry; every
// failure is EAUTH with details.reason. Used by the handshake (server side) and the CLI/daemon that
// issue tokens.

import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { limits, mpError } from '../../lib/index.js';

export type Scope = 'admin' | 'rw' | 'ro' | 'metrics';
export const SCOPES: readonly Scope[] = Object.freeze(['admin', 'rw', 'ro', 'metrics'] as const);

export function isScope(v: unknown): v is Scope {
  return typeof v === 'string' && (SCOPES as readonly string[]).includes(v);
}

const RANK: Readonly<Record<Scope, number>> = { admin: 3, rw: 2, ro: 1, metrics: 0 };

/** admin ⊇ rw ⊇ ro ⊇ metrics. */
export function scopeAllows(have: Scope, need: Scope): boolean {
  return RANK[have] >= RANK[need];
}

export interface TokenClaims {
  readonly id: string;
  readonly scope: Scope;
  readonly issuedAt: number;
  readonly expiresAt: number;
}

const PREFIX = 'mpt1';
const B64URL_RE = /^[A-Za-z0-9_-]+$/;
const TOKEN_ID_RE = /^t[0-9a-f]{16}$/;
const MAC_BYTES = 32;

/** A key for one purpose derived from the cluster secret; `purpose` keeps uses apart. */
export function clusterKey(clusterSecret: string, purpose: string): Buffer {
  if (typeof clusterSecret !== 'string' || clusterSecret.length === 0) {
    throw mpError('EINVAL', 'the cluster secret must be a non-empty string');
  }
  return Buffer.from(hkdfSync('sha256', clusterSecret, 'mirrorpool', purpose, 32));
}

function mac(clusterSecret: string, signed: string): Buffer {
  return createHmac('sha256', clusterKey(clusterSecret, 'mirrorpool/token/v1')).update(signed).digest();
}

function isMs(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

export function createToken(clusterSecret: string, scope: Scope, options: { ttlMs: number; now: number }): string {
  if (!isScope(scope)) throw mpError('EINVAL', `unknown token scope ${String(scope)}`, { scope });
  if (!isMs(options.ttlMs) || options.ttlMs === 0) throw mpError('EINVAL', 'token ttlMs must be a positive integer', { ttlMs: options.ttlMs });
  if (!isMs(options.now) || !isMs(options.now + options.ttlMs)) throw mpError('EINVAL', 'token time is out of range', { now: options.now });
  const id = `t${randomBytes(8).toString('hex')}`;
  const claims = { v: 1, id, scope, iat: options.now, exp: options.now + options.ttlMs };
  const payload = Buffer.from(JSON.stringify(claims)).toString('base64url');
  const signed = `${PREFIX}.${payload}`;
  return `${signed}.${mac(clusterSecret, signed).toString('base64url')}`;
}

function fail(reason: 'token-malformed' | 'token-signature' | 'token-expired', message: string, extra: object = {}): never {
  throw mpError('EAUTH', message, { reason, ...extra });
}

function parseClaims(payload: string): TokenClaims {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch (e) {
    if (e instanceof SyntaxError) fail('token-malformed', 'token payload is not JSON');
    throw e;
  }
  if (typeof raw !== 'object' || raw === null) fail('token-malformed', 'token payload is not an object');
  const c = raw as Record<string, unknown>;
  const ok = c.v === 1 && typeof c.id === 'string' && TOKEN_ID_RE.test(c.id) && isScope(c.scope) && isMs(c.iat) && isMs(c.exp) && c.exp > c.iat;
  if (!ok) fail('token-malformed', 'token claims are malformed');
  return { id: c.id as string, scope: c.scope as Scope, issuedAt: c.iat as number, expiresAt: c.exp as number };
}

/** The claims of a valid, unexpired token; EAUTH (details.reason) otherwise. */
export function verifyToken(clusterSecret: string, token: string, now: number): TokenClaims {
  if (typeof token !== 'string' || token.length > limits.rpcTokenLengthMax) fail('token-malformed', 'token is not a string of at most 1024 characters');
  const parts = token.split('.');
  const [prefix, payload, macText] = parts;
  if (parts.length !== 3 || prefix !== PREFIX || payload === undefined || macText === undefined || !B64URL_RE.test(payload) || !B64URL_RE.test(macText)) {
    fail('token-malformed', 'token is not of the form mpt1.<payload>.<mac>');
  }
  const given = Buffer.from(macText, 'base64url');
  if (given.length !== MAC_BYTES || given.toString('base64url') !== macText) fail('token-malformed', 'token mac has the wrong length');
  const expected = mac(clusterSecret, `${PREFIX}.${payload}`);
  if (!timingSafeEqual(given, expected)) fail('token-signature', 'token signature does not match this cluster');
  const claims = parseClaims(payload);
  if (now >= claims.expiresAt) fail('token-expired', `token ${claims.id} expired`, { id: claims.id, expiresAt: claims.expiresAt });
  return claims;
}
