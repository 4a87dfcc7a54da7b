// `mirrorpool send` and `mirrorpool recv` (contract: shared/CLI.md; what exists: docs/cli.md).
// send writes a stream to io.stdout (waiting for the reader: a slow pipe slows the send, nothing
// piles up in memory); recv reads one from io.stdin (both the process's streams unless the caller
// of main() gives its own). Each opens its pool for the duration, so the two ends of one pipe
// must be different pools (one process holds a pool at a time); in a daemon both run on the
// resident pools (see withPool), so there one pool may feed itself.
// `send --to` pushes to another node instead (replicate.ts). Receives into one dataset take
// turns within a process (oneReceivePerDataset).
// On the process's own stdin, recv reads into a small set of reused buffers (StdinChunks,
// process-stdio.ts) that receiveStream hands back once the records decoded from them are
// applied, so the bytes of a stream never pass through new buffers on their way to the dataset's
// dirty blocks; on its own stdout, send writes each frame's parts with one gathering write.
// Registered on the program by buildProgram in cli.ts.

import { resolve } from 'node:path';
import { isatty } from 'node:tty';
import type { Command } from 'commander';
import { type Pool, parseName } from '../engine/index.js';
import { Gate, mpError } from '../lib/index.js';
import { receiveStream } from '../sync/index.js';
import { type CliIo, arg, home, poolOf, usage, withDsl } from './cli-common.js';
import { withInput, withStdout } from './cli-data.js';
import { StdinChunks, StdoutParts, ownStdin, ownStdout } from './process-stdio.js';
import { type ReplicationEvent, localNode } from './node-config.js';
import { withPool } from './pool-open.js';
import { RETRIES_DEFAULT, parseTarget } from './replicate-target.js';
import type { ClientCredentials } from './rpc/index.js';
import { type SendRequest, sendSource, sendTarget } from './send-source.js';
import { formatSize } from './units.js';

/** Progress lines (-v) at most this often. */
const PROGRESS_EVERY_MS = 1000;

/** `-i @snap` / `-i #mark` are relative to the dataset of `to`; a full name is taken as is. */
function fromName(to: string, from: string | undefined): string | undefined {
  if (from === undefined) return undefined;
  if (from.startsWith('@') || from.startsWith('#')) return `${to.slice(0, to.indexOf('@'))}${from}`;
  return from;
}

function progress(io: CliIo, verbose: boolean, what: string): (bytes: number, done?: boolean) => void {
  let last = performance.now();
  const start = last;
  return (bytes, done = false) => {
    if (!verbose) return;
    const now = performance.now();
    if (!done && now - last < PROGRESS_EVERY_MS) return;
    last = now;
    const secs = Math.max(0.001, (now - start) / 1000);
    io.err.write(`${what} ${formatSize(bytes)} in ${secs.toFixed(1)}s (${formatSize(bytes / secs)}/s)${done ? ', done' : ''}\n`);
  };
}

interface SendOpts {
  i?: string;
  I?: string;
  t?: string;
  estimate: boolean;
  verbose: boolean;
  to?: string;
  toToken?: string;
  toCa?: string;
  retries: number;
}

/** The credential `send --to` uses: this node's identity inside a daemon, else a token. */
function pushCredentials(o: SendOpts): ClientCredentials {
  const token = o.toToken ?? process.env['MIRRORPOOL_TO_TOKEN'];
  if (token !== undefined && token !== '') return { kind: 'token', token };
  const local = localNode();
  if (local !== undefined) return { kind: 'node', keys: local.node.keys, clusterSecret: local.node.clusterSecret };
  throw mpError('EAUTH', 'send --to needs --to-token (or MIRRORPOOL_TO_TOKEN) with scope rw on the target, or to run on a node (--node)', { reason: 'token-malformed' });
}

async function push(pool: Pool, request: SendRequest, o: SendOpts, io: CliIo): Promise<void> {
  const target = parseTarget(o.to ?? '');
  const local = localNode();
  const caFile = o.toCa ?? local?.node.config.tls?.ca;
  const report = progress(io, o.verbose, `send ${request.to ?? ''} to ${target.url}:`);
  const { replicate } = await import('./replicate.js');
  const result = await replicate({
    pool,
    request,
    target,
    credentials: pushCredentials(o),
    ...(caFile === undefined ? {} : { caFile }),
    retries: o.retries,
    ...(local === undefined ? {} : { events: (e: ReplicationEvent) => local.replication(e), peers: local.peers }),
    onBytes: (n) => report(n),
    onResume: () => {
      if (o.verbose) io.err.write(`resuming the stopped receive into ${target.dataset} from its token\n`);
    },
    onRetry: (n, e) => {
      if (o.verbose) io.err.write(`connection lost (${e.code}: ${e.message}); retry ${n} of ${o.retries}\n`);
    },
  });
  report(result.bytes, true);
  if (o.verbose) io.err.write(`${target.url} received ${result.snapshot}: ${result.bytes} stream bytes sent in ${result.attempts} attempt${result.attempts === 1 ? '' : 's'}\n`);
}

