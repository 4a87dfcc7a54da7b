// `send | recv` as two real CLI processes joined by an OS pipe, the way a user types it: here
// send writes file descriptor 1 and recv reads file descriptor 0 themselves (process-stdio.ts),
// so these are the tests of those paths. Full and incremental streams arrive byte-identical;
// recv reads a stream file and a Node pipe (a socket pair) as well; a reader that goes away
// makes send fail with ECANCELED, and a text command too (no crash); a cut stream fails recv
// and leaves the target as it was.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempRoot } from '../../src/node/cli-test-support.js';
import { checkBuild, cli } from './node-support.js';

const { root } = tempRoot('mp-stdio-');
const CLI = `'${process.execPath}' bin/mirrorpool.js`;
const KEY_BYTES = 3 * 1024 * 1024 + 12_345;

let home = '';
const first = randomBytes(KEY_BYTES);
const second = Buffer.concat([first.subarray(0, 1_000_000), randomBytes(200_000), first.subarray(1_200_000)]);

/** A shell pipeline with pipefail: the exit code of the first side that failed. */
function shell(line: string): { code: number | null; err: string } {
  const r = spawnSync('bash', ['-o', 'pipefail', '-c', line], { encoding: 'utf8', env: { ...process.env, MIRRORPOOL_NODE: '', MIRRORPOOL_TOKEN: '' } });
  return { code: r.status, err: r.stderr };
}

async function ok(args: string[], stdin?: Uint8Array[]): Promise<string> {
  const r = await cli(['--home', home, ...args], stdin);
  expect(r.code, r.err).toBe(0);
  return r.out;
}

async function content(dataset: string): Promise<Buffer> {
  const r = await cli(['--home', home, 'get', dataset, 'k']);
  expect(r.code, r.err).toBe(0);
  return r.bytes;
}

