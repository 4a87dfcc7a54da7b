// The bytes of the RPC protocol: encoding and strict decoding of every websocket message.
// Used by the handshake and both connection ends (server.ts, client.ts, connection.ts).
//
// Every websocket message is binary and is exactly one frame. Two encodings, told apart by the
// first byte:
//
//   DATA     0x01, u32 big-endian request id, payload bytes (at least one). Stream bytes of a
//            call; never msgpack. Client→server DATA is the call's input, server→client DATA its
//            output, so no direction field is needed. The receiver reads DATA frames off the
//            socket itself (data-reader.ts), leaves every other frame to ws, and hands out a
//            subarray of the message. The sender frames DATA itself (data-writer.ts): each DATA
//            message is one RFC 6455 binary frame (FIN set, opcode 2, RSV bits clear, the
//            shortest length form, client frames masked with a fresh random key), several frames
//            built in one reused buffer and put on the socket in one write, in order with ws's
//            own sends. Frames are 16 KiB with their headers, so over TLS each is one TLS record
//            and reaches the receiver in one socket read; the bytes a peer sees are what ws itself
//            would send for the same message, so peers need no change (when ws's internals are
//            not as expected the sender falls back to ws.send with the same messages, and the
//            receiver leaves DATA to ws as well).
//   control  a msgpack array (msgpackr, no records, no structured clone) whose first element is
//            the kind:
//     1  HELLO      [1, version=1, nonce(bin 32), nodeId, publicKey, frameBytesMax]     s→c
//     2  AUTH_TOKEN [2, token, nonce(bin 32), frameBytesMax]                           c→s
//     3  AUTH_NODE  [3, nodeId, publicKey, nonce(bin 32), sig(bin 64), mac(bin 32), frameBytesMax]
//     4  WELCOME    [4, principalKind, principalId, scope, sig(bin 64), mac(bin 32)|nil] s→c
//     5  FAIL       [5, code, message, details]      connection-level error; the sender closes
//     16 REQ        [16, id, method, params, deadlineMs, hasInput, outputCredit]       c→s
//     17 RESULT     [17, id, result]                                                   s→c
//     18 ERROR      [18, id, code, message, details]                                   s→c
//     19 CANCEL     [19, id]                                                           c→s
//     20 END        [20, id]              end of the call's input stream               c→s
//     21 CREDIT     [21, id, bytes]       the receiver of a stream grants `bytes` more  both
//
// A connection starts with HELLO, AUTH_TOKEN or AUTH_NODE, then WELCOME or FAIL (handshake.ts);
// any other frame before WELCOME fails the handshake. FAIL may end a connection at any point.
// Ids are integers 1..2^32-1, strictly increasing per connection (the client picks them). A
// stream sender starts with only the credit granted to it: outputCredit in REQ (an integer
// 0..2^32-1, the client's whole window; 0 grants nothing yet) is the server's initial output
// credit, as if a CREDIT frame had followed the REQ, so a plain call costs one message each way.
// The server grants input credit in a CREDIT frame when it accepts a call with hasInput, and
// each side grants more as its consumer takes bytes. A DATA frame uses its payload length plus
// 1024 bytes of credit (so a window also bounds the number of queued frames); DATA beyond the
// credit, for an id never sent, or after END is a protocol error. DATA, CREDIT and answers for a
// call that already ended on this side are dropped (they may have crossed a CANCEL or a RESULT).
// frameBytesMax in HELLO/AUTH is the largest message that side accepts; senders keep every
// message within the peer's bound and split stream writes into DATA frames of at most
// limits.rpcDataChunkBytes (16 KiB frames, see above, when the sender frames them itself).
// Params, results and error details are plain data only (nil, booleans, numbers, bigints,
// strings, bin, arrays, string-keyed maps; nesting ≤ limits.rpcValueDepthMax). Anything else —
// not msgpack, trailing bytes, an unknown kind, a wrong field type or length — is EPROTO with
// details.reason 'not-msgpack' or 'bad-shape', and decodeFrame never throws anything else.

import { Packr } from 'msgpackr';
import { type ErrorCode, type ErrorDetails, isErrorCode, limits, mpError } from '../../lib/index.js';
import { NODE_ID_RE, SIGNATURE_BYTES } from './identity.js';
import { type Scope, isScope } from './tokens.js';

