// The daemon's parameter checks refuse everything of the wrong shape with EINVAL before a
// handler runs; the scope table maps each command line to the least scope it needs; the client's
// rewriting of local files and the `--to` target parser.
import { describe, expect, it } from 'vitest';
import { hasCode } from '../lib/index.js';
import { SectionReader, commandScope, receiveParams, resumeTokenParams, runParams, sectionHeader, sendParams, tokenParams } from './api.js';
import { planRemote, runsRemotely, splitConnectionOptions } from './remote.js';
import { parseTarget } from './replicate-target.js';

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (hasCode(e, 'EINVAL') || hasCode(e, 'EPROTO')) return e.code;
    throw e;
  }
  return 'OK';
}

describe('RPC parameters', () => {
  it('accepts well-formed parameters', () => {
    expect(runParams({ argv: ['pool', 'list'], stdin: false })).toEqual({ argv: ['pool', 'list'], stdin: false });
    expect(tokenParams({ scope: 'ro', ttlMs: 60_000 })).toEqual({ scope: 'ro', ttlMs: 60_000 });
    expect(sendParams({ snapshot: 't/d@s', from: 't/d@r' })).toEqual({ snapshot: 't/d@s', from: 't/d@r' });
    expect(receiveParams({ dataset: 't/d' })).toEqual({ dataset: 't/d', force: false, resumable: false });
    expect(resumeTokenParams({ dataset: 't/d' })).toEqual({ dataset: 't/d' });
  });

  it('refuses wrong types, sizes and combinations with EINVAL', () => {
    const bad: [string, () => unknown][] = [
      ['params not a map', () => runParams([1])],
      ['argv not a list', () => runParams({ argv: 'pool list' })],
      ['argv too long', () => runParams({ argv: Array.from({ length: 257 }, () => 'x') })],
      ['an argument not text', () => runParams({ argv: ['put', 7] })],
      ['a huge argument', () => runParams({ argv: ['x'.repeat(70_000)] })],
      ['stdin not boolean', () => runParams({ argv: [], stdin: 'yes' })],
      ['unknown scope', () => tokenParams({ scope: 'root', ttlMs: 60_000 })],
      ['ttl too short', () => tokenParams({ scope: 'ro', ttlMs: 10 })],
      ['ttl not integer', () => tokenParams({ scope: 'ro', ttlMs: 1.5e6 + 0.5 })],
      ['send neither snapshot nor token', () => sendParams({})],
      ['send both', () => sendParams({ snapshot: 't/d@s', token: 'x' })],
      ['token with from', () => sendParams({ token: 'x', from: 't/d@r' })],
      ['dataset empty', () => receiveParams({ dataset: '' })],
      ['force not boolean', () => receiveParams({ dataset: 't/d', force: 1 })],
      ['dataset not text', () => resumeTokenParams({ dataset: 5 })],
    ];
    for (const [what, fn] of bad) expect(code(fn), what).toBe('EINVAL');
  });
});

describe('command scopes', () => {
  it('asks the least scope that allows each command', () => {
    const table: [string[], string][] = [
      [['pool', 'list'], 'ro'],
      [['pool', 'status', 'tank'], 'ro'],
      [['pool', 'sync', 'tank'], 'rw'],
      [['pool', 'create', 'tank', '/v'], 'admin'],
      [['pool', 'export', 'tank'], 'admin'],
      [['dataset', 'list'], 'ro'],
      [['dataset', 'destroy', 't/d'], 'rw'],
      [['get', 't/d', 'k'], 'ro'],
      [['put', 't/d', 'k'], 'rw'],
      [['recv', 't/d'], 'rw'],
      [['send', 't/d@s'], 'ro'],
      [['send', 't/d@s', '--to', 'ws://b:1:t/d'], 'rw'],
      [['token', 'create', '--scope', 'admin'], 'admin'],
      [['--weird'], 'admin'],
      [['frobnicate'], 'admin'],
      [['put', '--help'], 'ro'],
    ];
    for (const [argv, scope] of table) expect(commandScope(argv), argv.join(' ')).toBe(scope);
  });
});

describe('remote command lines', () => {
  it('takes the connection options from the front only', () => {
    expect(splitConnectionOptions(['--node', 'ws://a:1', '--token=t', 'put', 'x', '--token', 'y'])).toEqual({
      options: { '--node': 'ws://a:1', '--token': 't' },
      rest: ['put', 'x', '--token', 'y'],
    });
    expect(runsRemotely(['pool', 'list'])).toBe(true);
    expect(runsRemotely(['node', 'status'])).toBe(false);
    expect(runsRemotely(['up'])).toBe(false);
    expect(runsRemotely(['--help'])).toBe(false);
  });

  it('sends local input files as stdin and takes -o files back', () => {
    expect(planRemote(['put', 't/d', 'k', '/local/file'])).toEqual({ argv: ['put', 't/d', 'k', '-'], stdin: true, inputFile: '/local/file' });
    expect(planRemote(['write', 't/d', 'k', '--offset', '5', 'f'])).toEqual({ argv: ['write', 't/d', 'k', '--offset', '5', '-'], stdin: true, inputFile: 'f' });
    expect(planRemote(['put', 't/d', 'k'])).toEqual({ argv: ['put', 't/d', 'k'], stdin: true });
    expect(planRemote(['get', 't/d', 'k', '-o', 'out'])).toEqual({ argv: ['get', 't/d', 'k'], stdin: false, outputFile: 'out' });
    expect(planRemote(['recv', '-A', 't/d'])).toEqual({ argv: ['recv', '-A', 't/d'], stdin: false });
  });

  it('parses --to targets and refuses malformed ones', () => {
    expect(parseTarget('ws://10.0.0.2:7101:tank/data')).toEqual({ url: 'ws://10.0.0.2:7101', dataset: 'tank/data' });
    expect(parseTarget('wss://b.example:7101/:tank/d')).toEqual({ url: 'wss://b.example:7101', dataset: 'tank/d' });
    for (const text of ['tank/data', 'ws://b:7101', 'http://b:1:t/d', 'ws://b:1:']) expect(code(() => parseTarget(text)), text).toBe('EINVAL');
  });
});

describe('command output sections', () => {
  it('reassembles sections split anywhere, and refuses an unknown channel or a cut section', async () => {
    const got: [number, string][] = [];
    const reader = new SectionReader((channel, bytes) => void got.push([channel, Buffer.from(bytes).toString()]));
    const stream = Buffer.concat([sectionHeader(1, 5), Buffer.from('hello'), sectionHeader(2, 3), Buffer.from('err')]);
    for (const byte of stream) await reader.push(Uint8Array.of(byte));
    reader.finish();
    expect(got.map(([c, s]) => `${c}${s}`).join('')).toBe('1h1e1l1l1o2e2r2r');
    await expect(new SectionReader(() => undefined).push(sectionHeader(9, 1))).rejects.toMatchObject({ code: 'EPROTO' });
    const cut = new SectionReader(() => undefined);
    await cut.push(sectionHeader(1, 10).subarray(0, 3));
    expect(code(() => cut.finish())).toBe('EPROTO');
  });
});
