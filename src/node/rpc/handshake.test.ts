import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type WebSocket, WebSocketServer } from 'ws';
import { type RpcClient, connect } from './client.js';
import type { MethodSpec, RpcLimits } from './connection.js';
import { decodeFrame, encodeFrame } from './frames.js';
import { type AuthFrame, type ClientCredentials, type HelloFrame, makeHello, transcript, transcriptMac } from './handshake.js';
import { generateNodeKeys, signWith } from './identity.js';
import { RawPeer, RecordingEvents, type TestServer, rejection, startServer, testCluster } from './rpc-test-support.js';
import { createToken } from './tokens.js';

const cluster = testCluster();
let server: TestServer | undefined;
let handled = 0;
const cleanup: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
  await server?.close();
  server = undefined;
  handled = 0;
});

const methods: Record<string, MethodSpec> = {
  whoami: { scope: 'ro', handler: async (_p, ctx) => ((handled++), ctx.principal) },
  write: { scope: 'rw', handler: async () => ((handled++), 'written') },
  admin: { scope: 'admin', handler: async () => ((handled++), 'done') },
};

async function setup(limits?: Partial<RpcLimits>): Promise<TestServer> {
  server = await startServer({ auth: cluster.auth, methods, ...(limits ? { limits } : {}) });
  return server;
}

async function open(credentials: ClientCredentials, options: { expectNodeId?: string; events?: RecordingEvents } = {}): Promise<RpcClient> {
  const c = await connect(server!.url, credentials, options);
  cleanup.push(() => c.close());
  return c;
}

/** connect() is refused with EAUTH `reason`; the server counted it and ran no handler. */
async function expectRefused(credentials: ClientCredentials, reason: string): Promise<void> {
  const e = await rejection(connect(server!.url, credentials));
  expect(e).toMatchObject({ code: 'EAUTH', details: { reason } });
  await Promise.all(server!.sessions.map((s) => s.closed));
  expect(server!.events.authFailures).toEqual([reason]);
  expect(server!.events.requests).toEqual([]);
  expect(handled).toBe(0);
}

const node = (keys = cluster.peer, clusterSecret = cluster.secret): ClientCredentials => ({ kind: 'node', keys, clusterSecret });

