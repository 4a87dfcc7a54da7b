import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { withCode } from './rpc-test-support.js';
import { MirrorpoolError } from '../../lib/index.js';
import { type ControlFrame, type Frame, decodeFrame, encodeData, encodeFrame, plainProblem } from './frames.js';

const nonce = Buffer.alloc(32, 0xab);
const sig = Buffer.alloc(64, 0x11);
const mac = Buffer.alloc(32, 0x22);
const publicKey = Buffer.alloc(32, 3).toString('base64url');

const SAMPLES: ControlFrame[] = [
  { kind: 'hello', nonce, nodeId: 'n0123456789abcdef', publicKey, frameBytesMax: 4 << 20 },
  { kind: 'auth-token', token: 'mpt1.a.b', nonce, frameBytesMax: 1024 },
  { kind: 'auth-node', nodeId: 'n0123456789abcdef', publicKey, nonce, signature: sig, mac, frameBytesMax: 65536 },
  { kind: 'welcome', principalKind: 'node', principalId: 'n0123456789abcdef', scope: 'admin', signature: sig, mac },
  { kind: 'welcome', principalKind: 'token', principalId: 't0123456789abcdef', scope: 'ro', signature: sig, mac: null },
  { kind: 'fail', error: { code: 'EAUTH', message: 'no', details: { reason: 'scope' } } },
  { kind: 'req', id: 1, method: 'pool.status', params: { name: 'tank', deep: [1, [2, { x: null }]], big: 2n ** 60n }, deadlineMs: 60_000, hasInput: false, outputCredit: 8 << 20 },
  { kind: 'req', id: 0xffff_ffff, method: 'm', params: undefined, deadlineMs: 1, hasInput: true, outputCredit: 0 },
  { kind: 'req', id: 3, method: 'm', params: null, deadlineMs: 1, hasInput: false, outputCredit: 0xffff_ffff },
  { kind: 'result', id: 7, result: { bytes: Buffer.from([1, 2, 3]), n: 1.5, s: 'é', t: true, big: 2 ** 40 } },
  { kind: 'error', id: 8, error: { code: 'ENOENT', message: 'no pool tank', details: { pool: 'tank' } } },
  { kind: 'cancel', id: 9 },
  { kind: 'end', id: 10 },
  { kind: 'credit', id: 11, bytes: 8 << 20 },
];

function isEproto(e: unknown): boolean {
  return e instanceof MirrorpoolError && e.code === 'EPROTO' && ['not-msgpack', 'bad-shape'].includes(e.details.reason as string);
}

/** decodeFrame either returns a frame or throws EPROTO, never anything else. */
function decodesOrEproto(bytes: Uint8Array): Frame | undefined {
  try {
    return decodeFrame(bytes);
  } catch (e) {
    if (!isEproto(e)) throw e;
    return undefined;
  }
}

function eprotoReason(bytes: Uint8Array): unknown {
  try {
    decodeFrame(bytes);
  } catch (e) {
    expect(isEproto(e)).toBe(true);
    return (e as MirrorpoolError).details.reason;
  }
  throw new Error('expected EPROTO');
}

