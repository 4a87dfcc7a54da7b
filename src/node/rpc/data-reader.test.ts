// DataReader against ws's own Receiver: random frame sequences (DATA, other messages, control
// frames, fragments; masked and not; every length form) cut into random socket reads give the
// same messages, errors and close codes as ws alone; bad frames stay ws's to refuse; buffers
// handed out never change; on a real connection ws itself emits no DATA message.
import { createRequire } from 'node:module';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { connect } from './client.js';
import { DataReader } from './data-reader.js';
import { xorMask } from './data-writer.js';
import { DATA_MARKER } from './frames.js';
import { type TestServer, sizedChunks, startServer, testCluster } from './rpc-test-support.js';

/** ws's own frame parser (the Receiver every peer runs), typed as much as these tests use it. */
interface WsReceiver {
  on(event: 'message', listener: (data: Buffer, isBinary: boolean) => void): void;
  on(event: 'ping' | 'pong', listener: (data: Buffer) => void): void;
  on(event: 'conclude', listener: (code: number, reason: Buffer) => void): void;
  on(event: 'error', listener: (e: Error) => void): void;
  write(chunk: Buffer): boolean;
  readonly destroyed: boolean;
  readonly writableEnded: boolean;
  readonly errored: Error | null;
}
const { Receiver } = createRequire(import.meta.url)('ws') as { Receiver: new (options: object) => WsReceiver };

const MAX_PAYLOAD = 100_000;
const SEED = 20261130;

/** One websocket frame as a test writes it: every field may be wrong on purpose. */
interface RawFrame {
  readonly fin: boolean;
  /** RSV1..3 as bits 0x40, 0x20, 0x10. */
  readonly rsv: number;
  readonly opcode: number;
  /** The masking key, or undefined for an unmasked frame. */
  readonly key: Uint8Array | undefined;
  readonly payload: Uint8Array;
  /** A declared length other than the payload's (only for frames ws must refuse). */
  readonly declaredBytes?: number;
}

/** The bytes of `f` on the wire (shortest length form unless a length is declared). */
function encode(f: RawFrame): Buffer {
  const length = f.declaredBytes ?? f.payload.length;
  const lengthBytes = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const head = Buffer.alloc(2 + lengthBytes + (f.key === undefined ? 0 : 4));
  head[0] = (f.fin ? 0x80 : 0) | f.rsv | f.opcode;
  head[1] = (f.key === undefined ? 0 : 0x80) | (lengthBytes === 0 ? length : lengthBytes === 2 ? 126 : 127);
  if (lengthBytes === 2) head.writeUInt16BE(length, 2);
  if (lengthBytes === 8) {
    head.writeUInt32BE(Math.floor(length / 2 ** 32), 2);
    head.writeUInt32BE(length >>> 0, 6);
  }
  const payload = Buffer.from(f.payload);
  if (f.key !== undefined) {
    head.set(f.key, head.length - 4);
    xorMask(payload, f.key);
  }
  return Buffer.concat([head, payload]);
}

type Event = readonly [string, string];

/** What a Receiver (with or without a DataReader in front) reports, in order. */
interface Run {
  readonly events: Event[];
  readonly error: string | undefined;
  /** DATA messages DataReader handed out, with a copy made when it did. */
  readonly delivered: { readonly message: Buffer; readonly copy: Buffer }[];
}

/**
 * Feeds `bytes` cut at `cuts` to a fresh Receiver (a server's when `masked`), with a DataReader
 * in front when `withReader`. Stops writing once ws stopped reading, as ws itself does.
 */
function run(bytes: Buffer, cuts: readonly number[], masked: boolean, withReader: boolean): Run {
  const receiver = new Receiver({ isServer: masked, binaryType: 'nodebuffer', maxPayload: MAX_PAYLOAD, skipUTF8Validation: true });
  const events: Event[] = [];
  const delivered: { message: Buffer; copy: Buffer }[] = [];
  receiver.on('message', (data, isBinary) => events.push([isBinary ? 'binary' : 'text', data.toString('hex')]));
  receiver.on('ping', (data) => events.push(['ping', data.toString('hex')]));
  receiver.on('pong', (data) => events.push(['pong', data.toString('hex')]));
  receiver.on('conclude', (code, reason) => events.push(['close', `${code} ${reason.toString('hex')}`]));
  receiver.on('error', () => undefined);
  if (withReader) {
    const attached = DataReader.attachToReceiver(receiver, { masked, payloadBytesMax: MAX_PAYLOAD }, (message) => {
      delivered.push({ message, copy: Buffer.from(message) });
      events.push(['binary', message.toString('hex')]);
    });
    expect(attached).toBe(true);
  }
  // Every piece is its own copy, as socket reads are: a reader may unmask in place.
  const input = Buffer.from(bytes);
  let at = 0;
  for (const cut of [...new Set(cuts.map((c) => c % (input.length + 1)))].sort((a, b) => a - b).concat(input.length)) {
    if (receiver.destroyed || receiver.writableEnded) break;
    if (cut > at) receiver.write(Buffer.from(input.subarray(at, cut)));
    at = Math.max(at, cut);
  }
  const code = (receiver.errored as { code?: unknown } | null)?.code;
  return { events, error: typeof code === 'string' ? code : undefined, delivered };
}