describe('rpc authentication', () => {
  it('accepts a token and tells the handler its id and scope', async () => {
    await setup();
    const c = await open({ kind: 'token', token: cluster.token('ro') });
    expect(c.server).toEqual({ id: cluster.server.id, publicKey: cluster.server.publicKey });
    expect(await c.call('whoami')).toMatchObject({ kind: 'token', scope: 'ro', id: expect.stringMatching(/^t/) as unknown });
    expect(server!.events.authFailures).toEqual([]);
  });

  it('refuses an expired token', async () => {
    await setup();
    await expectRefused({ kind: 'token', token: createToken(cluster.secret, 'admin', { ttlMs: 1000, now: Date.now() - 5000 }) }, 'token-expired');
  });

  it('refuses a metrics token on the RPC socket', async () => {
    await setup();
    await expectRefused({ kind: 'token', token: cluster.token('metrics') }, 'scope');
  });

  it('refuses a token signed with another cluster secret', async () => {
    await setup();
    await expectRefused({ kind: 'token', token: createToken('another-secret', 'admin', { ttlMs: 60_000, now: Date.now() }) }, 'token-signature');
  });

  it('refuses a malformed token', async () => {
    await setup();
    await expectRefused({ kind: 'token', token: 'mpt1.not-a-token' }, 'token-malformed');
  });

  it('answers EAUTH scope for a method above the token scope and keeps the connection', async () => {
    await setup();
    const c = await open({ kind: 'token', token: cluster.token('ro') });
    expect(await rejection(c.call('write'))).toMatchObject({ code: 'EAUTH', details: { reason: 'scope', need: 'rw', have: 'ro' } });
    expect(await c.call('whoami')).toMatchObject({ scope: 'ro' });
    expect(server!.events.authFailures).toEqual(['scope']);
    expect(handled).toBe(1);
  });

  it('authenticates nodes both ways and gives node peers admin scope', async () => {
    await setup();
    const events = new RecordingEvents();
    const c = await open(node(), { expectNodeId: cluster.server.id, events });
    expect(c.server.id).toBe(cluster.server.id);
    expect(await c.call('whoami')).toEqual({ kind: 'node', id: cluster.peer.id, scope: 'admin' });
    expect(await c.call('admin')).toBe('done');
    expect(events.opened).toBe(1);
    expect(events.codes()).toEqual(['OK', 'OK']);
  });

  it('refuses a node that does not know the cluster secret', async () => {
    await setup();
    await expectRefused(node(cluster.peer, 'wrong-secret'), 'cluster-secret');
  });

  it('refuses a node whose key is not a member', async () => {
    await setup();
    await expectRefused(node(generateNodeKeys()), 'unknown-node');
  });

  it('refuses a member id presented with another key', async () => {
    await setup();
    const impostor = generateNodeKeys();
    const members = new Map([[cluster.peer.id, impostor.publicKey]]);
    await server!.close();
    server = await startServer({ auth: { ...cluster.auth, knownNodes: (id) => members.get(id) }, methods });
    await expectRefused(node(), 'unknown-node');
  });

  it('refuses a replayed node AUTH frame', async () => {
    await setup();
    const c = await open(node());
    expect(await c.call('whoami')).toMatchObject({ kind: 'node' });
    const captured = server!.firstMessages[0]!;
    expect(decodeFrame(captured).kind).toBe('auth-node');
    const peer = await RawPeer.open(server!.url);
    await peer.next('hello');
    peer.sendRaw(captured);
    expect((await peer.next('fail')).error).toMatchObject({ code: 'EAUTH', details: { reason: 'cluster-secret' } });
    expect(await peer.closed).toBe(1008);
    expect(server!.events.authFailures).toEqual(['cluster-secret']);
    expect(handled).toBe(1);
  });

  it('refuses a request sent before authentication', async () => {
    await setup();
    const peer = await RawPeer.open(server!.url);
    await peer.next('hello');
    peer.send({ kind: 'req', id: 1, method: 'whoami', params: null, deadlineMs: 1000, hasInput: false });
    expect((await peer.next('fail')).error).toMatchObject({ code: 'EAUTH', details: { reason: 'handshake-malformed' } });
    expect(await peer.closed).toBe(1008);
    expect(server!.events.authFailures).toEqual(['handshake-malformed']);
    expect(server!.events.requests).toEqual([]);
    expect(handled).toBe(0);
  });

  it('refuses garbage sent instead of authentication', async () => {
    await setup();
    const peer = await RawPeer.open(server!.url);
    await peer.next('hello');
    peer.sendRaw(Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff]));
    expect((await peer.next('fail')).error).toMatchObject({ code: 'EAUTH', details: { reason: 'handshake-malformed' } });
    expect(server!.events.frameErrors).toEqual([]);
  });

  it('closes a connection that does not authenticate in time', async () => {
    await setup({ handshakeTimeoutMs: 50 });
    const peer = await RawPeer.open(server!.url);
    expect((await peer.next('fail')).error).toMatchObject({ code: 'EAUTH', details: { reason: 'handshake-timeout' } });
    expect(await peer.closed).toBe(1008);
    expect(server!.events.authFailures).toEqual(['handshake-timeout']);
  });

  it('refuses to send credentials to a server that is not the expected node', async () => {
    await setup();
    const events = new RecordingEvents();
    const e = await rejection(connect(server!.url, node(), { expectNodeId: cluster.peer.id, events }));
    expect(e).toMatchObject({ code: 'EAUTH', details: { reason: 'unknown-node' } });
    await server!.sessions[0]!.closed;
    expect(server!.firstMessages.map((m) => decodeFrame(m).kind)).toEqual(['fail']);
    expect(events.authFailures).toEqual(['unknown-node']);
    expect(server!.events.authFailures).toEqual([]);
  });
});

