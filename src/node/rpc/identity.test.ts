import { describe, expect, it } from 'vitest';
import { withCode } from './rpc-test-support.js';
import { checkNodeKeys, generateNodeKeys, nodeIdOf, signWith, verifySignature } from './identity.js';

describe('node identity', () => {
  it('generates Ed25519 keys whose id is derived from the public key', () => {
    const keys = generateNodeKeys();
    expect(keys.publicKey).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(keys.privateKey).toContain('-----BEGIN PRIVATE KEY-----');
    expect(keys.id).toMatch(/^n[0-9a-f]{16}$/);
    expect(nodeIdOf(keys.publicKey)).toBe(keys.id);
    expect(checkNodeKeys(keys)).toBe(keys);
    expect(generateNodeKeys().id).not.toBe(keys.id);
  });

  it('computes the id as n + 16 hex chars of sha256 of the raw key', () => {
    const raw = Buffer.alloc(32, 1);
    // sha256 of 32 bytes of 0x01
    expect(nodeIdOf(raw.toString('base64url'))).toBe('n72cd6e8422c407fb');
  });

  it('refuses strings that are not 32-byte base64url keys', () => {
    const key = generateNodeKeys().publicKey;
    const last = key.at(-1)!;
    const noncanonical = key.slice(0, -1) + String.fromCharCode(last.charCodeAt(0) ^ 1);
    for (const bad of ['', 'abc', key.slice(1), `${key}A`, Buffer.alloc(32).toString('base64'), key.replace(/./, '+'), 42 as unknown as string]) {
      expect(() => nodeIdOf(bad)).toThrow(withCode('EINVAL'));
    }
    // A changed last character is either another key or a non-canonical encoding: never the same id.
    let id: string | undefined;
    try {
      id = nodeIdOf(noncanonical);
    } catch (e) {
      expect(e).toMatchObject({ code: 'EINVAL' });
    }
    expect(id).not.toBe(nodeIdOf(key));
  });

  it('refuses keys whose parts do not belong together', () => {
    const a = generateNodeKeys();
    const b = generateNodeKeys();
    const cases = [
      { ...a, id: b.id },
      { ...a, publicKey: b.publicKey },
      { ...a, privateKey: b.privateKey },
      { ...a, privateKey: 'not a pem' },
      { ...a, publicKey: 'short' },
    ];
    for (const keys of cases) expect(() => checkNodeKeys(keys)).toThrow(withCode('EINVAL'));
  });

  it('signs and verifies with the node key', () => {
    const keys = generateNodeKeys();
    const data = Buffer.from('transcript');
    const sig = signWith(keys, data);
    expect(verifySignature(keys.publicKey, data, sig)).toBe(true);
    expect(verifySignature(generateNodeKeys().publicKey, data, sig)).toBe(false);
    expect(verifySignature(keys.publicKey, Buffer.from('other'), sig)).toBe(false);
    expect(verifySignature(keys.publicKey, data, sig.subarray(1))).toBe(false);
    expect(verifySignature('bad', data, sig)).toBe(false);
  });
});
