// What the RPC transport reports as it runs: connections, requests with their outcome and
// duration, wire bytes, authentication failures and protocol errors. The daemon implements
// TransportEvents with Prometheus counters (mirrorpool_transport_*); tests record them.
// Invariants: connectionOpened and connectionClosed are called once each per connection, in that
// order; request is called once per request frame received (server) or call made (client), with
// code 'OK' or an error code. Implementations must not throw.

export type AuthFailureReason =
  | 'token-malformed'
  | 'token-signature'
  | 'token-expired'
  | 'scope'
  | 'cluster-secret'
  | 'unknown-node'
  | 'node-signature'
  | 'handshake-malformed'
  | 'handshake-timeout';

export type FrameErrorReason = 'not-msgpack' | 'oversized' | 'bad-shape' | 'unknown-stream' | 'window-exceeded';

export interface TransportEvents {
  connectionOpened(): void;
  connectionClosed(): void;
  /** code is 'OK' or an error code; method is 'unknown' for methods not registered. */
  request(method: string, code: string, seconds: number): void;
  /** Wire bytes of every websocket message (payload, without the websocket header). */
  bytes(direction: 'in' | 'out', n: number): void;
  authFailure(reason: AuthFailureReason): void;
  frameError(reason: FrameErrorReason): void;
}

const noop = (): void => undefined;

export const NO_EVENTS: TransportEvents = Object.freeze({
  connectionOpened: noop,
  connectionClosed: noop,
  request: noop,
  bytes: noop,
  authFailure: noop,
  frameError: noop,
});
