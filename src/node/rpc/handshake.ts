// Authentication of a new RPC connection, as pure steps over decoded frames (no sockets here):
// the server's HELLO, the client's AUTH_TOKEN/AUTH_NODE answer, the server's verdict and
// WELCOME, and the client's check of that WELCOME. server.ts and client.ts drive these steps.
//
// Node auth is a mutual challenge/response. Both sides pick a fresh 32-byte nonce; each proves
// itself with an Ed25519 signature and an HMAC (key derived from the cluster secret) over
//   transcript(role) = "mirrorpool-rpc-v1 <role>\0" | serverNonce | clientNonce | serverId \0 clientId
// with role 'client' for the client's proof and 'server' for the server's, so a proof cannot be
// reflected or replayed into another connection (the other side's nonce is fresh). A token client
// gets the server's signature over role 'server-token' (clientId empty): it learns which node it
// talks to, while the token proves the client. Invariant: a failure names one AuthFailureReason.

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { MirrorpoolError, mpError } from '../../lib/index.js';
import type { AuthFailureReason } from './events.js';
import { type Frame, NONCE_BYTES } from './frames.js';
import { type NodeKeys, isNodeKeyOf, signWith, verifySignature } from './identity.js';
import { type Scope, clusterKey, verifyToken } from './tokens.js';

export type ClientCredentials =
  | { readonly kind: 'token'; readonly token: string }
  | { readonly kind: 'node'; readonly keys: NodeKeys; readonly clusterSecret: string };

/** Who is on the other end of an authenticated connection. Node peers get scope 'admin'. */
export interface Principal {
  readonly kind: 'token' | 'node';
  readonly id: string;
  readonly scope: Scope;
}

export interface ServerAuth {
  /** This node. */
  readonly keys: NodeKeys;
  readonly clusterSecret: string;
  /** Node id -> its publicKey; undefined = unknown node. */
  readonly knownNodes: (id: string) => string | undefined;
  /** ms since epoch (token expiry). */
  readonly now: () => number;
}

export type HelloFrame = Extract<Frame, { kind: 'hello' }>;
export type AuthFrame = Extract<Frame, { kind: 'auth-token' | 'auth-node' }>;
export type WelcomeFrame = Extract<Frame, { kind: 'welcome' }>;

export type Role = 'client' | 'server' | 'server-token';

export function transcript(role: Role, serverNonce: Uint8Array, clientNonce: Uint8Array, serverId: string, clientId: string): Buffer {
  return Buffer.concat([
    Buffer.from(`mirrorpool-rpc-v1 ${role}\0`),
    serverNonce,
    clientNonce,
    Buffer.from(`${serverId}\0${clientId}`),
  ]);
}

export function transcriptMac(clusterSecret: string, data: Uint8Array): Buffer {
  return createHmac('sha256', clusterKey(clusterSecret, 'mirrorpool/rpc-node-auth/v1')).update(data).digest();
}

function macMatches(clusterSecret: string, data: Uint8Array, mac: Uint8Array): boolean {
  const expected = transcriptMac(clusterSecret, data);
  return mac.length === expected.length && timingSafeEqual(expected, mac);
}

export function authError(reason: AuthFailureReason | 'tls-certificate', message: string, details: object = {}): MirrorpoolError {
  return mpError('EAUTH', message, { reason, ...details });
}

export function makeHello(keys: NodeKeys, frameBytesMax: number): HelloFrame {
  return { kind: 'hello', nonce: randomBytes(NONCE_BYTES), nodeId: keys.id, publicKey: keys.publicKey, frameBytesMax };
}

export type Verdict =
  | { readonly ok: true; readonly principal: Principal; readonly welcome: WelcomeFrame }
  | { readonly ok: false; readonly error: MirrorpoolError; readonly reason: AuthFailureReason };

function refuse(reason: AuthFailureReason, message: string, details: object = {}): Verdict {
  return { ok: false, reason, error: authError(reason, message, details) };
}

function acceptToken(auth: ServerAuth, hello: HelloFrame, frame: Extract<AuthFrame, { kind: 'auth-token' }>): Verdict {
  let claims;
  try {
    claims = verifyToken(auth.clusterSecret, frame.token, auth.now());
  } catch (e) {
    if (e instanceof MirrorpoolError && e.code === 'EAUTH') return { ok: false, reason: e.details.reason as AuthFailureReason, error: e };
    throw e;
  }
  if (claims.scope === 'metrics') return refuse('scope', `token ${claims.id} has scope metrics, which does not open RPC connections`, { id: claims.id });
  const signature = signWith(auth.keys, transcript('server-token', hello.nonce, frame.nonce, auth.keys.id, ''));
  const principal: Principal = { kind: 'token', id: claims.id, scope: claims.scope };
  return { ok: true, principal, welcome: { kind: 'welcome', principalKind: 'token', principalId: claims.id, scope: claims.scope, signature, mac: null } };
}