/** Both runs agree, and DataReader never changed a message after handing it out. */
function expectSameAsWs(bytes: Buffer, cuts: readonly number[], masked: boolean): Run {
  const alone = run(bytes, cuts, masked, false);
  const read = run(bytes, cuts, masked, true);
  expect(read.error).toBe(alone.error);
  expect(read.events).toEqual(alone.events);
  for (const { message, copy } of read.delivered) expect(message.equals(copy)).toBe(true);
  return read;
}

const keyArb = fc.oneof(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.constant(new Uint8Array(4)));

function dataPayload(id: number, size: number, seed: number): Uint8Array {
  const out = Buffer.allocUnsafe(5 + size);
  out[0] = DATA_MARKER;
  out.writeUInt32BE(id, 1);
  for (let i = 0; i < size; i++) out[5 + i] = (i * 31 + seed) & 0xff;
  return out;
}

/** Frames of one well-formed message or control frame, for a peer that masks (or not). */
function messageArb(masked: boolean): fc.Arbitrary<RawFrame[]> {
  const key = masked ? keyArb.map((k) => k as Uint8Array | undefined) : fc.constant(undefined);
  const size = fc.oneof(fc.integer({ min: 1, max: 130 }), fc.integer({ min: 1, max: 300 }), fc.integer({ min: 60_000, max: 70_000 }));
  const data = fc.tuple(fc.integer({ min: 1, max: 0xffff_ffff }), size, fc.nat(255), key)
    .map(([id, n, seed, k]) => [{ fin: true, rsv: 0, opcode: 2, key: k, payload: dataPayload(id, n, seed) }]);
  const bytes = fc.uint8Array({ maxLength: 200 });
  const other = fc.tuple(bytes.filter((b) => b[0] !== DATA_MARKER), key).map(([p, k]) => [{ fin: true, rsv: 0, opcode: 2, key: k, payload: p }]);
  const text = fc.tuple(fc.string({ maxLength: 50 }), key).map(([t, k]) => [{ fin: true, rsv: 0, opcode: 1, key: k, payload: Buffer.from(t) }]);
  const control = fc.tuple(fc.constantFrom(9, 10), fc.uint8Array({ maxLength: 125 }), key).map(([op, p, k]) => [{ fin: true, rsv: 0, opcode: op, key: k, payload: p }]);
  // A fragmented DATA message, with a ping between its fragments.
  const fragmented = fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 3 }), key, key).map(([parts, pingAt, k1, k2]) => {
    const whole = dataPayload(7, 40 * parts, parts);
    const frames: RawFrame[] = [];
    for (let i = 0; i < parts; i++) {
      const last = i === parts - 1;
      frames.push({ fin: last, rsv: 0, opcode: i === 0 ? 2 : 0, key: k1, payload: whole.subarray((i * whole.length) / parts, ((i + 1) * whole.length) / parts) });
      if (i + 1 === pingAt && !last) frames.push({ fin: true, rsv: 0, opcode: 9, key: k2, payload: Buffer.from('between') });
    }
    return frames;
  });
  return fc.oneof({ arbitrary: data, weight: 6 }, other, text, control, fragmented);
}

