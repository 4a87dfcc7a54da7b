// The `mirrorpool` command line (shared/CLI.md is the contract, docs/cli.md what exists).
// main() never throws: a MirrorpoolError prints `mirrorpool: <CODE>: <message>` and exits 1,
// bad usage exits 2, anything else is a bug and is rethrown with its stack. With a node named
// (--node or MIRRORPOOL_NODE) a command runs on that node instead (remote.ts); runCommand is
// the local run, which the daemon also uses for the command lines clients send it.

import { Command, CommanderError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { MirrorpoolError, mpError } from '../lib/index.js';
import { type CliIo } from './cli-common.js';
import { addDataCommands, fsError } from './cli-data.js';
import { addDatasetCommands } from './cli-dataset.js';
import { addStreamCommands } from './cli-stream.js';
import { addNodeCommands } from './cli-node.js';
import { addPoolCommands } from './cli-pool.js';
import { addUpCommand } from './cli-up.js';
import { runRemote, runsRemotely, splitConnectionOptions } from './remote.js';

const USAGE_EXIT = 2;
const FAILED_EXIT = 1;

/** The package version, from the nearest package.json above this module (src/ or dist/src/). */
export function packageVersion(): string {
  for (let dir = new URL('.', import.meta.url); dir.pathname !== '/'; dir = new URL('..', dir)) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('package.json', dir), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'mirrorpool' && pkg.version !== undefined) return pkg.version;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
  throw new Error('package.json of mirrorpool not found above the CLI module');
}

/** How this process was started, so `up` can start node processes the same way. */
export interface Launch {
  readonly entry: readonly string[];
}

export function buildProgram(io: CliIo, launch: Launch = { entry: [] }): Command {
  const { out, err } = io;
  const program = new Command('mirrorpool')
    .description('Clustered storage with quorum mirroring: pools, datasets, snapshots, send streams.')
    .version(packageVersion(), '-V, --version')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => out.write(s),
      writeErr: (s) => err.write(s),
      outputError: () => undefined,
    })
    .showSuggestionAfterError(true)
    .addOption(
      new Option('--home <dir>', 'folder of the pool cache (which pools are imported, from which vdevs)')
        .env('MIRRORPOOL_HOME')
        .default('./.mirrorpool'),
    )
    .addOption(new Option('--node <url>', 'run the command on this node (ws:// or wss://)').env('MIRRORPOOL_NODE'))
    .addOption(new Option('--token <token>', 'client token for --node').env('MIRRORPOOL_TOKEN'))
    .addOption(new Option('--ca <file>', 'CA certificate (PEM) for a wss:// node').env('MIRRORPOOL_CA'));

  addPoolCommands(program, io);
  addDatasetCommands(program, io);
  addDataCommands(program, io);
  addStreamCommands(program, io);
  addNodeCommands(program, io);
  addUpCommand(program, io, launch.entry, async (argv) => {
    const status = await runCommand(argv, io);
    if (status !== 0) throw mpError('EIO', `\`mirrorpool ${argv.join(' ')}\` failed (status ${status})`);
  });
  return program;
}

/** Runs a command line in this process (never on a node). */
export async function runCommand(argv: readonly string[], io: CliIo, launch?: Launch): Promise<number> {
  const program = buildProgram(io, launch);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (e) {
    return failure(e, io);
  }
}

function failure(e: unknown, io: CliIo): number {
  if (e instanceof CommanderError) {
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version') return 0;
    // `help` asked for exits 0; help shown because a subcommand is missing is bad usage.
    if (e.code === 'commander.help') return e.exitCode === 0 ? 0 : USAGE_EXIT;
    io.err.write(`mirrorpool: EINVAL: ${e.message.replace(/^error: /, '')}\n`);
    return USAGE_EXIT;
  }
  if (e instanceof MirrorpoolError) {
    io.err.write(`mirrorpool: ${e.code}: ${e.message}\n`);
    return FAILED_EXIT;
  }
  throw e;
}

/**
 * The CLI: runs the command here, or on the node named by --node / MIRRORPOOL_NODE. `argv` is
 * what follows the program name; when it is the tail of process.argv, `up` starts its nodes
 * with the same entry point.
 */
export async function main(argv: readonly string[], io: CliIo = { out: process.stdout, err: process.stderr }): Promise<number> {
  const out = watchSink(io.out);
  const err = watchSink(io.err);
  let status: number;
  try {
    status = await mainOn(argv, io);
    // A pipe write fails at once but reports it on the next tick: let that report arrive.
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    out.stop();
    err.stop();
  }
  const lost = out.failure();
  // A command that failed has said why (send reports its own lost reader).
  if (lost === undefined || status !== 0) return status;
  const coded = fsError(lost, 'stdout');
  return failure(coded instanceof MirrorpoolError ? coded : mpError('EIO', `stdout: ${coded.message}`, { path: 'stdout' }, lost), io);
}

/**
 * Catches the write errors of a text sink that is an event emitter (the process's stdout and
 * stderr) while a command runs: a reader that went away (EPIPE) would otherwise be an unhandled
 * 'error' event, a crash with a stack trace. The first one is kept; main() then ends the command
 * with it (ECANCELED for EPIPE, as `send` does). An error of stderr has nowhere to be told.
 */
function watchSink(sink: object): { failure(): Error | undefined; stop(): void } {
  const emitter = sink as Partial<Pick<NodeJS.EventEmitter, 'on' | 'off'>>;
  if (typeof emitter.on !== 'function' || typeof emitter.off !== 'function') return { failure: () => undefined, stop: () => undefined };
  let first: Error | undefined;
  const onError = (e: Error): void => {
    first ??= e;
  };
  emitter.on('error', onError);
  return { failure: () => first, stop: () => emitter.off?.('error', onError) };
}

async function mainOn(argv: readonly string[], io: CliIo): Promise<number> {
  const tail = process.argv.slice(-argv.length);
  const launch = { entry: argv.length > 0 && tail.every((a, i) => a === argv[i]) ? [...process.execArgv, ...process.argv.slice(1, -argv.length)] : [] };
  const { options, rest } = splitConnectionOptions(argv);
  const node = options['--node'] ?? process.env['MIRRORPOOL_NODE'];
  if (node === undefined || node === '' || !runsRemotely(rest)) return runCommand(argv, io, launch);
  if (options['--home'] !== undefined) return failure(new CommanderError(USAGE_EXIT, 'mirrorpool.usage', '--home and --node do not go together'), io);
  try {
    return await runRemote(node, options['--token'] ?? process.env['MIRRORPOOL_TOKEN'], options['--ca'] ?? process.env['MIRRORPOOL_CA'], rest, io);
  } catch (e) {
    return failure(e, io);
  }
}