export const PROTOCOL_VERSION = 1;
export const DATA_MARKER = 0x01;
export const DATA_HEADER_BYTES = 5;
export const NONCE_BYTES = 32;
export const MAC_BYTES = 32;
export const ID_MAX = 0xffff_ffff;
/** Smallest frame limit a peer may announce: every handshake frame fits. */
export const FRAME_BYTES_MIN = 1024;
const FRAME_BYTES_LIMIT = 0x7fff_ffff;
const PUBLIC_KEY_RE = /^[A-Za-z0-9_-]{43}$/;

export const Kind = {
  HELLO: 1, AUTH_TOKEN: 2, AUTH_NODE: 3, WELCOME: 4, FAIL: 5,
  REQ: 16, RESULT: 17, ERROR: 18, CANCEL: 19, END: 20, CREDIT: 21,
} as const;

export interface WireError {
  readonly code: ErrorCode;
  readonly message: string;
  readonly details: ErrorDetails;
}

export type Frame =
  | { readonly kind: 'hello'; readonly nonce: Uint8Array; readonly nodeId: string; readonly publicKey: string; readonly frameBytesMax: number }
  | { readonly kind: 'auth-token'; readonly token: string; readonly nonce: Uint8Array; readonly frameBytesMax: number }
  | {
    readonly kind: 'auth-node'; readonly nodeId: string; readonly publicKey: string; readonly nonce: Uint8Array;
    readonly signature: Uint8Array; readonly mac: Uint8Array; readonly frameBytesMax: number;
  }
  | {
    readonly kind: 'welcome'; readonly principalKind: 'token' | 'node'; readonly principalId: string; readonly scope: Scope;
    readonly signature: Uint8Array; readonly mac: Uint8Array | null;
  }
  | { readonly kind: 'fail'; readonly error: WireError }
  | {
    readonly kind: 'req'; readonly id: number; readonly method: string; readonly params: unknown; readonly deadlineMs: number; readonly hasInput: boolean;
    /** Output credit granted with the request; 0 when absent. */
    readonly outputCredit?: number;
  }
  | { readonly kind: 'result'; readonly id: number; readonly result: unknown }
  | { readonly kind: 'error'; readonly id: number; readonly error: WireError }
  | { readonly kind: 'cancel' | 'end'; readonly id: number }
  | { readonly kind: 'credit'; readonly id: number; readonly bytes: number }
  | { readonly kind: 'data'; readonly id: number; readonly payload: Uint8Array };

export type ControlFrame = Exclude<Frame, { kind: 'data' }>;

const packr = new Packr({ useRecords: false, structuredClone: false, mapsAsObjects: true });