/** Frames ws refuses (the last of them), each a different error. */
function badFramesArb(masked: boolean): fc.Arbitrary<RawFrame[]> {
  const key: Uint8Array | undefined = masked ? Uint8Array.from([1, 2, 3, 4]) : undefined;
  const data = dataPayload(3, 20, 1);
  const frames: RawFrame[] = [
    { fin: true, rsv: 0x40, opcode: 2, key, payload: data },
    { fin: true, rsv: 0x20, opcode: 2, key, payload: data },
    { fin: true, rsv: 0, opcode: 3, key, payload: data },
    { fin: true, rsv: 0, opcode: 2, key: masked ? undefined : Uint8Array.from([1, 2, 3, 4]), payload: data },
    { fin: true, rsv: 0, opcode: 2, key, payload: dataPayload(3, MAX_PAYLOAD, 2) },
    { fin: true, rsv: 0, opcode: 9, key, payload: Buffer.alloc(126) },
    { fin: false, rsv: 0, opcode: 9, key, payload: Buffer.alloc(3) },
    { fin: true, rsv: 0, opcode: 8, key, payload: Buffer.from([3]) },
    { fin: true, rsv: 0, opcode: 8, key, payload: Buffer.from([0x03, 0xe7]) },
    { fin: true, rsv: 0, opcode: 0, key, payload: data },
    { fin: true, rsv: 0, opcode: 2, key, payload: Buffer.alloc(0), declaredBytes: 2 ** 60 },
  ];
  // A DATA frame in the middle of a fragmented message (ws: invalid opcode 2).
  const inFragments: RawFrame[] = [{ fin: false, rsv: 0, opcode: 2, key, payload: dataPayload(4, 8, 0) }, { fin: true, rsv: 0, opcode: 2, key, payload: data }];
  return fc.constantFrom(...frames.map((f) => [f]), inFragments);
}

const close: RawFrame = { fin: true, rsv: 0, opcode: 8, key: undefined, payload: Buffer.from([0x03, 0xe8, 0x62, 0x79, 0x65]) };

