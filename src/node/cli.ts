// The `mirrorpool` command line (shared/CLI.md is the contract, docs/cli.md what exists).
// main() never throws: a MirrorpoolError prints `mirrorpool: <CODE>: <message>` and exits 1,
// bad usage exits 2, anything else is a bug and is rethrown with its stack.

import { Command, CommanderError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { MirrorpoolError, mpError } from '../lib/index.js';
import { addDataCommands } from './cli-data.js';
import { addDatasetCommands } from './cli-dataset.js';
import { addStreamCommands } from './cli-stream.js';
import { addPoolCommands } from './cli-pool.js';

const USAGE_EXIT = 2;
const FAILED_EXIT = 1;

/** The package version, from the nearest package.json above this module (src/ or dist/src/). */
function version(): string {
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

export function buildProgram(out: { write(s: string): void }, err: { write(s: string): void }): Command {
  const program = new Command('mirrorpool')
    .description('Clustered storage with quorum mirroring: pools, datasets, snapshots, send streams.')
    .version(version(), '-V, --version')
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
    );

  program
    .command('up')
    .description('start a local 3-node cluster in a data folder (what `npm start` runs)')
    .option('--nodes <n>', 'number of nodes', '3')
    .option('--dir <dir>', 'data folder', './data')
    .action(() => {
      throw mpError('ENOTSUP', '`up` needs the node daemon, which is not built yet (see the README status table)');
    });

  addPoolCommands(program, { out, err });
  addDatasetCommands(program, { out, err });
  addDataCommands(program, { out, err });
  addStreamCommands(program, { out, err });
  return program;
}

export async function main(
  argv: readonly string[],
  io: { out: { write(s: string): void }; err: { write(s: string): void } } = { out: process.stdout, err: process.stderr },
): Promise<number> {
  const program = buildProgram(io.out, io.err);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (e) {
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
}