describe('frames', () => {
  it('round-trips every control frame kind', () => {
    for (const frame of SAMPLES) expect(decodeFrame(encodeFrame(frame))).toEqual(frame);
  });

  it('round-trips DATA frames as a subarray of the message', () => {
    const payload = Buffer.from('stream bytes');
    const bytes = encodeData(0x01020304, payload);
    expect([...bytes.subarray(0, 5)]).toEqual([1, 1, 2, 3, 4]);
    const frame = decodeFrame(bytes);
    expect(frame).toEqual({ kind: 'data', id: 0x01020304, payload });
    expect((frame as { payload: Uint8Array }).payload.buffer).toBe(bytes.buffer);
    expect(decodeFrame(encodeData(0xffff_ffff, Buffer.from([0])))).toMatchObject({ id: 0xffff_ffff });
  });

  it('keeps its golden bytes', () => {
    expect(encodeFrame({ kind: 'cancel', id: 7 }).toString('hex')).toBe('921307');
    expect(encodeFrame({ kind: 'credit', id: 1, bytes: 65536 }).toString('hex')).toBe('931501ce00010000');
    expect(encodeFrame({ kind: 'req', id: 2, method: 'a', params: null, deadlineMs: 100, hasInput: false }).toString('hex')).toBe('971002a161c064c200');
    expect(encodeFrame({ kind: 'req', id: 2, method: 'a', params: null, deadlineMs: 100, hasInput: false, outputCredit: 65536 }).toString('hex'))
      .toBe('971002a161c064c2ce00010000');
    expect(decodeFrame(Buffer.from('931102c0', 'hex'))).toEqual({ kind: 'result', id: 2, result: null });
  });

  it('refuses values that are not plain data when encoding', () => {
    for (const params of [new Date(), new Map(), new Set([1]), () => 1, Symbol('x'), new Float32Array(2), { a: [new (class X {})()] }]) {
      expect(() => encodeFrame({ kind: 'req', id: 1, method: 'm', params, deadlineMs: 1, hasInput: false })).toThrow(withCode('EINVAL'));
    }
    let deep: unknown = 1;
    for (let i = 0; i < 70; i++) deep = [deep];
    expect(plainProblem(deep)).toMatch(/nesting/);
    expect(() => encodeFrame({ kind: 'result', id: 1, result: 2n ** 70n })).toThrow(withCode('EINVAL'));
  });

  it('refuses garbage, truncation and trailing bytes', () => {
    const req = encodeFrame(SAMPLES[6]!);
    expect(eprotoReason(Buffer.alloc(0))).toBe('bad-shape');
    expect(eprotoReason(req.subarray(0, req.length - 1))).toBe('not-msgpack');
    expect(eprotoReason(Buffer.concat([req, Buffer.from([0])]))).toBe('not-msgpack');
    expect(eprotoReason(Buffer.from('garbage that is not msgpack'))).toBe('not-msgpack');
    expect(eprotoReason(Buffer.from([0xc1]))).toBe('bad-shape');
    expect(eprotoReason(Buffer.from([1, 0, 0, 0, 1]))).toBe('bad-shape');
    expect(eprotoReason(Buffer.from([1, 0, 0, 0, 0, 9]))).toBe('bad-shape');
  });

  it('refuses huge declared lengths and deep nesting without allocating them', () => {
    const cases = [
      Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff, 0x01]), // array32 of 4 G elements
      Buffer.from([0xdb, 0xff, 0xff, 0xff, 0xf0, 0x61]), // str32 of 4 G bytes
      Buffer.from([0xc6, 0x7f, 0xff, 0xff, 0xff, 0x00]), // bin32 of 2 GiB
      Buffer.from([0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 0x61]), // map32 of 4 G entries
      Buffer.from([0x93, 0x10, 0xdd, 0x00, 0xff, 0xff, 0xff]),
      Buffer.alloc(200_000, 0x91), // 200 000 nested arrays
    ];
    for (const bytes of cases) expect(eprotoReason(bytes)).toBe('not-msgpack');
  });

  it('refuses wrong shapes', () => {
    const bad: unknown[] = [
      {}, 'req', 16, [], ['16'], [99, 1], [16, 1, 'm', null, 100], [16, 0, 'm', null, 100, false], [16, -1, 'm', null, 100, false],
      [16, 1.5, 'm', null, 100, false], [16, 2 ** 32, 'm', null, 100, false], [16, 1, 'm'.repeat(129), null, 100, false],
      [16, 1, 5, null, 100, false], [16, 1, 'm', null, 0, false], [16, 1, 'm', null, 100, 1], [18, 1, 'EWHAT', 'x', {}],
      [18, 1, 'EIO', 'x', null], [18, 1, 'EIO', 'x', [1]], [18, 1, 'EIO', 'x'.repeat(5000), {}], [21, 1, 0], [21, 1, -5],
      [1, 2, nonce, 'n0123456789abcdef', publicKey, 4096], [1, 1, nonce.subarray(1), 'n0123456789abcdef', publicKey, 4096],
      [1, 1, nonce, 'N0123456789abcdef', publicKey, 4096], [1, 1, nonce, 'n0123456789abcdef', publicKey, 100],
      [2, 'x'.repeat(1025), nonce, 4096], [4, 'root', 'x', 'admin', sig, null], [4, 'node', 'x', 'god', sig, null],
      [4, 'node', 'x', 'admin', sig, 'mac'],
    ];
    for (const value of bad) {
      const bytes = encodeFrame({ kind: 'result', id: 1, result: value }).subarray(3); // the msgpack of `value`
      expect(eprotoReason(bytes)).toBe('bad-shape');
    }
  });

  it('carries the initial output credit in REQ and checks it strictly', () => {
    const req = (outputCredit: unknown): Buffer => encodeFrame({ kind: 'result', id: 1, result: [16, 1, 'm', null, 100, false, outputCredit] }).subarray(3);
    expect(decodeFrame(req(0))).toMatchObject({ kind: 'req', outputCredit: 0 });
    expect(decodeFrame(req(8 << 20))).toMatchObject({ kind: 'req', outputCredit: 8 << 20 });
    expect(decodeFrame(req(0xffff_ffff))).toMatchObject({ kind: 'req', outputCredit: 0xffff_ffff });
    for (const bad of [-1, 1.5, 2 ** 32, '1', null, true]) expect(eprotoReason(req(bad))).toBe('bad-shape');
    // The old six-field REQ (no credit) and extra fields are refused.
    const six = encodeFrame({ kind: 'result', id: 1, result: [16, 1, 'm', null, 100, false] }).subarray(3);
    const eight = encodeFrame({ kind: 'result', id: 1, result: [16, 1, 'm', null, 100, false, 0, 0] }).subarray(3);
    expect(eprotoReason(six)).toBe('bad-shape');
    expect(eprotoReason(eight)).toBe('bad-shape');
    // Every other REQ field is still checked with the credit present.
    for (const value of [[16, 0, 'm', null, 100, false, 0], [16, 1, 'm'.repeat(129), null, 100, false, 0], [16, 1, 5, null, 100, false, 0],
      [16, 1, 'm', null, 0, false, 0], [16, 1, 'm', null, 100, 1, 0], [16, 1, 'm', new Date(0), 100, false, 0]]) {
      const bytes = value[3] instanceof Date ? Buffer.from([0x97, 0x10, 0x01, 0xa1, 0x6d, 0xd6, 0xff, 0, 0, 0, 0, 0x64, 0xc2, 0x00])
        : encodeFrame({ kind: 'result', id: 1, result: value }).subarray(3);
      expect(eprotoReason(bytes)).toBe('bad-shape');
    }
  });

  it('turns a __proto__ key into an ordinary one', () => {
    // map {"__proto__": {"polluted": true}} as REQ params
    const params = Buffer.concat([Buffer.from([0x81, 0xa9]), Buffer.from('__proto__'), Buffer.from([0x81, 0xa8]), Buffer.from('polluted'), Buffer.from([0xc3])]);
    const bytes = Buffer.concat([Buffer.from([0x97, 0x10, 0x01, 0xa1, 0x6d]), params, Buffer.from([0x64, 0xc2, 0x00])]);
    const frame = decodeFrame(bytes) as Extract<Frame, { kind: 'req' }>;
    expect(Object.getPrototypeOf(frame.params)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('decodes random and mutated bytes to a frame or EPROTO, never anything else', () => {
    const valid = [...SAMPLES.map((f) => encodeFrame(f)), encodeData(5, Buffer.from('abc'))];
    const mutated = fc.tuple(fc.constantFrom(...valid), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), fc.nat())
      .map(([bytes, edits, cut]) => {
        const out = Buffer.from(bytes);
        for (const [at, value] of edits) out[at % out.length] = value;
        return cut % 4 === 0 ? out.subarray(0, cut % (out.length + 1)) : out;
      });
    fc.assert(fc.property(fc.oneof(fc.uint8Array({ maxLength: 64 }), mutated), (bytes) => {
      const frame = decodesOrEproto(bytes);
      if (frame !== undefined && frame.kind !== 'data') expect(decodeFrame(encodeFrame(frame))).toEqual(frame);
    }), { numRuns: 3000, seed: 20240601 });
  });
});
