import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MirrorpoolClient } from './client.js';
import { PeerClients } from './peer-clients.js';
import { type TestCluster, type TestServer, startServer, testCluster } from './rpc/rpc-test-support.js';

describe('PeerClients', () => {
  let cluster: TestCluster;
  let server: TestServer;
  let key = '';
  const connect = (): Promise<MirrorpoolClient> => MirrorpoolClient.connect(server.url, { kind: 'node', keys: cluster.peer, clusterSecret: cluster.secret });

  beforeEach(async () => {
    cluster = testCluster();
    server = await startServer({ auth: cluster.auth, methods: {} });
    key = PeerClients.key(server.url, { kind: 'node', keys: cluster.peer, clusterSecret: cluster.secret }, undefined) ?? '';
  });

  afterEach(async () => {
    await server.close();
  });

  it('hands a client given back to the next taker instead of connecting', async () => {
    const peers = new PeerClients();
    const first = await peers.take(key, connect);
    expect(first.reused).toBe(false);
    peers.give(key, first.client);
    const second = await peers.take(key, connect);
    expect(second).toEqual({ client: first.client, reused: true });
    expect(server.events.opened).toBe(1);
    // Taken, it is no longer idle: a push beside it connects anew.
    const beside = await peers.take(key, connect);
    expect(beside.client).not.toBe(first.client);
    peers.give(key, second.client);
    peers.give(key, beside.client);
    expect(peers.idleCount).toBe(1);
    await beside.client.rpc.closed;
    await peers.close();
    await first.client.rpc.closed;
    expect(server.events.opened).toBe(2);
  });

  it('closes a client left idle, and never hands out one whose connection closed', async () => {
    const peers = new PeerClients(20);
    const idle = await peers.take(key, connect);
    peers.give(key, idle.client);
    await idle.client.rpc.closed;
    expect(idle.client.isOpen).toBe(false);
    expect(peers.idleCount).toBe(0);
    const kept = await peers.take(key, connect);
    peers.give(key, kept.client);
    for (const ws of server.sockets) ws.terminate();
    await kept.client.rpc.closed;
    const next = await peers.take(key, connect);
    expect(next.reused).toBe(false);
    expect(next.client.isOpen).toBe(true);
    await next.client.close();
    await peers.close();
  });

  it('closes at once what is given back after close(), and keeps no token connection', async () => {
    const peers = new PeerClients();
    const { client } = await peers.take(key, connect);
    await peers.close();
    peers.give(key, client);
    await client.rpc.closed;
    expect(peers.idleCount).toBe(0);
    expect(PeerClients.key(server.url, { kind: 'token', token: cluster.token('admin') }, undefined)).toBeUndefined();
  });
});