function retriesArg(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 100) throw mpError('EINVAL', `--retries must be 0 to 100`, { value: text });
  return n;
}

function addSend(program: Command, io: CliIo): void {
  program
    .command('send')
    .description('write a stream of a snapshot (or of what changed since -i) to stdout, or push it to a node (--to)')
    .option('-i <from>', 'incremental from this snapshot or bookmark (@snap, #mark or a full name)')
    .option('-I <from>', 'incremental from this snapshot, with every snapshot in between (a package of streams)')
    .option('-t <token>', 'resume the stream a stopped `recv -s` left a token for')
    .option('--estimate', 'print the size the stream would have, send nothing', false)
    .option('-v, --verbose', 'progress on stderr', false)
    .option('--to <node-url:pool/ds>', 'push to this dataset on another node, resuming across broken connections', arg((t) => (parseTarget(t), t)))
    .option('--to-token <token>', 'token (scope rw) for the --to node (default MIRRORPOOL_TO_TOKEN, or this node\'s key on a node)')
    .option('--to-ca <file>', 'CA certificate (PEM) of a wss:// --to node')
    .option('--retries <n>', 'reconnections --to tries before it gives up', arg(retriesArg), RETRIES_DEFAULT)
    .argument('[snapshot]', 'pool/ds@snap to send')
    .action(async (snapshot: string | undefined, _o: unknown, cmd: Command) => {
      const o = cmd.opts<SendOpts>();
      if (o.i !== undefined && o.I !== undefined) throw usage('send takes -i or -I, not both');
      if (o.t !== undefined && (snapshot !== undefined || o.i !== undefined || o.I !== undefined)) throw usage('send -t takes the token alone');
      if (o.t === undefined && snapshot === undefined) throw usage('send needs a snapshot (or -t <token>)');
      if (o.to !== undefined && (o.estimate || o.t !== undefined)) throw usage('send --to goes with neither --estimate nor -t (it resumes by itself)');
      if (o.to === undefined && !o.estimate && io.stdout === undefined && ownStdout() && isatty(1)) {
        throw usage('send writes a binary stream and stdout is a terminal: redirect it to a file or a pipe');
      }
      const to = sendTarget(o.t === undefined ? { to: snapshot ?? '' } : { token: o.t });
      const from = fromName(to, o.i ?? o.I);
      const request: SendRequest = { to, ...(from === undefined ? {} : { from }), intermediates: o.I !== undefined, ...(o.t === undefined ? {} : { token: o.t }) };
      await withPool(home(cmd), poolOf(to), async (pool: Pool) => {
        if (o.to !== undefined) return push(pool, request, o, io);
        const source = await sendSource(pool, request);
        if (o.estimate) {
          const bytes = await source.estimate();
          const kind = from === undefined ? 'full' : o.I !== undefined ? `incremental (${source.plans.length} streams)` : 'incremental';
          io.out.write(`estimated size of ${kind} stream of ${to}: ${bytes} bytes (${formatSize(bytes)})\n`);
          return;
        }
        const report = progress(io, o.verbose, `send ${to}:`);
        let sent = 0;
        if (io.stdout === undefined && ownStdout()) {
          const out = new StdoutParts(1);
          for await (const parts of source.frameParts()) {
            sent += await out.write(parts);
            report(sent);
          }
          await out.finish();
        } else {
          await withStdout(io, async (write) => {
            for await (const frame of source.frames()) {
              await write(frame);
              sent += frame.length;
              report(sent);
            }
          });
        }
        report(sent, true);
      });
    });
}

/** Receives into one dataset in this process, by home and dataset name; an entry goes when its last receive ends. */
const datasetReceives = new Map<string, { readonly gate: Gate; holders: number }>();

/**
 * Runs `fn`, a receive into `dataset`, after the other receives into that dataset in this
 * process (a daemon runs commands side by side). A second receive would replace the first's
 * temporary dataset; and a request for the resume token (`stream.resumeToken`) waits here for a
 * receive that is still stopping, so it is answered with the token that receive leaves.
 */
