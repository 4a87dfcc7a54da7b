// A node serving wss:// and https:// with a certificate made by openssl for this test: clients
// that trust its CA connect, clients that do not are refused with a clear error.
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempRoot } from '../../src/node/cli-test-support.js';
import { type DaemonProcess, cli, startDaemon } from './node-support.js';

const { root } = tempRoot('mp-tls-');

function makeCert(dir: string): { cert: string; key: string } {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert,
  ], { stdio: 'ignore' });
  return { cert, key };
}

describe('a node with TLS', () => {
  let daemon: DaemonProcess;
  let cert = '';
  let token = '';

  beforeAll(async () => {
    const files = makeCert(root());
    cert = files.cert;
    const tlsHome = join(root(), 'tls');
    const init = await cli(['--home', tlsHome, 'node', 'init', '--listen', '127.0.0.1:0', '--tls-cert', files.cert, '--tls-key', files.key]);
    expect(init.code, init.err).toBe(0);
    daemon = await startDaemon(tlsHome);
    token = (await cli(['--home', tlsHome, 'token', 'create', '--scope', 'ro'])).out.trim();
  });

  it('advertises wss:// and serves clients that trust its certificate', async () => {
    expect(daemon.url).toMatch(/^wss:\/\/127\.0\.0\.1:\d+$/);
    const ok = await cli(['--node', daemon.url, '--token', token, '--ca', cert, 'pool', 'list']);
    expect(ok.code, ok.err).toBe(0);
    const res = await fetch(`${daemon.url.replace(/^wss/, 'https')}/healthz`).catch((e: unknown) => e);
    expect(res).toBeInstanceOf(Error); // fetch does not trust the test CA
    expect((await readFile(cert, 'utf8')).startsWith('-----BEGIN CERTIFICATE-----')).toBe(true);
  });

  it('refuses a client that does not trust the certificate', async () => {
    const refused = await cli(['--node', daemon.url, '--token', token, 'pool', 'list']);
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/^mirrorpool: (EAUTH|EIO): .*certificate/);
  });
});
