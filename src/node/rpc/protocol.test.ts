import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { type RpcClient, connect } from './client.js';
import type { MethodSpec } from './connection.js';
import { DATA_FRAME_COST_BYTES, RPC_LIMITS } from './connection.js';
import { writeDataMessage } from './data-writer.js';
import { type ControlFrame, DATA_HEADER_BYTES, type Frame, decodeFrame, encodeData, encodeFrame } from './frames.js';
import { acceptClient, makeHello } from './handshake.js';
import { RawPeer, type TestServer, deferred, rejection, startServer, testCluster } from './rpc-test-support.js';

const cluster = testCluster();
const FRAME_MAX = 64 * 1024;
let server: TestServer | undefined;
const cleanup: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
  await server?.close();
  server = undefined;
});

const echo: MethodSpec = { scope: 'ro', handler: async (p) => p };
const gate = deferred();
const wait: MethodSpec = { scope: 'ro', handler: async (_p, ctx) => { for await (const _ of ctx.input) await gate.promise; return null; } };
/** Writes `chunks` chunks of 4 KiB. */
const produce: MethodSpec = {
  scope: 'ro',
  handler: async (p, ctx) => {
    for (let i = 0; i < (p as number); i++) await ctx.write(Buffer.alloc(4096, i));
    return p;
  },
};

async function setup(): Promise<void> {
  server = await startServer({ auth: cluster.auth, methods: { echo, wait, produce }, limits: { frameBytesMax: FRAME_MAX, streamWindowBytes: 32 * 1024 } });
}

/**
 * A server that completes the handshake, then only records the frames a client sends after it
 * (and answers nothing unless `answer` does).
 */
async function recordingServer(answer: (frame: Frame, send: (f: ControlFrame) => void) => void = () => undefined): Promise<{ url: string; frames: Frame[] }> {
  const frames: Frame[] = [];
  const wss = new WebSocketServer({ noServer: true });
  const http1 = http.createServer();
  http1.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => {
    const hello = makeHello(cluster.server, 1 << 20);
    ws.send(encodeFrame(hello));
    ws.on('message', (data: Buffer) => {
      const frame = decodeFrame(data);
      const verdict = frame.kind === 'auth-token' ? acceptClient(cluster.auth, hello, frame) : undefined;
      if (verdict?.ok === true) return ws.send(encodeFrame(verdict.welcome));
      frames.push(frame);
      answer(frame, (f) => ws.send(encodeFrame(f)));
    });
  }));
  await new Promise<void>((resolve) => http1.listen(0, '127.0.0.1', resolve));
  cleanup.push(() => new Promise<void>((resolve) => http1.close(() => resolve())));
  cleanup.push(() => new Promise<void>((resolve) => wss.close(() => resolve())));
  cleanup.push(() => wss.clients.forEach((ws) => ws.terminate()));
  return { url: `ws://127.0.0.1:${(http1.address() as AddressInfo).port}`, frames };
}

/** Lets frames in flight on 127.0.0.1 arrive. */
const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 50));

async function loggedIn(): Promise<RawPeer> {
  const peer = await RawPeer.open(server!.url);
  cleanup.push(() => peer.ws.terminate());
  await peer.loginWithToken(cluster.token('rw'));
  return peer;
}

/** The peer got FAIL EPROTO with `reason` and the server closed the connection. */
async function expectProtocolFailure(peer: RawPeer, reason: string): Promise<void> {
  const fail = await peer.next('fail');
  expect(fail.error).toMatchObject({ code: 'EPROTO', details: { reason } });
  expect(await peer.closed).toBe(1002);
}

async function expectOthersStillServed(): Promise<void> {
  const c = await connect(server!.url, { kind: 'token', token: cluster.token('ro') });
  expect(await c.call('echo', 'still here')).toBe('still here');
  await c.close();
}

