import { createHmac, hkdfSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { withCode } from './rpc-test-support.js';
import { MirrorpoolError } from '../../lib/index.js';
import { SCOPES, type Scope, createToken, isScope, scopeAllows, verifyToken } from './tokens.js';

const SECRET = 'cluster-secret-1';
const NOW = 1_700_000_000_000;

function authReason(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(MirrorpoolError);
    expect((e as MirrorpoolError).code).toBe('EAUTH');
    return (e as MirrorpoolError).details.reason;
  }
  throw new Error('expected EAUTH');
}

describe('client tokens', () => {
  it('round-trips every scope with its times', () => {
    for (const scope of SCOPES) {
      const token = createToken(SECRET, scope, { ttlMs: 1000, now: NOW });
      expect(token).toMatch(/^mpt1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
      const claims = verifyToken(SECRET, token, NOW + 999);
      expect(claims.scope).toBe(scope);
      expect(claims.issuedAt).toBe(NOW);
      expect(claims.expiresAt).toBe(NOW + 1000);
      expect(claims.id).toMatch(/^t[0-9a-f]{16}$/);
    }
  });

  it('gives each token its own id', () => {
    const a = verifyToken(SECRET, createToken(SECRET, 'ro', { ttlMs: 1000, now: NOW }), NOW);
    const b = verifyToken(SECRET, createToken(SECRET, 'ro', { ttlMs: 1000, now: NOW }), NOW);
    expect(a.id).not.toBe(b.id);
  });

  it('refuses a token at and after its expiry', () => {
    const token = createToken(SECRET, 'rw', { ttlMs: 1000, now: NOW });
    expect(authReason(() => verifyToken(SECRET, token, NOW + 1000))).toBe('token-expired');
    expect(authReason(() => verifyToken(SECRET, token, NOW + 10_000_000))).toBe('token-expired');
  });

  it('refuses a token with a tampered payload or mac', () => {
    const token = createToken(SECRET, 'ro', { ttlMs: 1000, now: NOW });
    const [prefix, payload, mac] = token.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
    const forged = Buffer.from(JSON.stringify({ ...claims, scope: 'admin' })).toString('base64url');
    expect(authReason(() => verifyToken(SECRET, `${prefix}.${forged}.${mac}`, NOW))).toBe('token-signature');
    const flipped = mac.startsWith('A') ? `B${mac.slice(1)}` : `A${mac.slice(1)}`;
    expect(authReason(() => verifyToken(SECRET, `${prefix}.${payload}.${flipped}`, NOW))).toBe('token-signature');
  });

  it('refuses a token of another cluster', () => {
    const token = createToken('other-secret', 'admin', { ttlMs: 1000, now: NOW });
    expect(authReason(() => verifyToken(SECRET, token, NOW))).toBe('token-signature');
  });

  it('refuses malformed strings as token-malformed', () => {
    const good = createToken(SECRET, 'ro', { ttlMs: 1000, now: NOW });
    const [, payload, mac] = good.split('.') as [string, string, string];
    const cases: unknown[] = [
      '', 'mpt1', 'mpt1..', 'mpt1.a.b', `mpt2.${payload}.${mac}`, `mpt1.${payload}.${mac}.x`, `mpt1.${payload}`,
      `mpt1.${payload}.${mac}=`, `mpt1.pay load.${mac}`, `mpt1.${payload}.${mac.slice(0, 40)}`, 'x'.repeat(1025),
      `mpt1.${'A'.repeat(1100)}.${mac}`, 42, null, undefined, {},
    ];
    for (const token of cases) expect(authReason(() => verifyToken(SECRET, token as string, NOW))).toBe('token-malformed');
  });

  it('refuses a correctly signed payload with bad claims as malformed', () => {
    // Only a holder of the secret could sign these: they still must not be accepted.
    const key = Buffer.from(hkdfSync('sha256', SECRET, 'mirrorpool', 'mirrorpool/token/v1', 32));
    for (const claims of [{ v: 2 }, { v: 1, id: 't0000000000000000', scope: 'root', iat: 1, exp: 2 }, [1, 2], 'x']) {
      const payload = Buffer.from(JSON.stringify(claims)).toString('base64url');
      const mac = createHmac('sha256', key).update(`mpt1.${payload}`).digest('base64url');
      expect(authReason(() => verifyToken(SECRET, `mpt1.${payload}.${mac}`, NOW))).toBe('token-malformed');
    }
  });

  it('refuses bad arguments to createToken with EINVAL', () => {
    const bad: [string, Scope, { ttlMs: number; now: number }][] = [
      ['', 'ro', { ttlMs: 1, now: NOW }],
      [SECRET, 'root' as Scope, { ttlMs: 1, now: NOW }],
      [SECRET, 'ro', { ttlMs: 0, now: NOW }],
      [SECRET, 'ro', { ttlMs: 1.5, now: NOW }],
      [SECRET, 'ro', { ttlMs: 1, now: -1 }],
    ];
    for (const [secret, scope, options] of bad) expect(() => createToken(secret, scope, options)).toThrow(withCode('EINVAL'));
  });

  it('orders scopes admin ⊇ rw ⊇ ro ⊇ metrics', () => {
    const table: Record<Scope, Scope[]> = {
      admin: ['admin', 'rw', 'ro', 'metrics'],
      rw: ['rw', 'ro', 'metrics'],
      ro: ['ro', 'metrics'],
      metrics: ['metrics'],
    };
    for (const have of SCOPES) {
      for (const need of SCOPES) expect(scopeAllows(have, need)).toBe(table[have].includes(need));
    }
    expect(SCOPES.every(isScope)).toBe(true);
    expect([undefined, 'root', 1, 'ADMIN'].some(isScope)).toBe(false);
  });
});