export async function oneReceivePerDataset<T>(homeDir: string, dataset: string, fn: () => Promise<T>): Promise<T> {
  const key = `${resolve(homeDir)}\n${dataset}`;
  let entry = datasetReceives.get(key);
  if (entry === undefined) {
    entry = { gate: new Gate(), holders: 0 };
    datasetReceives.set(key, entry);
  }
  entry.holders++;
  try {
    return await entry.gate.withExclusive(fn);
  } finally {
    entry.holders--;
    if (entry.holders === 0) datasetReceives.delete(key);
  }
}

function addRecv(program: Command, io: CliIo): void {
  program
    .command('recv')
    .alias('receive')
    .description('apply a stream from stdin to a dataset (created by a full stream, advanced by an incremental one)')
    .option('-F, --force', 'roll the dataset back to the stream\'s from snapshot first (later snapshots go)', false)
    .option('-s', 'keep what arrived if the stream stops early, and print a resume token', false)
    .option('-A', 'abort a stopped resumable receive into the dataset (its partial state goes)', false)
    .option('-v, --verbose', 'progress on stderr', false)
    .argument('<dataset>', 'pool/ds to receive into')
    .action(async (dataset: string, _o: unknown, cmd: Command) => {
      const o = cmd.opts<{ force: boolean; s: boolean; A: boolean; verbose: boolean }>();
      parseName(dataset, ['dataset']);
      if (o.A) {
        await withDsl(home(cmd), dataset, async (dsl) => {
          if (dsl.receiveResumeToken(dataset) === undefined) throw mpError('ENOENT', `no stopped receive into ${dataset}`, { name: dataset });
          await dsl.receiveAbort(dataset);
        });
        return;
      }
      if (io.stdin === undefined && ownStdin() && isatty(0)) throw usage('recv reads a binary stream and stdin is a terminal: redirect it from a file or a pipe');
      const report = progress(io, o.verbose, `recv ${dataset}:`);
      const receive = (chunks: AsyncIterable<Uint8Array>, recycle?: (chunk: Uint8Array) => void): Promise<void> =>
        withPool(home(cmd), poolOf(dataset), async (pool) => {
          const options = { force: o.force, resumable: o.s, progress: (p: { dataBytes: number }) => report(p.dataBytes), ...(recycle === undefined ? {} : { recycle }) };
          const result = await oneReceivePerDataset(home(cmd), dataset, () => receiveStream(pool, dataset, chunks, options));
          report(result.dataBytes, true);
          if (o.verbose) io.err.write(`received ${result.snapshot} (${result.records} records)\n`);
        });
      if (io.stdin !== undefined || !ownStdin()) return withInput(undefined, io, (chunks) => receive(chunks));
      const stdin = new StdinChunks(0);
      await untilSignal((signalled) => receive(stoppedBy(stdin, signalled), (chunk) => stdin.recycle(chunk)));
    });
}

const STOP_SIGNALS = ['SIGINT', 'SIGTERM'] as const;

/**
 * Runs `fn` (a receive from the process's own stdin) with the first SIGINT or SIGTERM caught
 * instead of ending the process: `signalled()` then names it, and stoppedBy ends the input with
 * it, so the receive stops as for a cut stream (`-s` keeps what arrived and a token, otherwise the
 * temporary dataset goes) instead of dying with its work on disk. A second signal ends the process
 * as usual: a read waiting on a writer that sends nothing sees the first only once bytes come.
 */
async function untilSignal<T>(fn: (signalled: () => string | undefined) => Promise<T>): Promise<T> {
  let caught: string | undefined;
  const stop = (): void => {
    for (const s of STOP_SIGNALS) process.off(s, onSignal);
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    caught = signal;
    stop();
  };
  for (const s of STOP_SIGNALS) process.on(s, onSignal);
  try {
    return await fn(() => caught);
  } finally {
    stop();
  }
}

/** The chunks of `source` until `signalled()` names a signal: then ECANCELED. */
async function* stoppedBy(source: AsyncIterable<Uint8Array>, signalled: () => string | undefined): AsyncGenerator<Uint8Array> {
  for await (const chunk of source) {
    const signal = signalled();
    if (signal !== undefined) throw mpError('ECANCELED', `interrupted by ${signal}`, { signal });
    yield chunk;
  }
}

/** Adds `send` and `recv` to the program. */
export function addStreamCommands(program: Command, io: CliIo): void {
  addSend(program, io);
  addRecv(program, io);
}
