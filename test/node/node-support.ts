// Shared by the node integration tests: node homes in a temp folder, daemons as separate
// processes (`node start` of the built CLI, bin/mirrorpool.js: `npm test` builds first), a CLI
// run in this process against them, and raw HTTP requests. Every daemon a test starts is
// killed after the file if the test did not stop it.
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { afterAll } from 'vitest';
import { main } from '../../src/node/cli.js';
import { type Run } from '../../src/node/cli-test-support.js';

const ENTRY = ['bin/mirrorpool.js'];

/** The daemons run the compiled code: refuse to test a build older than the sources. */
export function checkBuild(): void {
  const built = statSync('dist/src/node/cli.js', { throwIfNoEntry: false })?.mtimeMs ?? 0;
  const newest = readdirSync('src', { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
    .reduce((m, f) => Math.max(m, statSync(`src/${f}`).mtimeMs), 0);
  if (built < newest) throw new Error('dist/ is older than src/: run `npm run build` (npm test does it first)');
}
const START_TIMEOUT_MS = 60_000;

export interface DaemonProcess {
  readonly child: ChildProcess;
  readonly url: string;
  readonly home: string;
  readonly log: string[];
  readonly exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

const running = new Set<DaemonProcess>();
afterAll(async () => {
  await Promise.all([...running].map((d) => d.stop('SIGKILL')));
});

/** Starts `mirrorpool node start --home home` and resolves once it listens. */
export function startDaemon(home: string, extra: readonly string[] = []): Promise<DaemonProcess> {
  checkBuild();
  const child = spawn(process.execPath, [...ENTRY, '--home', home, 'node', 'start', ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, MIRRORPOOL_NODE: '', MIRRORPOOL_TOKEN: '' },
  });
  const log: string[] = [];
  createInterface({ input: child.stderr }).on('line', (l) => log.push(l));
  const exited = new Promise<number | null>((done) => child.once('exit', (code, signal) => done(code ?? (signal === null ? null : -1))));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`daemon in ${home} did not start:\n${log.join('\n')}`)), START_TIMEOUT_MS);
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = / listening on (\S+)$/.exec(line);
      if (m === null) return;
      clearTimeout(timer);
      const d: DaemonProcess = {
        child,
        url: m[1]!,
        home,
        log,
        exited,
        stop: async (signal = 'SIGTERM') => {
          running.delete(d);
          if (child.exitCode === null && child.signalCode === null) child.kill(signal);
          return exited;
        },
      };
      running.add(d);
      resolve(d);
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`daemon in ${home} exited with ${code}:\n${log.join('\n')}`));
    });
  });
}

/** Runs main() in this process with `args` (connection options included), capturing its output. */
export async function cli(args: readonly string[], stdin?: readonly Uint8Array[]): Promise<Run & { bytes: Buffer }> {
  let out = '';
  let err = '';
  const bytes: Buffer[] = [];
  const code = await main(args, {
    out: { write: (s) => void (out += s) },
    err: { write: (s) => void (err += s) },
    stdin: (async function* () {
      for (const c of stdin ?? []) yield c;
    })(),
    stdout: {
      write: async (chunk) => {
        bytes.push(Buffer.from(chunk));
      },
    },
  });
  const all = Buffer.concat(bytes);
  return { code, out: out + all.toString('utf8'), err, bytes: all };
}

/** A GET with an optional bearer token; resolves with the status and body text. */
export async function httpGet(url: string, path: string, token?: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`${url.replace(/^ws/, 'http')}${path}`, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: await res.text() };
}