/** Why `v` is not plain data, or undefined when it is. */
export function plainProblem(v: unknown, depth = 0): string | undefined {
  switch (typeof v) {
    case 'string': case 'number': case 'boolean': case 'bigint': case 'undefined': return undefined;
    case 'object': break;
    default: return `a ${typeof v}`;
  }
  if (v === null || v instanceof Uint8Array) return undefined;
  if (depth >= limits.rpcValueDepthMax) return `nesting deeper than ${limits.rpcValueDepthMax}`;
  if (Array.isArray(v)) {
    for (const item of v as unknown[]) {
      const problem = plainProblem(item, depth + 1);
      if (problem !== undefined) return problem;
    }
    return undefined;
  }
  const proto: unknown = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return `an object of class ${(v as { constructor?: { name?: string } }).constructor?.name ?? '?'}`;
  for (const item of Object.values(v)) {
    const problem = plainProblem(item, depth + 1);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

function wireError(e: WireError): [ErrorCode, string, ErrorDetails] {
  const max = limits.rpcErrorMessageLengthMax;
  const message = e.message.length > max ? `${e.message.slice(0, max - 1)}…` : e.message;
  return [e.code, message, plainProblem(e.details) === undefined ? e.details : { note: 'details were not plain data' }];
}

function toArray(f: ControlFrame): unknown[] {
  switch (f.kind) {
    case 'hello': return [Kind.HELLO, PROTOCOL_VERSION, f.nonce, f.nodeId, f.publicKey, f.frameBytesMax];
    case 'auth-token': return [Kind.AUTH_TOKEN, f.token, f.nonce, f.frameBytesMax];
    case 'auth-node': return [Kind.AUTH_NODE, f.nodeId, f.publicKey, f.nonce, f.signature, f.mac, f.frameBytesMax];
    case 'welcome': return [Kind.WELCOME, f.principalKind, f.principalId, f.scope, f.signature, f.mac];
    case 'fail': return [Kind.FAIL, ...wireError(f.error)];
    case 'req': return [Kind.REQ, f.id, f.method, f.params, f.deadlineMs, f.hasInput, f.outputCredit ?? 0];
    case 'result': return [Kind.RESULT, f.id, f.result];
    case 'error': return [Kind.ERROR, f.id, ...wireError(f.error)];
    case 'cancel': return [Kind.CANCEL, f.id];
    case 'end': return [Kind.END, f.id];
    case 'credit': return [Kind.CREDIT, f.id, f.bytes];
  }
}

/**
 * The bytes of a control frame. EINVAL when params or a result are not plain data (details.problem)
 * or cannot be encoded (a bigint beyond 64 bits).
 */
export function encodeFrame(frame: ControlFrame): Buffer {
  const value = frame.kind === 'req' ? frame.params : frame.kind === 'result' ? frame.result : undefined;
  const problem = plainProblem(value);
  if (problem !== undefined) throw mpError('EINVAL', `${frame.kind === 'req' ? 'params' : 'result'} must be plain data, found ${problem}`, { problem });
  try {
    return packr.pack(toArray(frame));
  } catch (e) {
    if (e instanceof RangeError || e instanceof TypeError) throw mpError('EINVAL', `cannot encode ${frame.kind}: ${e.message}`, {}, e);
    throw e;
  }
}

/** Writes the DATA header for request `id` into the first DATA_HEADER_BYTES of `target`. */
export function writeDataHeader(target: Uint8Array, id: number): void {
  target[0] = DATA_MARKER;
  target[1] = id >>> 24;
  target[2] = (id >>> 16) & 0xff;
  target[3] = (id >>> 8) & 0xff;
  target[4] = id & 0xff;
}

/** A whole DATA frame in one new buffer (tests and small chunks). */
export function encodeData(id: number, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(DATA_HEADER_BYTES + payload.length);
  writeDataHeader(out, id);
  out.set(payload, DATA_HEADER_BYTES);
  return out;
}

export function protoError(reason: 'not-msgpack' | 'bad-shape', message: string): never {
  throw mpError('EPROTO', message, { reason });
}

/** Decodes one websocket message; EPROTO (details.reason 'not-msgpack' | 'bad-shape') otherwise. */
export function decodeFrame(buf: Uint8Array): Frame {
  if (buf.length === 0) protoError('bad-shape', 'empty frame');
  if (buf[0] === DATA_MARKER) {
    if (buf.length <= DATA_HEADER_BYTES) protoError('bad-shape', 'DATA frame without payload');
    const id = ((buf[1]! << 24) >>> 0) + (buf[2]! << 16) + (buf[3]! << 8) + buf[4]!;
    if (id === 0) protoError('bad-shape', 'DATA frame for id 0');
    return { kind: 'data', id, payload: buf.subarray(DATA_HEADER_BYTES) };
  }
  let value: unknown;
  try {
    value = packr.unpack(buf);
  } catch (e) {
    // msgpackr reports truncation, trailing bytes, bad extensions and stack exhaustion from deep
    // nesting as plain Errors: all of them mean the bytes are not one msgpack value.
    if (e instanceof Error) protoError('not-msgpack', `frame is not msgpack: ${e.message.slice(0, 120)}`);
    throw e;
  }
  if (!Array.isArray(value) || typeof value[0] !== 'number') protoError('bad-shape', 'control frame is not an array starting with its kind');
  return fromArray(value as unknown[]);
}

// Field checks: each returns the value or throws EPROTO 'bad-shape'.
function bad(what: string): never {
  return protoError('bad-shape', `bad ${what}`);
}
const id = (v: unknown): number => (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= ID_MAX ? v : bad('request id'));
const str = (v: unknown, max: number, what: string): string => (typeof v === 'string' && v.length <= max ? v : bad(what));
const match = (v: unknown, re: RegExp, what: string): string => (typeof v === 'string' && re.test(v) ? v : bad(what));
const bin = (v: unknown, n: number, what: string): Uint8Array => (v instanceof Uint8Array && v.length === n ? v : bad(what));
const bool = (v: unknown, what: string): boolean => (typeof v === 'boolean' ? v : bad(what));
const int = (v: unknown, min: number, max: number, what: string): number =>
  (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? v : bad(what));
const plain = (v: unknown, what: string): unknown => (plainProblem(v) === undefined ? v : bad(what));
const frameMax = (v: unknown): number => int(v, FRAME_BYTES_MIN, FRAME_BYTES_LIMIT, 'frameBytesMax');

function errorFields(a: unknown[], at: number): WireError {
  const code = a[at];
  if (!isErrorCode(code)) bad('error code');
  const message = str(a[at + 1], limits.rpcErrorMessageLengthMax, 'error message');
  const details = a[at + 2];
  if (typeof details !== 'object' || details === null || Array.isArray(details) || details instanceof Uint8Array) bad('error details');
  return { code, message, details: plain(details, 'error details') as ErrorDetails };
}

function fromArray(a: unknown[]): Frame {
  const length = (n: number): void => {
    if (a.length !== n) bad(`length ${a.length} of frame kind ${String(a[0])}`);
  };
  switch (a[0]) {
    case Kind.HELLO:
      length(6);
      if (a[1] !== PROTOCOL_VERSION) protoError('bad-shape', `protocol version ${String(a[1])} is not ${PROTOCOL_VERSION}`);
      return { kind: 'hello', nonce: bin(a[2], NONCE_BYTES, 'nonce'), nodeId: match(a[3], NODE_ID_RE, 'node id'), publicKey: match(a[4], PUBLIC_KEY_RE, 'public key'), frameBytesMax: frameMax(a[5]) };
    case Kind.AUTH_TOKEN:
      length(4);
      return { kind: 'auth-token', token: str(a[1], limits.rpcTokenLengthMax, 'token'), nonce: bin(a[2], NONCE_BYTES, 'nonce'), frameBytesMax: frameMax(a[3]) };
    case Kind.AUTH_NODE:
      length(7);
      return {
        kind: 'auth-node', nodeId: match(a[1], NODE_ID_RE, 'node id'), publicKey: match(a[2], PUBLIC_KEY_RE, 'public key'),
        nonce: bin(a[3], NONCE_BYTES, 'nonce'), signature: bin(a[4], SIGNATURE_BYTES, 'signature'), mac: bin(a[5], MAC_BYTES, 'mac'), frameBytesMax: frameMax(a[6]),
      };
    case Kind.WELCOME: {
      length(6);
      const principalKind = a[1] === 'token' || a[1] === 'node' ? a[1] : bad('principal kind');
      const scope = isScope(a[3]) ? a[3] : bad('scope');
      return {
        kind: 'welcome', principalKind, principalId: str(a[2], 64, 'principal id'), scope,
        signature: bin(a[4], SIGNATURE_BYTES, 'signature'), mac: a[5] === null ? null : bin(a[5], MAC_BYTES, 'mac'),
      };
    }
    case Kind.FAIL:
      length(4);
      return { kind: 'fail', error: errorFields(a, 1) };
    case Kind.REQ:
      length(7);
      return {
        kind: 'req', id: id(a[1]), method: str(a[2], limits.rpcMethodNameLengthMax, 'method'), params: plain(a[3], 'params'),
        deadlineMs: int(a[4], 1, FRAME_BYTES_LIMIT, 'deadline'), hasInput: bool(a[5], 'hasInput'), outputCredit: int(a[6], 0, ID_MAX, 'output credit'),
      };
    case Kind.RESULT:
      length(3);
      return { kind: 'result', id: id(a[1]), result: plain(a[2], 'result') };
    case Kind.ERROR:
      length(5);
      return { kind: 'error', id: id(a[1]), error: errorFields(a, 2) };
    case Kind.CANCEL:
    case Kind.END:
      length(2);
      return { kind: a[0] === Kind.CANCEL ? 'cancel' : 'end', id: id(a[1]) };
    case Kind.CREDIT:
      length(3);
      return { kind: 'credit', id: id(a[1]), bytes: int(a[2], 1, ID_MAX, 'credit') };
    default:
      return bad(`frame kind ${String(a[0])}`);
  }
}