describe('rpc output credit in REQ', () => {
  const unit = 4096 + DATA_FRAME_COST_BYTES;

  it('lets the server stream right away within the REQ outputCredit, and no further', async () => {
    await setup();
    const peer = await loggedIn();
    peer.send({ kind: 'req', id: 1, method: 'produce', params: 10, deadlineMs: 5000, hasInput: false, outputCredit: 3 * unit });
    await settle();
    expect(peer.frames.filter((f) => f.kind === 'data')).toHaveLength(3);
    expect(peer.frames.some((f) => f.kind === 'result')).toBe(false);
    peer.send({ kind: 'credit', id: 1, bytes: 7 * unit });
    expect(await peer.next('result')).toMatchObject({ id: 1, result: 10 });
    const data = peer.frames.filter((f) => f.kind === 'data');
    expect(data.map((f) => f.payload[0])).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('sends no output before a CREDIT when the REQ granted none', async () => {
    await setup();
    const peer = await loggedIn();
    peer.send({ kind: 'req', id: 1, method: 'produce', params: 2, deadlineMs: 5000, hasInput: false, outputCredit: 0 });
    await settle();
    expect(peer.frames.filter((f) => f.kind === 'data' || f.kind === 'result')).toEqual([]);
    peer.send({ kind: 'credit', id: 1, bytes: 2 * unit });
    expect(await peer.next('result')).toMatchObject({ id: 1, result: 2 });
    expect(peer.frames.filter((f) => f.kind === 'data')).toHaveLength(2);
  });

  it('has the client grant its whole window in REQ and send no CREDIT after it', async () => {
    const recorder = await recordingServer((frame, send) => {
      if (frame.kind === 'req') send({ kind: 'result', id: frame.id, result: frame.params });
    });
    const c = await connect(recorder.url, { kind: 'token', token: cluster.token('ro') }, { limits: { streamWindowBytes: 256 * 1024 } });
    cleanup.push(() => c.close());
    expect(await c.call('echo', 1)).toBe(1);
    expect(await c.call('echo', 2, { output: () => undefined })).toBe(2);
    await settle();
    expect(recorder.frames.map((f) => f.kind)).toEqual(['req', 'req']);
    expect(recorder.frames.map((f) => (f as Extract<Frame, { kind: 'req' }>).outputCredit)).toEqual([256 * 1024, 256 * 1024]);
  });
});

describe('rpc client deadlines', () => {
  it('gives up on a server that never answers, each call at its own deadline plus the grace', async () => {
    const recorder = await recordingServer();
    const c = await connect(recorder.url, { kind: 'token', token: cluster.token('ro') });
    cleanup.push(() => c.close());
    const started = performance.now();
    const long = rejection(c.call('m', null, { deadlineMs: RPC_LIMITS.deadlineMsDefault }));
    const short = await rejection(c.call('m', null, { deadlineMs: 100 }));
    const ms = performance.now() - started;
    expect(short).toMatchObject({ code: 'ETIMEDOUT', details: { method: 'm', deadlineMs: 100 } });
    expect(ms).toBeGreaterThanOrEqual(100 + 500 - 1);
    expect(ms).toBeLessThan(5000);
    await settle();
    expect(recorder.frames.map((f) => f.kind)).toEqual(['req', 'req', 'cancel']);
    expect(recorder.frames[2]).toMatchObject({ id: 2 });
    await c.close();
    expect((await long).code).toBe('ECANCELED');
  });
});

describe('rpc protocol errors', () => {
  const garbage: [string, () => Uint8Array | string, string][] = [
    ['bytes that are not msgpack', () => Buffer.from('GET / HTTP/1.1\r\n'), 'not-msgpack'],
    ['a declared array of 4 G elements', () => Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff, 0x10]), 'not-msgpack'],
    ['a declared string of 4 GiB', () => Buffer.from([0x93, 0x10, 0xdb, 0xff, 0xff, 0xff, 0xff, 0x61]), 'not-msgpack'],
    ['a map instead of an array', () => encodeFrame({ kind: 'result', id: 1, result: { kind: 16 } }).subarray(3), 'bad-shape'],
    ['an unknown frame kind', () => encodeFrame({ kind: 'result', id: 1, result: [99, 1] }).subarray(3), 'bad-shape'],
    ['a request with a negative id', () => encodeFrame({ kind: 'result', id: 1, result: [16, -1, 'echo', null, 100, false] }).subarray(3), 'bad-shape'],
    ['a request with a missing field', () => encodeFrame({ kind: 'result', id: 1, result: [16, 1, 'echo', null, 100] }).subarray(3), 'bad-shape'],
    ['a frame only servers send', () => encodeFrame({ kind: 'result', id: 1, result: null }), 'bad-shape'],
    ['a text message', () => 'hello', 'bad-shape'],
  ];
  for (const [what, bytes, reason] of garbage) {
    it(`closes a connection that sends ${what} with EPROTO and keeps serving others`, async () => {
      await setup();
      const peer = await loggedIn();
      peer.sendRaw(bytes());
      await expectProtocolFailure(peer, reason);
      expect(server!.events.frameErrors).toEqual([reason]);
      await expectOthersStillServed();
      expect(server!.events.requests.filter((r) => r.method !== 'echo')).toEqual([]);
    });
  }

  const oversized = {
    frame: async (peer: Awaited<ReturnType<typeof loggedIn>>) => peer.sendRaw(Buffer.alloc(FRAME_MAX + 1)),
    // DATA of a call with input, read off the socket by DataReader up to its own limit: the rest is ws's.
    'DATA frame': async (peer: Awaited<ReturnType<typeof loggedIn>>) => {
      peer.send({ kind: 'req', id: 1, method: 'wait', params: null, deadlineMs: 5000, hasInput: true });
      await peer.next('credit');
      peer.sendRaw(encodeData(1, Buffer.alloc(FRAME_MAX + 1 - DATA_HEADER_BYTES, 7)));
    },
  };
  for (const [what, send] of Object.entries(oversized)) {
    it(`closes with 1009 on a ${what} over frameBytesMax and counts it as oversized`, async () => {
      await setup();
      const peer = await loggedIn();
      await send(peer);
      expect(await peer.closed).toBe(1009);
      await expectOthersStillServed();
      expect(server!.events.frameErrors).toEqual(['oversized']);
    });
  }

  it('ends the calls of a connection lost in the middle of a DATA frame, with no frame error', async () => {
    await setup();
    const peer = await loggedIn();
    peer.send({ kind: 'req', id: 1, method: 'wait', params: null, deadlineMs: 5000, hasInput: true });
    await peer.next('credit');
    const frame = Buffer.alloc(9000);
    const n = writeDataMessage(frame, 0, 1, Buffer.alloc(8000, 7), Uint8Array.from([1, 2, 3, 4]));
    // Half a frame, then the end of the connection, straight on the client's socket.
    (peer.ws as unknown as { _socket: Socket })._socket.end(frame.subarray(0, n >> 1));
    await server!.sessions[0]!.closed;
    expect(server!.events.codes('wait')).toEqual(['ECANCELED']);
    expect(server!.events.frameErrors).toEqual([]);
  });

  it('refuses request ids that do not increase', async () => {
    await setup();
    const peer = await loggedIn();
    peer.send({ kind: 'req', id: 5, method: 'echo', params: 1, deadlineMs: 1000, hasInput: false });
    await peer.next('result');
    peer.send({ kind: 'req', id: 5, method: 'echo', params: 2, deadlineMs: 1000, hasInput: false });
    await expectProtocolFailure(peer, 'bad-shape');
  });

  it('refuses DATA for a stream that was never opened', async () => {
    await setup();
    const peer = await loggedIn();
    peer.sendRaw(encodeData(42, Buffer.from('x')));
    await expectProtocolFailure(peer, 'unknown-stream');
    expect(server!.events.frameErrors).toEqual(['unknown-stream']);
  });

  it('refuses DATA for a call without input', async () => {
    await setup();
    const peer = await loggedIn();
    peer.send({ kind: 'req', id: 1, method: 'wait', params: null, deadlineMs: 5000, hasInput: false });
    peer.sendRaw(encodeData(1, Buffer.from('x')));
    await expectProtocolFailure(peer, 'unknown-stream');
  });

  it('refuses DATA beyond the granted window', async () => {
    await setup();
    const peer = await loggedIn();
    peer.send({ kind: 'req', id: 1, method: 'wait', params: null, deadlineMs: 5000, hasInput: true });
    const credit = await peer.next('credit');
    expect(credit).toMatchObject({ id: 1, bytes: 32 * 1024 });
    for (let sent = 0; sent <= credit.bytes; sent += 8 * 1024) peer.sendRaw(encodeData(1, Buffer.alloc(8 * 1024)));
    await expectProtocolFailure(peer, 'window-exceeded');
    await server!.sessions[0]!.closed;
    expect(server!.events.frameErrors).toEqual(['window-exceeded']);
    expect(server!.events.codes('wait')).toEqual(['ECANCELED']);
  });

  it('surfaces an oversized frame from the server as EPROTO to pending calls', async () => {
    // A misbehaving server: answers the handshake properly, then sends more than the client accepts.
    const wss = new WebSocketServer({ noServer: true });
    const http1 = http.createServer();
    http1.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => {
      const hello = makeHello(cluster.server, 1 << 20);
      ws.send(encodeFrame(hello));
      ws.on('message', (data: Buffer) => {
        const frame = decodeFrame(data);
        const verdict = frame.kind === 'auth-token' ? acceptClient(cluster.auth, hello, frame) : undefined;
        if (verdict?.ok === true) ws.send(encodeFrame(verdict.welcome));
        if (frame.kind === 'req') ws.send(Buffer.alloc(FRAME_MAX * 2));
      });
    }));
    await new Promise<void>((resolve) => http1.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => new Promise<void>((resolve) => http1.close(() => resolve())));
    cleanup.push(() => new Promise<void>((resolve) => wss.close(() => resolve())));
    cleanup.push(() => wss.clients.forEach((ws) => ws.terminate()));
    const c: RpcClient = await connect(`ws://127.0.0.1:${(http1.address() as AddressInfo).port}`, { kind: 'token', token: cluster.token('ro') }, {
      limits: { frameBytesMax: FRAME_MAX },
    });
    const e = await rejection(c.call('anything'));
    expect(e).toMatchObject({ code: 'EPROTO', message: `frame larger than ${FRAME_MAX} bytes` });
    await c.closed;
  });

  it('sends FAIL and closes the client side when the server sends a bad frame', async () => {
    await setup();
    const c = await connect(server!.url, { kind: 'token', token: cluster.token('ro') });
    const pending = c.call('wait', null, { input: (async function* () { await gate.promise; yield Buffer.from('x'); })() });
    server!.sockets[0]!.send(encodeFrame({ kind: 'cancel', id: 1 } satisfies ControlFrame));
    expect(await rejection(pending)).toMatchObject({ code: 'EPROTO', details: { reason: 'bad-shape' } });
    await c.closed;
  });
});
