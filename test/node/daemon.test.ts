// Real daemons as separate processes on 127.0.0.1, driven by the CLI over the network: remote
// pool, dataset, data and stream commands; replication between two nodes, including a push
// killed mid-stream (kill -9 of the sending node) and resumed from the receiver's token;
// tokens and scopes; /healthz, /status and /metrics (checked by promtool); graceful shutdown.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempRoot } from '../../src/node/cli-test-support.js';
import { MirrorpoolClient } from '../../src/node/client.js';
import { loadNodeHome } from '../../src/node/node-config.js';
import { generateNodeKeys } from '../../src/node/rpc/index.js';
import { type DaemonProcess, cli, httpGet, startDaemon } from './node-support.js';

const { root } = tempRoot('mp-daemon-');

interface Node {
  home: string;
  daemon: DaemonProcess;
  url: string;
}

async function makeHome(home: string, secretFile?: string): Promise<void> {
  const init = await cli(['--home', home, 'node', 'init', '--listen', '127.0.0.1:0', ...(secretFile === undefined ? [] : ['--cluster-secret-file', secretFile])]);
  expect(init.code, init.err).toBe(0);
  await mkdir(join(home, 'vdevs'), { recursive: true });
  const pool = await cli(['--home', home, 'pool', 'create', '--size', '512M', 'tank', join(home, 'vdevs', 'tank.img')]);
  expect(pool.code, pool.err).toBe(0);
}

async function trust(home: string, other: string): Promise<void> {
  const { config } = await loadNodeHome(other);
  expect((await cli(['--home', home, 'node', 'peer', 'add', '--', config.publicKey])).code).toBe(0);
}