describe('send | recv between two processes', () => {
  beforeAll(async () => {
    checkBuild();
    home = join(root(), 'home');
    await mkdir(join(home, 'vdevs'), { recursive: true });
    for (const pool of ['src', 'dst', 'file', 'sock', 'cut', 'sig']) await ok(['pool', 'create', '--size', '256M', pool, join(home, 'vdevs', `${pool}.img`)]);
    await ok(['dataset', 'create', 'src/d']);
    await ok(['put', 'src/d', 'k', '-'], [first]);
    await ok(['snapshot', 'src/d@s1']);
    await ok(['put', 'src/d', 'k', '-'], [second]);
    await ok(['snapshot', 'src/d@s2']);
  });

  it('carries a full and an incremental stream through an OS pipe', async () => {
    const full = shell(`${CLI} --home '${home}' send src/d@s1 | ${CLI} --home '${home}' recv dst/d`);
    expect(full.code, full.err).toBe(0);
    expect((await content('dst/d@s1')).equals(first)).toBe(true);
    const incremental = shell(`${CLI} --home '${home}' send -i @s1 src/d@s2 | ${CLI} --home '${home}' recv dst/d`);
    expect(incremental.code, incremental.err).toBe(0);
    expect((await content('dst/d')).equals(second)).toBe(true);
  });

  it('receives from a stream file, and from a Node pipe', async () => {
    const file = join(root(), 'full.stream');
    expect(shell(`${CLI} --home '${home}' send src/d@s1 > '${file}'`).code).toBe(0);
    const fromFile = shell(`${CLI} --home '${home}' recv file/d < '${file}'`);
    expect(fromFile.code, fromFile.err).toBe(0);
    expect((await content('file/d')).equals(first)).toBe(true);

    const child = spawn(process.execPath, ['bin/mirrorpool.js', '--home', home, 'recv', 'sock/d'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
    child.stdin.end(await readFile(file));
    expect(await exited, err).toBe(0);
    expect((await content('sock/d')).equals(first)).toBe(true);
  });

  it('fails send with ECANCELED when the reader goes away', () => {
    const r = shell(`${CLI} --home '${home}' send src/d@s1 | head -c 1000 > /dev/null`);
    expect(r.code).not.toBe(0);
    expect(r.err).toContain('ECANCELED');
  });

  it('ends a text command whose reader went away with ECANCELED, not a crash', async () => {
    // The read end closes at once; the CLI writes its text a few hundred milliseconds later.
    for (const args of [['--version'], ['--help'], ['--home', home, 'dataset', 'list']]) {
      const child = spawn(process.execPath, ['bin/mirrorpool.js', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.destroy();
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const code = await new Promise<number | null>((done) => child.once('close', (c) => done(c)));
      expect({ args, code, err }).toEqual({ args, code: 1, err: 'mirrorpool: ECANCELED: stdout: the reader went away\n' });
    }
  });

  it('stops recv at SIGINT: with -s it keeps a token that resumes, without it leaves nothing', async () => {
    // recv takes its input in 4 MiB chunks (limits.streamReadChunkBytes) and notices the signal
    // when the next one is complete: the stream is 12 MiB, and the signal comes after 9 MiB.
    const big = randomBytes(12 * 1024 * 1024);
    await ok(['dataset', 'create', 'src/big']);
    await ok(['put', 'src/big', 'k', '-'], [big]);
    await ok(['snapshot', 'src/big@s']);
    const file = join(root(), 'sig.stream');
    expect(shell(`${CLI} --home '${home}' send src/big@s > '${file}'`).code).toBe(0);
    const bytes = await readFile(file);
    const FIRST = 9 * 1024 * 1024;
    /** recv fed the first 9 MiB (far more than a pipe holds: recv has read them), SIGINT, then a little more and the end. */
    const interrupted = async (args: string[]): Promise<{ code: number | null; err: string }> => {
      const child = spawn(process.execPath, ['bin/mirrorpool.js', '--home', home, 'recv', ...args], { stdio: ['pipe', 'ignore', 'pipe'] });
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const exited = new Promise<number | null>((done) => child.once('close', (code) => done(code)));
      await new Promise<void>((done, fail) => child.stdin.write(bytes.subarray(0, FIRST), (e) => (e ? fail(e) : done())));
      child.kill('SIGINT');
      child.stdin.end(bytes.subarray(FIRST, FIRST + 64 * 1024));
      return { code: await exited, err };
    };
    const kept = await interrupted(['-s', 'sig/d']);
    expect(kept.code, kept.err).toBe(1);
    const token = /^mirrorpool: ECANCELED: interrupted by SIGINT; the receive can resume with token (\S+)\n$/.exec(kept.err)?.[1];
    expect(token, kept.err).toBeDefined();
    const resumed = shell(`${CLI} --home '${home}' send -t '${token}' | ${CLI} --home '${home}' recv -s sig/d`);
    expect(resumed.code, resumed.err).toBe(0);
    expect((await content('sig/d@s')).equals(big)).toBe(true);

    const dropped = await interrupted(['sig/e']);
    expect(dropped).toEqual({ code: 1, err: 'mirrorpool: ECANCELED: interrupted by SIGINT\n' });
    const again = shell(`${CLI} --home '${home}' recv sig/e < '${file}'`);
    expect(again.code, again.err).toBe(0);
    expect((await content('sig/e@s')).equals(big)).toBe(true);
  });

  it('refuses to write a stream to a terminal or read one from it', () => {
    // script(1) runs the command on a pseudo-terminal: its stdin and stdout are that terminal.
    const onTerminal = (args: string): { status: number | null; text: string } => {
      const r = spawnSync('script', ['-qec', `${CLI} --home '${home}' ${args}`, '/dev/null'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      return { status: r.status, text: r.stdout.replace(/\r/g, '') };
    };
    expect(onTerminal('send src/d@s1')).toEqual({ status: 2, text: 'mirrorpool: EINVAL: send writes a binary stream and stdout is a terminal: redirect it to a file or a pipe\n' });
    expect(onTerminal('recv tty/d')).toEqual({ status: 2, text: 'mirrorpool: EINVAL: recv reads a binary stream and stdin is a terminal: redirect it from a file or a pipe\n' });
    // --estimate prints text, which a terminal takes.
    const estimate = onTerminal('send --estimate src/d@s1');
    expect(estimate.status, estimate.text).toBe(0);
    expect(estimate.text).toMatch(/^estimated size of full stream of src\/d@s1: \d+ bytes/);
  });

  it('refuses a cut stream and leaves the target as it was', async () => {
    const file = join(root(), 'cut.stream');
    const whole = shell(`${CLI} --home '${home}' send src/d@s1 > '${file}'`);
    expect(whole.code, whole.err).toBe(0);
    const bytes = await readFile(file);
    await writeFile(file, bytes.subarray(0, Math.floor(bytes.length / 2)));
    const r = shell(`cat '${file}' | ${CLI} --home '${home}' recv cut/d`);
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/E[A-Z]+/);
    const list = await cli(['--home', home, 'dataset', 'list', 'cut']);
    expect(list.out).not.toContain('cut/d');
  });
});