/** A server that answers HELLO/AUTH with `welcome`: to test what the client checks. */
async function fakeServer(welcome: (hello: HelloFrame, auth: AuthFrame, ws: WebSocket) => void): Promise<string> {
  const wss = new WebSocketServer({ noServer: true });
  const httpServer = http.createServer();
  httpServer.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => {
    const hello = makeHello(cluster.server, 1 << 20);
    ws.send(encodeFrame(hello));
    ws.once('message', (data: Buffer) => welcome(hello, decodeFrame(data) as AuthFrame, ws));
  }));
  await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
  cleanup.push(() => new Promise<void>((resolve) => httpServer.close(() => resolve())));
  cleanup.push(() => new Promise<void>((resolve) => wss.close(() => resolve())));
  cleanup.push(() => wss.clients.forEach((ws) => ws.terminate()));
  return `ws://127.0.0.1:${(httpServer.address() as AddressInfo).port}`;
}

describe('rpc authentication of the server', () => {
  it('refuses a server that proves its key but not the cluster secret', async () => {
    const url = await fakeServer((hello, auth, ws) => {
      const proof = transcript('server', hello.nonce, auth.nonce, cluster.server.id, cluster.peer.id);
      ws.send(encodeFrame({
        kind: 'welcome', principalKind: 'node', principalId: cluster.peer.id, scope: 'admin',
        signature: signWith(cluster.server, proof), mac: transcriptMac('not-the-secret', proof),
      }));
    });
    const events = new RecordingEvents();
    const e = await rejection(connect(url, node(), { events }));
    expect(e).toMatchObject({ code: 'EAUTH', details: { reason: 'cluster-secret' } });
    expect(events.authFailures).toEqual(['cluster-secret']);
    expect(events.closed).toBe(events.opened);
  });

  it('refuses a server that cannot sign as the node it claims to be', async () => {
    const impostor = generateNodeKeys();
    const url = await fakeServer((hello, auth, ws) => {
      const node = auth.kind === 'auth-node';
      const proof = transcript(node ? 'server' : 'server-token', hello.nonce, auth.nonce, cluster.server.id, node ? cluster.peer.id : '');
      ws.send(encodeFrame({
        kind: 'welcome', principalKind: node ? 'node' : 'token', principalId: 'x', scope: 'admin',
        signature: signWith(impostor, proof), mac: node ? transcriptMac(cluster.secret, proof) : null,
      }));
    });
    expect(await rejection(connect(url, node()))).toMatchObject({ code: 'EAUTH', details: { reason: 'node-signature' } });
    expect(await rejection(connect(url, { kind: 'token', token: cluster.token('ro') }))).toMatchObject({ code: 'EAUTH', details: { reason: 'node-signature' } });
  });
});

describe('connect failures', () => {
  it('fails with EIO when nothing listens and EINVAL for a bad URL', async () => {
    const httpServer = http.createServer();
    await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
    const port = (httpServer.address() as AddressInfo).port;
    await new Promise<void>((resolve) => httpServer.close(() => resolve()));
    expect(await rejection(connect(`ws://127.0.0.1:${port}`, node()))).toMatchObject({ code: 'EIO', details: { url: `ws://127.0.0.1:${port}/rpc` } });
    expect((await rejection(connect('http://127.0.0.1:1', node()))).code).toBe('EINVAL');
    expect((await rejection(connect('not a url', node()))).code).toBe('EINVAL');
    expect((await rejection(connect('ws://127.0.0.1:1', { kind: 'token', token: '' }))).code).toBe('EINVAL');
  });

  it('fails with ETIMEDOUT when the server never says hello', async () => {
    const wss = new WebSocketServer({ noServer: true });
    const httpServer = http.createServer();
    httpServer.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head, () => undefined));
    await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => new Promise<void>((resolve) => httpServer.close(() => resolve())));
    cleanup.push(() => wss.clients.forEach((ws) => ws.terminate()));
    const e = await rejection(connect(`ws://127.0.0.1:${(httpServer.address() as AddressInfo).port}`, node(), { timeoutMs: 50 }));
    expect(e.code).toBe('ETIMEDOUT');
  });
});
