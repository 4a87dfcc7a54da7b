// The public surface of the RPC transport (src/node/rpc): node identity, client tokens, the
// server side (serveConnection, wsServerOptions) and the client side (connect). The daemon, the
// client library and the CLI import from here; frames, streams and Wire stay internal.

export { generateNodeKeys, nodeIdOf, checkNodeKeys } from './identity.js';
export type { NodeKeys } from './identity.js';
export { SCOPES, isScope, scopeAllows, createToken, verifyToken } from './tokens.js';
export type { Scope, TokenClaims } from './tokens.js';
export { NO_EVENTS } from './events.js';
export type { AuthFailureReason, FrameErrorReason, TransportEvents } from './events.js';
export type { ClientCredentials, Principal, ServerAuth } from './handshake.js';
export { RPC_LIMITS, wsServerOptions } from './connection.js';
export type { RpcLimits, CallContext, Handler, MethodSpec } from './connection.js';
export { serveConnection } from './server.js';
export type { ServeOptions, RpcSession } from './server.js';
export { connect } from './client.js';
export type { ConnectOptions, CallOptions, RpcClient } from './client.js';