describe('DataReader', () => {
  it('reads random frame sequences, cut into random socket reads, exactly as ws does', () => {
    fc.assert(fc.property(fc.boolean().chain((masked) => fc.tuple(
      fc.constant(masked), fc.array(messageArb(masked), { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 12 }), fc.boolean(),
    )), ([masked, messages, cuts, closing]) => {
      const frames = messages.flat();
      if (closing) frames.push({ ...close, key: masked ? Uint8Array.from([9, 8, 7, 6]) : undefined }, ...(messages[0] ?? []));
      const read = expectSameAsWs(Buffer.concat(frames.map(encode)), cuts, masked);
      expect(read.error).toBeUndefined();
    }), { numRuns: 1500, seed: SEED });
  });

  it('hands every DATA frame of a well-formed stream to its target, none to ws', () => {
    fc.assert(fc.property(fc.boolean(), fc.array(fc.integer({ min: 1, max: 70_000 }), { minLength: 1, maxLength: 6 }), fc.array(fc.nat(), { maxLength: 10 }), (masked, sizes, cuts) => {
      const frames = sizes.map((n, i): RawFrame => ({ fin: true, rsv: 0, opcode: 2, key: masked ? Uint8Array.from([i, 0x5a, 0xa5, n & 0xff]) : undefined, payload: dataPayload(i + 1, n, i) }));
      const read = expectSameAsWs(Buffer.concat(frames.map(encode)), cuts, masked);
      expect(read.delivered.map((d) => d.message.length)).toEqual(sizes.map((n) => n + 5));
    }), { numRuns: 500, seed: SEED });
  });

  it('splits a sequence at every single byte offset, and into one-byte reads, as ws does', () => {
    for (const masked of [false, true]) {
      const key = masked ? Uint8Array.from([0xde, 0xad, 0xbe, 0xef]) : undefined;
      const frames: RawFrame[] = [
        { fin: true, rsv: 0, opcode: 2, key, payload: dataPayload(1, 3, 1) },
        { fin: true, rsv: 0, opcode: 9, key, payload: Buffer.from('ping') },
        { fin: true, rsv: 0, opcode: 2, key, payload: dataPayload(2, 200, 2) },
        { fin: true, rsv: 0, opcode: 2, key, payload: Buffer.from([0x93, 0x15, 0x01, 0x02]) },
        { fin: false, rsv: 0, opcode: 2, key, payload: dataPayload(3, 10, 3) },
        { fin: true, rsv: 0, opcode: 0, key, payload: Buffer.from('tail') },
        { fin: true, rsv: 0, opcode: 2, key, payload: dataPayload(4, 1, 4) },
        { fin: true, rsv: 0, opcode: 8, key, payload: Buffer.from([0x03, 0xe8]) },
        { fin: true, rsv: 0, opcode: 2, key, payload: dataPayload(5, 9, 5) },
      ];
      const bytes = Buffer.concat(frames.map(encode));
      for (let cut = 0; cut <= bytes.length; cut++) {
        const read = expectSameAsWs(bytes, [cut], masked);
        expect(read.delivered).toHaveLength(3);
      }
      for (let a = 0; a <= 40; a++) for (let b = a; b <= 40; b++) expectSameAsWs(bytes, [a, b, b + 250], masked);
      expectSameAsWs(bytes, Array.from({ length: bytes.length }, (_, i) => i), masked);
    }
  });

  it('leaves every frame ws refuses to ws: same messages before it, same error, nothing after', () => {
    fc.assert(fc.property(fc.boolean().chain((masked) => fc.tuple(
      fc.constant(masked), fc.array(messageArb(masked), { maxLength: 5 }), badFramesArb(masked), fc.array(messageArb(masked), { maxLength: 3 }), fc.array(fc.nat(), { maxLength: 10 }),
    )), ([masked, before, bad, after, cuts]) => {
      const bytes = Buffer.concat([...before.flat(), ...bad, ...after.flat()].map(encode));
      const read = expectSameAsWs(bytes, cuts, masked);
      expect(read.error).toMatch(/^WS_ERR_/);
    }), { numRuns: 1000, seed: SEED });
  });

  it('refuses a DATA frame over the limit through ws, with ws’s error', () => {
    const frame: RawFrame = { fin: true, rsv: 0, opcode: 2, key: undefined, payload: dataPayload(1, MAX_PAYLOAD - 4, 0) };
    const read = expectSameAsWs(encode(frame), [3, 5000], false);
    expect(read.error).toBe('WS_ERR_UNSUPPORTED_MESSAGE_LENGTH');
    expect(read.delivered).toEqual([]);
    const fits = expectSameAsWs(encode({ ...frame, payload: dataPayload(1, MAX_PAYLOAD - 5, 0) }), [3, 5000], false);
    expect(fits.delivered).toHaveLength(1);
  });

  it('delivers nothing of a frame the connection lost halfway, and nothing later', () => {
    const whole = encode({ fin: true, rsv: 0, opcode: 2, key: undefined, payload: dataPayload(1, 5000, 0) });
    const got: Buffer[] = [];
    const receiver = new Receiver({ isServer: false, binaryType: 'nodebuffer', maxPayload: 0, skipUTF8Validation: true });
    expect(DataReader.attachToReceiver(receiver, { masked: false, payloadBytesMax: MAX_PAYLOAD }, (m) => got.push(m))).toBe(true);
    receiver.write(whole.subarray(0, 3000));
    expect(got).toEqual([]);
  });

  it('does not attach to a Receiver that is not between frames, or already read by another', () => {
    const options = { masked: false, payloadBytesMax: MAX_PAYLOAD };
    const busy = new Receiver({ isServer: false, binaryType: 'nodebuffer', maxPayload: 0, skipUTF8Validation: true });
    busy.write(Buffer.from([0x82, 0x05, 0x01]));
    expect(DataReader.attachToReceiver(busy, options, () => undefined)).toBe(false);
    const taken = new Receiver({ isServer: false, binaryType: 'nodebuffer', maxPayload: 0, skipUTF8Validation: true });
    expect(DataReader.attachToReceiver(taken, options, () => undefined)).toBe(true);
    expect(DataReader.attachToReceiver(taken, options, () => undefined)).toBe(false);
    const deferring = new Receiver({ isServer: false, binaryType: 'nodebuffer', maxPayload: 0, skipUTF8Validation: true, allowSynchronousEvents: false });
    expect(DataReader.attachToReceiver(deferring, options, () => undefined)).toBe(false);
    expect(DataReader.attachToReceiver({}, options, () => undefined)).toBe(false);
  });
});

describe('DataReader on a connection', () => {
  const cluster = testCluster();
  let server: TestServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });
  /** Odd sizes, so writes end mid-frame and frames straddle socket reads. */
  const data = sizedChunks([1, 5000, 16 * 1024, 1024 * 1024 + 3, 70_001]);
  const sum = data.receives;

  it('takes a client\'s DATA frames off the socket before ws: they arrive whole and ws emits none', async () => {
    server = await startServer({ auth: cluster.auth, methods: { sum } });
    const c = await connect(server.url, { kind: 'token', token: cluster.token('rw') });
    const viaWs: Buffer[] = [];
    server.sockets[0]!.on('message', (data: Buffer) => {
      if (data[0] === DATA_MARKER) viaWs.push(data);
    });
    expect(await c.call('sum', null, { input: data.chunks() })).toBe(true);
    expect(viaWs).toEqual([]);
    expect(server.events.frameErrors).toEqual([]);
    await c.close();
  });
});