function acceptNode(auth: ServerAuth, hello: HelloFrame, frame: Extract<AuthFrame, { kind: 'auth-node' }>): Verdict {
  const { nodeId } = frame;
  if (auth.knownNodes(nodeId) !== frame.publicKey || !isNodeKeyOf(nodeId, frame.publicKey)) {
    return refuse('unknown-node', `node ${nodeId} with this public key is not a member of this cluster`, { nodeId });
  }
  const proof = transcript('client', hello.nonce, frame.nonce, auth.keys.id, nodeId);
  if (!macMatches(auth.clusterSecret, proof, frame.mac)) return refuse('cluster-secret', `node ${nodeId} did not prove this cluster's secret`, { nodeId });
  if (!verifySignature(frame.publicKey, proof, frame.signature)) return refuse('node-signature', `node ${nodeId} did not prove its key`, { nodeId });
  const answer = transcript('server', hello.nonce, frame.nonce, auth.keys.id, nodeId);
  const welcome: WelcomeFrame = {
    kind: 'welcome', principalKind: 'node', principalId: nodeId, scope: 'admin',
    signature: signWith(auth.keys, answer), mac: transcriptMac(auth.clusterSecret, answer),
  };
  return { ok: true, principal: { kind: 'node', id: nodeId, scope: 'admin' }, welcome };
}

/** The server's verdict on the client's first frame (anything but an AUTH is malformed). */
export function acceptClient(auth: ServerAuth, hello: HelloFrame, frame: Frame): Verdict {
  switch (frame.kind) {
    case 'auth-token': return acceptToken(auth, hello, frame);
    case 'auth-node': return acceptNode(auth, hello, frame);
    default: return refuse('handshake-malformed', `expected an AUTH frame, got ${frame.kind}`);
  }
}

/** The client's answer to HELLO. */
export function makeAuth(credentials: ClientCredentials, hello: HelloFrame, frameBytesMax: number): AuthFrame {
  const nonce = randomBytes(NONCE_BYTES);
  if (credentials.kind === 'token') return { kind: 'auth-token', token: credentials.token, nonce, frameBytesMax };
  const { keys, clusterSecret } = credentials;
  const proof = transcript('client', hello.nonce, nonce, hello.nodeId, keys.id);
  return {
    kind: 'auth-node', nodeId: keys.id, publicKey: keys.publicKey, nonce,
    signature: signWith(keys, proof), mac: transcriptMac(clusterSecret, proof), frameBytesMax,
  };
}

/** The client's check of HELLO before it sends credentials: the key matches the id (and expectNodeId). */
export function checkHello(hello: HelloFrame, expectNodeId?: string): void {
  if (!isNodeKeyOf(hello.nodeId, hello.publicKey)) throw authError('node-signature', `server id ${hello.nodeId} does not match its public key`);
  if (expectNodeId !== undefined && hello.nodeId !== expectNodeId) {
    throw authError('unknown-node', `server is node ${hello.nodeId}, expected ${expectNodeId}`, { nodeId: hello.nodeId, expected: expectNodeId });
  }
}

/**
 * The client's check of WELCOME: it proves the server's key and, for node credentials, the
 * cluster secret. Throws EAUTH with the reason; returns how the server sees this client.
 */
export function checkWelcome(credentials: ClientCredentials, hello: HelloFrame, auth: AuthFrame, welcome: WelcomeFrame): Principal {
  const node = credentials.kind === 'node';
  const proof = transcript(node ? 'server' : 'server-token', hello.nonce, auth.nonce, hello.nodeId, node ? credentials.keys.id : '');
  if (node && (welcome.mac === null || !macMatches(credentials.clusterSecret, proof, welcome.mac))) {
    throw authError('cluster-secret', `server ${hello.nodeId} did not prove this cluster's secret`, { nodeId: hello.nodeId });
  }
  if (!verifySignature(hello.publicKey, proof, welcome.signature)) {
    throw authError('node-signature', `server ${hello.nodeId} did not prove its key`, { nodeId: hello.nodeId });
  }
  return { kind: welcome.principalKind, id: welcome.principalId, scope: welcome.scope };
}
