// Ed25519 node identity: the key pair `node init` creates and every peer connection proves.
// Invariants: publicKey is the base64url of the raw 32-byte key, privateKey is PKCS#8 PEM of the
// matching private key, id = 'n' + first 16 hex chars of sha256(raw public key). checkNodeKeys
// holds keys loaded from disk to that; nodeIdOf refuses anything that is not a 32-byte key.
// Used by the handshake (handshake.ts), the daemon's config loader and `node init`.

import { type KeyObject, createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { mpError } from '../../lib/index.js';

export interface NodeKeys {
  readonly id: string;
  readonly publicKey: string;
  readonly privateKey: string;
}

const PUBLIC_KEY_RE = /^[A-Za-z0-9_-]{43}$/;
export const NODE_ID_RE = /^n[0-9a-f]{16}$/;
export const SIGNATURE_BYTES = 64;

function rawPublicKey(publicKey: string): Buffer | undefined {
  if (typeof publicKey !== 'string' || !PUBLIC_KEY_RE.test(publicKey)) return undefined;
  const raw = Buffer.from(publicKey, 'base64url');
  // 43 base64url characters carry 258 bits: the last two must be zero for the key to be canonical.
  if (raw.length !== 32 || raw.toString('base64url') !== publicKey) return undefined;
  return raw;
}

/** The node id of a public key; EINVAL when the string is not a 32-byte base64url key. */
export function nodeIdOf(publicKey: string): string {
  const raw = rawPublicKey(publicKey);
  if (raw === undefined) throw mpError('EINVAL', 'not an Ed25519 public key (32 bytes, base64url)', { publicKey: String(publicKey).slice(0, 64) });
  return `n${createHash('sha256').update(raw).digest('hex').slice(0, 16)}`;
}

/** True when `publicKey` is a well-formed key whose id is `id`. */
export function isNodeKeyOf(id: string, publicKey: string): boolean {
  return rawPublicKey(publicKey) !== undefined && nodeIdOf(publicKey) === id;
}

function publicKeyOfPrivate(key: KeyObject): string {
  const jwk = createPublicKey(key).export({ format: 'jwk' });
  return String(jwk.x);
}

export function generateNodeKeys(): NodeKeys {
  const { privateKey } = generateKeyPairSync('ed25519');
  const publicKey = publicKeyOfPrivate(privateKey);
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' });
  return { id: nodeIdOf(publicKey), publicKey, privateKey: typeof pem === 'string' ? pem : pem.toString('utf8') };
}

function parsePrivateKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch (e) {
    throw mpError('EINVAL', 'node private key is not a PKCS#8 PEM key', {}, e);
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw mpError('EINVAL', `node private key is ${key.asymmetricKeyType ?? 'unknown'}, not Ed25519`);
  }
  return key;
}

/** Keys objects checkNodeKeys accepted (read-only): a node checks its own keys once, not per connection. */
const checkedKeys = new WeakSet<NodeKeys>();

/** Returns `keys` when private key, public key and id belong together; EINVAL otherwise. */
export function checkNodeKeys(keys: NodeKeys): NodeKeys {
  if (typeof keys !== 'object' || keys === null || typeof keys.privateKey !== 'string') {
    throw mpError('EINVAL', 'node keys must have id, publicKey and privateKey strings');
  }
  if (checkedKeys.has(keys)) return keys;
  const id = nodeIdOf(keys.publicKey);
  if (keys.id !== id) throw mpError('EINVAL', `node id ${String(keys.id)} does not match its public key (${id})`, { id: keys.id });
  const derived = publicKeyOfPrivate(parsePrivateKey(keys.privateKey));
  if (derived !== keys.publicKey) throw mpError('EINVAL', `private key of node ${id} does not match its public key`, { id });
  checkedKeys.add(keys);
  return keys;
}

const privateKeys = new WeakMap<NodeKeys, KeyObject>();

/** Ed25519 signature of `data` with the node's private key. */
export function signWith(keys: NodeKeys, data: Uint8Array): Buffer {
  let key = privateKeys.get(keys);
  if (key === undefined) {
    key = parsePrivateKey(keys.privateKey);
    privateKeys.set(keys, key);
  }
  return sign(null, data, key);
}

/** True when `signature` is the Ed25519 signature of `data` by `publicKey` (false for bad keys). */
export function verifySignature(publicKey: string, data: Uint8Array, signature: Uint8Array): boolean {
  const raw = rawPublicKey(publicKey);
  if (raw === undefined || signature.length !== SIGNATURE_BYTES) return false;
  const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: publicKey }, format: 'jwk' });
  return verify(null, data, key, signature);
}
