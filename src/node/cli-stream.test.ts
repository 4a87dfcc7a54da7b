// `send` and `recv` end to end, in-process through main(): two pools on real vdev files, the
// stream carried between the two commands as bytes (as a pipe would), estimates, resume tokens.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Prng } from '../lib/index.js';
import { type BytesRun, runMain, tempRoot } from './cli-test-support.js';

const temp = tempRoot('mirrorpool-cli-stream-');

async function workspace(): Promise<{ dir: string; run: (stdin: readonly Uint8Array[], ...args: string[]) => Promise<BytesRun>; ok: (stdin: readonly Uint8Array[], ...args: string[]) => Promise<BytesRun> }> {
  const base = temp.caseDir();
  const dir = join(base, 'files');
  await mkdir(dir, { recursive: true });
  const home = join(base, 'home');
  const run = (stdin: readonly Uint8Array[], ...args: string[]): Promise<BytesRun> => runMain(['--home', home, ...args], stdin);
  const ok = async (stdin: readonly Uint8Array[], ...args: string[]): Promise<BytesRun> => {
    const r = await run(stdin, ...args);
    expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(0);
    return r;
  };
  await ok([], 'pool', 'create', '--size', '64M', 'src', join(base, 'src.img'));
  await ok([], 'pool', 'create', '--size', '64M', 'dst', join(base, 'dst.img'));
  await ok([], 'dataset', 'create', 'src/d');
  return { dir, run, ok };
}

function expectError(r: BytesRun, status: number, code: string): void {
  expect(r.code, r.err).toBe(status);
  expect(r.err).toMatch(new RegExp(`^mirrorpool: ${code}: `, 'm'));
}

describe('mirrorpool send and recv', () => {
  it('sends full and incremental streams (from a snapshot and a bookmark) and receives them', async () => {
    const w = await workspace();
    const file = (name: string, seed: number, size: number): Promise<string> => {
      const data = new Uint8Array(size);
      new Prng(seed).fill(data);
      const path = join(w.dir, name);
      return writeFile(path, data).then(() => path);
    };
    await w.ok([], 'put', 'src/d', 'a', await file('a', 1, 400_000));
    await w.ok([], 'snapshot', 'src/d@1');
    const estimate = await w.ok([], 'send', '--estimate', 'src/d@1');
    const full = await w.ok([], 'send', 'src/d@1');
    const estimated = Number(/: (\d+) bytes/.exec(estimate.out)?.[1]);
    expect(Math.abs(estimated - full.bytes.length) / full.bytes.length).toBeLessThanOrEqual(0.1);
    const recv = await w.ok([full.bytes], 'recv', '-v', 'dst/d');
    expect(recv.err).toMatch(/received dst\/d@1/);
    await w.ok([], 'put', 'src/d', 'b', await file('b', 2, 100_000));
    await w.ok([], 'snapshot', 'src/d@2');
    await w.ok([], 'bookmark', 'src/d@2', 'src/d#b2');
    await w.ok([], 'put', 'src/d', 'a', await file('a2', 3, 5000));
    await w.ok([], 'snapshot', 'src/d@3');
    const inc = await w.ok([], 'send', '-i', '@1', 'src/d@2');
    expect(inc.bytes.length).toBeLessThan(full.bytes.length);
    await w.ok([inc.bytes], 'recv', 'dst/d');
    await w.ok([(await w.ok([], 'send', '-i', '#b2', 'src/d@3')).bytes], 'recv', 'dst/d');
    for (const key of ['a', 'b']) {
      await w.ok([], 'get', 'dst/d', key, '-o', join(w.dir, `got-${key}`));
      await w.ok([], 'get', 'src/d@3', key, '-o', join(w.dir, `want-${key}`));
      expect((await readFile(join(w.dir, `got-${key}`))).equals(await readFile(join(w.dir, `want-${key}`)))).toBe(true);
    }
    const guids = async (pool: string): Promise<string[]> =>
      (JSON.parse((await w.ok([], 'dataset', 'list', '-t', 'snapshot', '--json', pool)).out) as { name: string; guid: string }[]).map((e) => `${e.name.split('@')[1]}:${e.guid}`);
    expect(await guids('dst')).toEqual(await guids('src'));
    // The same increment again: the target already has it.
    expectError(await w.run([inc.bytes], 'recv', 'dst/d'), 1, 'EEXIST');
    // -I: every snapshot in between, as a package, onto a fresh copy.
    await w.ok([full.bytes], 'recv', 'dst/e');
    expect((await w.ok([], 'send', '--estimate', '-I', '@1', 'src/d@3')).out).toMatch(/incremental \(2 streams\)/);
    await w.ok([(await w.ok([], 'send', '-I', '@1', 'src/d@3')).bytes], 'recv', 'dst/e');
    expect((await w.ok([], 'dataset', 'list', '-t', 'snapshot', 'dst/e')).out).toMatch(/dst\/e@2[\s\S]*dst\/e@3/);
    expectError(await w.run([], 'send', '-i', '@1', '-I', '@1', 'src/d@3'), 2, 'EINVAL');
    expectError(await w.run([], 'send'), 2, 'EINVAL');
  });

  it('keeps a cut-off receive with -s, resumes it with send -t, and aborts with -A', async () => {
    const w = await workspace();
    const data = new Uint8Array(600_000);
    new Prng(5).fill(data);
    await writeFile(join(w.dir, 'big'), data);
    await w.ok([], 'put', 'src/d', 'big', join(w.dir, 'big'));
    await w.ok([], 'snapshot', 'src/d@1');
    const stream = (await w.ok([], 'send', 'src/d@1')).bytes;
    const cut = await w.run([stream.subarray(0, Math.floor(stream.length / 2))], 'recv', '-s', 'dst/d');
    expectError(cut, 1, 'EPROTO');
    const token = /token (\S+)/.exec(cut.err)?.[1] ?? '';
    expectError(await w.run([stream], 'recv', 'dst/d'), 1, 'EBUSY');
    const rest = await w.ok([], 'send', '-t', token);
    expect(rest.bytes.length).toBeLessThan(stream.length);
    await w.ok([rest.bytes], 'recv', '-s', 'dst/d');
    await w.ok([], 'get', 'dst/d', 'big', '-o', join(w.dir, 'back'));
    expect((await readFile(join(w.dir, 'back'))).equals(Buffer.from(data))).toBe(true);
    // A second cut-off receive, aborted this time.
    await w.ok([], 'put', 'src/d', 'more', join(w.dir, 'big'));
    await w.ok([], 'snapshot', 'src/d@2');
    const inc = (await w.ok([], 'send', '-i', '@1', 'src/d@2')).bytes;
    const cut2 = await w.run([inc.subarray(0, inc.length - 100)], 'recv', '-s', 'dst/d');
    expectError(cut2, 1, 'EPROTO');
    const token2 = /token (\S+)/.exec(cut2.err)?.[1] ?? 'none';
    expect((await w.ok([], 'dataset', 'get', 'receive_resume_token', 'dst/d')).out).toContain(token2);
    await w.ok([], 'recv', '-A', 'dst/d');
    expect((await w.ok([], 'dataset', 'get', 'receive_resume_token', 'dst/d')).out).not.toContain(token2);
    expectError(await w.run([], 'recv', '-A', 'dst/d'), 1, 'ENOENT');
    await w.ok([inc], 'recv', 'dst/d');
    expectError(await w.run([], 'send', '-t', `${token.slice(0, -4)}AAAA`), 1, 'EINVAL');
  });
});