async function metricValue(url: string, token: string, name: string, labels = ''): Promise<number> {
  const { body } = await httpGet(url, '/metrics', token);
  const line = body.split('\n').find((l) => l.startsWith(`${name}${labels === '' ? ' ' : `{${labels}}`}`));
  return line === undefined ? NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('two nodes', () => {
  let a: Node;
  let b: Node;
  let admin = '';
  const remote = (n: Node, args: readonly string[], stdin?: readonly Uint8Array[]) => cli(['--node', n.url, '--token', admin, ...args], stdin);

  beforeAll(async () => {
    const homeA = join(root(), 'a');
    const homeB = join(root(), 'b');
    await makeHome(homeA);
    await makeHome(homeB, join(homeA, 'cluster.secret'));
    await trust(homeA, homeB);
    await trust(homeB, homeA);
    const [da, db] = await Promise.all([startDaemon(homeA), startDaemon(homeB)]);
    a = { home: homeA, daemon: da, url: da.url };
    b = { home: homeB, daemon: db, url: db.url };
    const t = await cli(['--home', homeA, 'token', 'create', '--scope', 'admin']);
    expect(t.code, t.err).toBe(0);
    admin = t.out.trim();
  });

  it('runs dataset, data and pool commands on a remote node', async () => {
    expect((await remote(a, ['dataset', 'create', 'tank/d'])).code).toBe(0);
    const payload = randomBytes(300_000);
    const put = await remote(a, ['put', 'tank/d', 'k1', '-'], [payload]);
    expect(put.code, put.err).toBe(0);
    const file = join(root(), 'local-input');
    await writeFile(file, 'from a local file');
    expect((await remote(a, ['put', 'tank/d', 'k2', file])).code).toBe(0);
    const got = await remote(a, ['get', 'tank/d', 'k1']);
    expect(got.code, got.err).toBe(0);
    expect(got.bytes.equals(payload)).toBe(true);
    expect((await remote(a, ['get', 'tank/d', 'k2'])).bytes.toString()).toBe('from a local file');
    const ls = await remote(a, ['ls', 'tank/d', '--json']);
    expect(ls.code).toBe(0);
    expect(ls.out).toContain('k2');
    expect((await remote(a, ['snapshot', 'tank/d@s1'])).code).toBe(0);
    const status = await remote(a, ['pool', 'status', 'tank', '--json']);
    expect(status.code, status.err).toBe(0);
    expect(JSON.parse(status.out)).toMatchObject([{ name: 'tank' }]);
    const missing = await remote(a, ['get', 'tank/d', 'nope']);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/^mirrorpool: ENOENT: /);
    const badUsage = await remote(a, ['dataset', 'frobnicate']);
    expect(badUsage.code).toBe(2);
  });

  it('sends and receives streams through a node, the same pool at both ends', async () => {
    const sent = await remote(a, ['send', 'tank/d@s1']);
    expect(sent.code, sent.err).toBe(0);
    const recv = await remote(a, ['recv', 'tank/copy'], [sent.bytes]);
    expect(recv.code, recv.err).toBe(0);
    expect((await remote(a, ['get', 'tank/copy@s1', 'k2'])).bytes.toString()).toBe('from a local file');
  });

  it('shows node status remotely and from the home folder', async () => {
    const s = await remote(a, ['node', 'status', '--json']);
    expect(s.code, s.err).toBe(0);
    const status = JSON.parse(s.out) as { nodeId: string; pools: { name: string }[] };
    expect(status.nodeId).toBe((await loadNodeHome(a.home)).config.nodeId);
    expect(status.pools.map((p) => p.name)).toEqual(['tank']);
    const local = await cli(['--home', a.home, 'node', 'status']);
    expect(local.code, local.err).toBe(0);
    expect(local.out).toContain(status.nodeId);
  });

  it('replicates a dataset to another node, full then incremental', async () => {
    const full = await remote(a, ['send', 'tank/d@s1', '--to', `${b.url}:tank/r`]);
    expect(full.code, full.err).toBe(0);
    expect((await remote(b, ['get', 'tank/r@s1', 'k2'])).bytes.toString()).toBe('from a local file');
    expect((await remote(a, ['put', 'tank/d', 'k3', '-'], [Buffer.from('later')])).code).toBe(0);
    expect((await remote(a, ['snapshot', 'tank/d@s2'])).code).toBe(0);
    const inc = await remote(a, ['send', '-i', '@s1', 'tank/d@s2', '--to', `${b.url}:tank/r`]);
    expect(inc.code, inc.err).toBe(0);
    expect((await remote(b, ['get', 'tank/r', 'k3'])).bytes.toString()).toBe('later');
  });

  it('keeps its connection to a node between pushes, and connects anew after that node restarts', async () => {
    const accepted = (): Promise<number> => metricValue(b.url, admin, 'mirrorpool_transport_connections_total');
    const push = async (args: readonly string[]): Promise<void> => {
      const pushed = await remote(a, ['send', ...args, '--to', `${b.url}:tank/kept`]);
      expect(pushed.code, pushed.err).toBe(0);
    };
    expect((await remote(a, ['snapshot', 'tank/d@k1'])).code).toBe(0);
    const before = await accepted();
    await push(['tank/d@s1']);
    await push(['-i', '@s1', 'tank/d@s2']);
    await push(['-i', '@s2', 'tank/d@k1']);
    // Three pushes, one connection at most (none when a kept one from an earlier test served).
    expect((await accepted()) - before).toBeLessThanOrEqual(1);
    // b restarts at the same address: the kept connection closed with it, and the next push
    // connects anew.
    await b.daemon.stop();
    b.daemon = await startDaemon(b.home, ['--listen', `127.0.0.1:${new URL(b.url).port}`]);
    expect(b.daemon.url).toBe(b.url);
    expect((await remote(a, ['snapshot', 'tank/d@k2'])).code).toBe(0);
    await push(['-i', '@k1', 'tank/d@k2']);
    expect((await remote(b, ['get', 'tank/kept@k2', 'k3'])).bytes.toString()).toBe('later');
  });

  it('resumes a push whose sending node was killed mid-stream', async () => {
    const big = randomBytes(96 * 1024 * 1024);
    const chunks = Array.from({ length: 96 }, (_, i) => big.subarray(i * 1024 * 1024, (i + 1) * 1024 * 1024));
    expect((await remote(a, ['put', 'tank/d', 'big', '-'], chunks)).code).toBe(0);
    expect((await remote(a, ['snapshot', 'tank/d@s3'])).code).toBe(0);
    const before = await metricValue(b.url, admin, 'mirrorpool_replication_bytes_total');
    const push = remote(a, ['send', '-i', '@s2', 'tank/d@s3', '--to', `${b.url}:tank/r`]);
    // Kill the sender as soon as the receiver has applied some of the stream.
    for (let i = 0; i < 2000; i++) {
      if ((await metricValue(b.url, admin, 'mirrorpool_replication_bytes_total')) > before) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    await a.daemon.stop('SIGKILL');
    const cut = await push;
    expect(cut.code).toBe(1);
    expect(cut.err).toMatch(/^mirrorpool: ECANCELED: /);
    // The receiver keeps what arrived and a token, once its receive has stopped.
    let token = '';
    for (let i = 0; i < 200 && token === ''; i++) {
      const got = await remote(b, ['dataset', 'get', '-p', '--json', 'receive_resume_token', 'tank/r']);
      expect(got.code, got.err).toBe(0);
      token = /"value":\s*"([^"-][^"]{19,})"/.exec(got.out)?.[1] ?? '';
      if (token === '') await new Promise((r) => setTimeout(r, 50));
    }
    expect(token).not.toBe('');
    a.daemon = await startDaemon(a.home);
    a.url = a.daemon.url;
    const resumed = await remote(a, ['send', '-v', '-i', '@s2', 'tank/d@s3', '--to', `${b.url}:tank/r`]);
    expect(resumed.code, resumed.err).toBe(0);
    expect(resumed.err).toMatch(/resuming the stopped receive/);
    // Only the rest of the stream went again.
    const estimate = await remote(a, ['send', '--estimate', '-i', '@s2', 'tank/d@s3']);
    const full = Number(/: (\d+) bytes/.exec(estimate.out)?.[1]);
    const again = Number(/: (\d+) stream bytes sent/.exec(resumed.err)?.[1]);
    expect(again).toBeGreaterThan(0);
    expect(again).toBeLessThan(full);
    const back = await remote(b, ['get', 'tank/r@s3', 'big']);
    expect(back.bytes.equals(big)).toBe(true);
  });

  it('refuses a wrong token, a wrong scope and an unknown node before handling anything', async () => {
    const ro = (await cli(['--home', a.home, 'token', 'create', '--scope', 'ro'])).out.trim();
    const denied = await cli(['--node', a.url, '--token', ro, 'put', 'tank/d', 'x', '-'], [Buffer.from('no')]);
    expect(denied.code).toBe(1);
    expect(denied.err).toMatch(/^mirrorpool: EAUTH: /);
    expect((await cli(['--node', a.url, '--token', ro, 'ls', 'tank/d'])).code).toBe(0);
    const forged = await cli(['--node', a.url, '--token', `${admin.slice(0, -4)}AAAA`, 'pool', 'list']);
    expect(forged.code).toBe(1);
    expect(forged.err).toMatch(/EAUTH/);
    const metricsOnly = (await cli(['--home', a.home, 'token', 'create', '--scope', 'metrics'])).out.trim();
    expect((await cli(['--node', a.url, '--token', metricsOnly, 'pool', 'list'])).code).toBe(1);
    const stranger = generateNodeKeys();
    const secret = (await loadNodeHome(a.home)).clusterSecret;
    await expect(MirrorpoolClient.connect(a.url, { kind: 'node', keys: stranger, clusterSecret: secret })).rejects.toMatchObject({ code: 'EAUTH' });
    const peer = await loadNodeHome(b.home);
    await expect(MirrorpoolClient.connect(a.url, { kind: 'node', keys: peer.keys, clusterSecret: 'x'.repeat(43) })).rejects.toMatchObject({ code: 'EAUTH' });
    const asPeer = await MirrorpoolClient.connect(a.url, { kind: 'node', keys: peer.keys, clusterSecret: peer.clusterSecret });
    expect(asPeer.server.id).toBe((await loadNodeHome(a.home)).config.nodeId);
    await asPeer.close();
    expect(await metricValue(a.url, admin, 'mirrorpool_transport_auth_failures_total', 'reason="scope"')).toBeGreaterThan(0);
    expect(await metricValue(a.url, admin, 'mirrorpool_transport_auth_failures_total', 'reason="unknown-node"')).toBeGreaterThan(0);
    expect(await metricValue(a.url, admin, 'mirrorpool_transport_auth_failures_total', 'reason="cluster-secret"')).toBeGreaterThan(0);
  });

  it('keeps serving after garbage frames on another connection', async () => {
    const ws = new WebSocket(`${a.url}/rpc`);
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    ws.send(Buffer.from('definitely not msgpack'));
    await closed;
    expect((await remote(a, ['pool', 'list'])).code).toBe(0);
  });

  it('keeps its memory bounded under a flood of requests and oversized frames', async () => {
    const rss = async (): Promise<number> => Number(/VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${a.daemon.child.pid}/status`, 'utf8'))?.[1]) * 1024;
    const before = await rss();
    const client = await MirrorpoolClient.connect(a.url, admin);
    const settled = await Promise.allSettled(Array.from({ length: 3000 }, () => client.nodeStatus()));
    const refused = settled.filter((r) => r.status === 'rejected');
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) expect(r.reason).toMatchObject({ code: 'EBUSY' });
    await client.close();
    const junk = Buffer.alloc(5 * 1024 * 1024, 0xc1);
    for (let i = 0; i < 80; i++) {
      const ws = new WebSocket(`${a.url}/rpc`);
      await new Promise((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('error', reject);
      });
      const closed = new Promise((resolve) => ws.once('close', resolve));
      ws.send(junk);
      await closed;
    }
    const grown = (await rss()) - before;
    expect(grown).toBeLessThan(160 * 1024 * 1024);
    expect((await remote(a, ['pool', 'list'])).code).toBe(0);
    expect(await metricValue(a.url, admin, 'mirrorpool_transport_frame_errors_total', 'reason="oversized"')).toBeGreaterThanOrEqual(80);
  });

  it('serves /healthz, and /status and /metrics only with a token', async () => {
    expect((await httpGet(a.url, '/healthz')).status).toBe(200);
    expect((await httpGet(a.url, '/status')).status).toBe(401);
    expect((await httpGet(a.url, '/metrics')).status).toBe(401);
    const metricsToken = (await cli(['--home', a.home, 'token', 'create', '--scope', 'metrics'])).out.trim();
    expect((await httpGet(a.url, '/status', metricsToken)).status).toBe(403);
    const status = await httpGet(a.url, '/status', admin);
    expect(JSON.parse(status.body)).toMatchObject({ url: a.url });
    const metrics = await httpGet(a.url, '/metrics', metricsToken);
    expect(metrics.status).toBe(200);
    expect(metrics.body).toContain('mirrorpool_transport_requests_total');
    expect(metrics.body).toContain('process_cpu_seconds_total');
    const check = spawnSync('promtool', ['check', 'metrics'], { input: metrics.body, encoding: 'utf8' });
    expect(check.status, `${check.stdout}${check.stderr}`).toBe(0);
    expect(`${check.stdout}${check.stderr}`.trim()).toBe('');
  });

  it('stops gracefully on SIGTERM with what it acknowledged on disk', async () => {
    expect((await remote(b, ['put', 'tank/r', 'last', '-'], [Buffer.from('kept')])).code).toBe(0);
    expect(await b.daemon.stop('SIGTERM')).toBe(0);
    const local = await cli(['--home', b.home, 'get', 'tank/r', 'last']);
    expect(local.code, local.err).toBe(0);
    expect(local.bytes.toString()).toBe('kept');
  });
});
