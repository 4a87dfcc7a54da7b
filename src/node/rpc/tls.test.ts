import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from './client.js';
import type { MethodSpec } from './connection.js';
import { type TestServer, rejection, sizedChunks, startServer, testCluster } from './rpc-test-support.js';

const cluster = testCluster();
/** Odd sizes, so writes end mid-frame and mid-batch. */
const data = sizedChunks([1, 5000, 16 * 1024, 1024 * 1024 + 3, 3 * 1024 * 1024 - 7, 70_001]);
const pull: MethodSpec = {
  scope: 'ro',
  handler: async (_p, ctx) => {
    for await (const chunk of data.chunks()) await ctx.write(chunk);
    return null;
  },
};
const push = data.receives;
let dir: string;
let tls: { key: string; cert: string };
let server: TestServer;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mirrorpool-tls-'));
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
  ], { stdio: 'ignore' });
  tls = { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8') };
  server = await startServer({ auth: cluster.auth, methods: { echo: { scope: 'ro', handler: async (p) => p }, pull, push }, tls });
});

afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('rpc over TLS', () => {
  it('works over wss:// with the CA that signed the server certificate', async () => {
    expect(server.url).toMatch(/^wss:/);
    const c = await connect(server.url, { kind: 'node', keys: cluster.peer, clusterSecret: cluster.secret }, { ca: tls.cert });
    expect(await c.call('echo', 'over tls')).toBe('over tls');
    await c.close();
  });

  it('refuses an untrusted certificate with EAUTH tls-certificate', async () => {
    const e = await rejection(connect(server.url, { kind: 'token', token: cluster.token('ro') }));
    expect(e).toMatchObject({ code: 'EAUTH', details: { reason: 'tls-certificate', tlsCode: 'DEPTH_ZERO_SELF_SIGNED_CERT' } });
    expect(e.message).toMatch(/certificate .* is not trusted/);
    expect(server.events.opened).toBe(1);
  });

  it('streams megabytes both ways byte for byte, in writes that end mid-frame', async () => {
    const c = await connect(server.url, { kind: 'node', keys: cluster.peer, clusterSecret: cluster.secret }, { ca: tls.cert });
    const got: Buffer[] = [];
    await c.call('pull', null, { output: (chunk) => void got.push(Buffer.from(chunk)) });
    expect(Buffer.concat(got).equals(data.whole)).toBe(true);
    expect(await c.call('push', null, { input: data.chunks() })).toBe(true);
    expect(server.events.frameErrors).toEqual([]);
    await c.close();
  });
});
