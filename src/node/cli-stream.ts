// `mirrorpool send` and `mirrorpool recv` (contract: shared/CLI.md; what exists: docs/cli.md).
// send writes a stream to stdout (waiting for the reader: a slow pipe slows the send, nothing
// piles up in memory); recv reads one from stdin. Each opens its pool for the duration, so the
// two ends of one pipe must be different pools (one process holds a pool at a time).
// Registered on the program by buildProgram in cli.ts.

import type { Command } from 'commander';
import { type Pool, parseName } from '../engine/index.js';
import { mpError } from '../lib/index.js';
import { type SendPlan, decodeResumeToken, estimateSend, packageSnapshots, receiveStream, sendPlan, sendStream } from '../sync/index.js';
import { type CliIo, home, poolOf, usage, withDsl } from './cli-common.js';
import { withInput, withStdout } from './cli-data.js';
import { withPool } from './pool-open.js';
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

function addSend(program: Command, io: CliIo): void {
  program
    .command('send')
    .description('write a stream of a snapshot (or of what changed since -i) to stdout')
    .option('-i <from>', 'incremental from this snapshot or bookmark (@snap, #mark or a full name)')
    .option('-I <from>', 'incremental from this snapshot, with every snapshot in between (a package of streams)')
    .option('-t <token>', 'resume the stream a stopped `recv -s` left a token for')
    .option('--estimate', 'print the size the stream would have, send nothing', false)
    .option('-v, --verbose', 'progress on stderr', false)
    .argument('[snapshot]', 'pool/ds@snap to send')
    .action(async (snapshot: string | undefined, _o: unknown, cmd: Command) => {
      const o = cmd.opts<{ i?: string; I?: string; t?: string; estimate: boolean; verbose: boolean }>();
      if (o.i !== undefined && o.I !== undefined) throw usage('send takes -i or -I, not both');
      if (o.t !== undefined && (snapshot !== undefined || o.i !== undefined || o.I !== undefined)) throw usage('send -t takes the token alone');
      if (o.t === undefined && snapshot === undefined) throw usage('send needs a snapshot (or -t <token>)');
      const to = o.t !== undefined ? decodeResumeToken(o.t).toName : (snapshot ?? '');
      parseName(to, ['snapshot']);
      const from = fromName(to, o.i ?? o.I);
      await withPool(home(cmd), poolOf(to), async (pool: Pool) => {
        // -I: one stream per snapshot after `from` up to `to`.
        const steps = o.I !== undefined && from !== undefined ? await packageSnapshots(pool, from, to) : [to];
        const plans: SendPlan[] = [];
        let prev = from;
        for (const step of steps) {
          plans.push(await sendPlan(pool, step, { ...(prev === undefined ? {} : { from: prev }), ...(o.t === undefined ? {} : { token: o.t }) }));
          prev = step;
        }
        if (o.estimate) {
          let bytes = 0;
          for (const plan of plans) bytes += await estimateSend(pool, plan);
          const kind = from === undefined ? 'full' : o.I !== undefined ? `incremental (${plans.length} streams)` : 'incremental';
          io.out.write(`estimated size of ${kind} stream of ${to}: ${bytes} bytes (${formatSize(bytes)})\n`);
          return;
        }
        const report = progress(io, o.verbose, `send ${to}:`);
        let sent = 0;
        const frames = async function* (): AsyncGenerator<Uint8Array> {
          for (const [i, plan] of plans.entries()) yield* sendStream(pool, plan, { more: i < plans.length - 1 });
        };
        await withStdout(async (write) => {
          for await (const frame of frames()) {
            await write(frame);
            sent += frame.length;
            report(sent);
          }
        });
        report(sent, true);
      });
    });
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
      const report = progress(io, o.verbose, `recv ${dataset}:`);
      await withInput(undefined, (chunks) =>
        withPool(home(cmd), poolOf(dataset), async (pool) => {
          const result = await receiveStream(pool, dataset, chunks, {
            force: o.force,
            resumable: o.s,
            progress: (p) => report(p.dataBytes),
          });
          report(result.dataBytes, true);
          if (o.verbose) io.err.write(`received ${result.snapshot} (${result.records} records)\n`);
        }),
      );
    });
}

/** Adds `send` and `recv` to the program. */
export function addStreamCommands(program: Command, io: CliIo): void {
  addSend(program, io);
  addRecv(program, io);
}
