// A node's home: init writes a config, key and secret that load back; every bad field of
// node.json, a file that is not JSON, a short secret or a key that does not match is a coded
// error naming the file, and nothing in the home changes; init refuses a folder that has a node.
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hasCode } from '../lib/index.js';
import { tempRoot } from './cli-test-support.js';
import { CONFIG_FILE, addPeer, initNodeHome, loadNodeHome, parseListen, parseNodeUrl, validateConfig } from './node-config.js';
import { generateNodeKeys } from './rpc/index.js';

const { caseDir } = tempRoot('mp-node-config-');

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    if (hasCode(e, 'EINVAL') || hasCode(e, 'EPROTO')) return e.code;
    throw e;
  }
  return undefined;
}

describe('node config', () => {
  it('writes a home that loads back, and refuses to init it twice', async () => {
    const home = caseDir();
    const made = await initNodeHome(home, { listen: '127.0.0.1:7201' });
    const loaded = await loadNodeHome(home);
    expect(loaded.config).toEqual(made.config);
    expect(loaded.config.advertise).toMatch(/^ws:\/\/127\.0\.0\.1:7201\/?$/);
    expect(loaded.clusterSecret.length).toBeGreaterThanOrEqual(43);
    const before = await readFile(join(home, CONFIG_FILE), 'utf8');
    await expect(initNodeHome(home)).rejects.toMatchObject({ code: 'EEXIST' });
    expect(await readFile(join(home, CONFIG_FILE), 'utf8')).toBe(before);
  });

  it('refuses every malformed field of node.json with EINVAL naming it', async () => {
    const { config } = await initNodeHome(caseDir());
    const other = generateNodeKeys();
    const bad: [string, Record<string, unknown>][] = [
      ['version', { version: 2 }],
      ['nodeId', { nodeId: other.id }],
      ['publicKey', { publicKey: 'not a key' }],
      ['listen', { listen: 'localhost' }],
      ['listen', { listen: '127.0.0.1:70000' }],
      ['advertise', { advertise: 'http://127.0.0.1:7101' }],
      ['peers', { peers: 'everyone' }],
      ['peers[0].id', { peers: [{ id: 'n0000000000000000', publicKey: other.publicKey }] }],
      ['peers[0].url', { peers: [{ id: other.id, publicKey: other.publicKey, url: 'ftp://x' }] }],
      ['txgTimeoutMs', { txgTimeoutMs: 5 }],
      ['logLevel', { logLevel: 'loud' }],
      ['tls', { tls: 'yes' }],
      ['tls.key', { tls: { cert: '/c.pem' } }],
    ];
    for (const [field, change] of bad) {
      let error: unknown;
      try {
        validateConfig({ ...config, ...change }, 'node.json');
      } catch (e) {
        error = e;
      }
      expect(error, field).toMatchObject({ code: 'EINVAL' });
      // URLs are checked by parseNodeUrl, whose message names the field.
      if (!['publicKey', 'advertise', 'peers[0].url'].includes(field)) expect(error, field).toMatchObject({ details: { field } });
    }
    expect(codeOf(() => validateConfig([], 'node.json'))).toBe('EINVAL');
    expect(codeOf(() => validateConfig(null, 'node.json'))).toBe('EINVAL');
  });

  it('refuses a damaged home at load: not JSON, a short secret, a key of another node', async () => {
    const home = caseDir();
    await initNodeHome(home);
    const files = async (): Promise<string[]> => (await readdir(home)).sort();
    const listed = await files();
    const config = await readFile(join(home, CONFIG_FILE), 'utf8');
    await writeFile(join(home, CONFIG_FILE), '{"version": 1,');
    await expect(loadNodeHome(home)).rejects.toMatchObject({ code: 'EPROTO' });
    await writeFile(join(home, CONFIG_FILE), config);
    await writeFile(join(home, 'cluster.secret'), 'short\n');
    await expect(loadNodeHome(home)).rejects.toMatchObject({ code: 'EINVAL' });
    await writeFile(join(home, 'cluster.secret'), `${'A'.repeat(43)}\n`);
    await writeFile(join(home, 'node.key'), generateNodeKeys().privateKey);
    await expect(loadNodeHome(home)).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(loadNodeHome(caseDir())).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(addPeer(home, { id: 'x', publicKey: 'y' })).rejects.toMatchObject({ code: 'EINVAL' });
    expect(await files()).toEqual(listed);
    expect(await readFile(join(home, CONFIG_FILE), 'utf8')).toBe(config);
  });

  it('parses listen addresses and node URLs, and refuses the rest', () => {
    expect(parseListen('0.0.0.0:7101')).toEqual({ host: '0.0.0.0', port: 7101 });
    expect(parseListen('[::1]:0')).toEqual({ host: '::1', port: 0 });
    for (const text of ['7101', 'host:', ':7101', 'a b:1', '[zz::1]:1', 'h:123456']) expect(codeOf(() => parseListen(text)), text).toBe('EINVAL');
    expect(parseNodeUrl('wss://node-a:7101').protocol).toBe('wss:');
    for (const text of ['node-a:7101', 'http://a:1', 'ws://user:pw@a:1', '']) expect(codeOf(() => parseNodeUrl(text)), text).toBe('EINVAL');
  });
});
