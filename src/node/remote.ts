// `mirrorpool --node URL --token T <command>`: the command runs on the node (cli.run) and this
// process only moves bytes. Files named on the command line are local files, so they are handled
// here: `put`/`write` read their input file and send it as the command's stdin, `get -o FILE`
// writes the command's stdout to FILE (atomically, like the local command). Everything else —
// vdev paths of `pool create`, for instance — is the node's business and passes through.
// Called by main() in cli.ts when a node is named (flag or MIRRORPOOL_NODE).

import { mpError } from '../lib/index.js';
import { type CliIo } from './cli-common.js';
import { withFileAtomic, withInput } from './cli-data.js';

/** Options main() reads itself before the command word. */
const CONNECTION_OPTIONS = ['--node', '--token', '--ca', '--home'] as const;
type ConnectionOption = (typeof CONNECTION_OPTIONS)[number];

/** Commands that run on this machine even with a node named (status and tokens ask the node themselves). */
const LOCAL_COMMANDS = new Set(['up', 'node init', 'node start', 'node peer', 'node status', 'token create', 'help']);

export interface SplitArgv {
  readonly options: Partial<Record<ConnectionOption, string>>;
  readonly rest: readonly string[];
}

/** Takes the connection options (`--node URL`, `--node=URL`, …) from the front of argv. */
export function splitConnectionOptions(argv: readonly string[]): SplitArgv {
  const options: Partial<Record<ConnectionOption, string>> = {};
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i] ?? '';
    const eq = a.indexOf('=');
    const name = (eq > 0 ? a.slice(0, eq) : a) as ConnectionOption;
    if (!CONNECTION_OPTIONS.includes(name)) break;
    if (eq > 0) options[name] = a.slice(eq + 1);
    else {
      const value = argv[i + 1];
      if (value === undefined) break; // commander reports the missing value
      options[name] = value;
      i++;
    }
  }
  return { options, rest: argv.slice(i) };
}

/** Whether this command line runs on the named node rather than here. */
export function runsRemotely(rest: readonly string[]): boolean {
  const [verb, sub] = rest;
  if (verb === undefined || verb.startsWith('-')) return false;
  return !LOCAL_COMMANDS.has(verb) && !LOCAL_COMMANDS.has(`${verb} ${sub ?? ''}`);
}

/** Positions of the positional arguments after the command word (options with values skipped). */
function positionals(args: readonly string[], valued: ReadonlySet<string>): number[] {
  const found: number[] = [];
  for (let i = 1; i < args.length; i++) {
    const a = args[i] ?? '';
    if (a === '-' || !a.startsWith('-')) found.push(i);
    else if (valued.has(a)) i++;
  }
  return found;
}

interface Plan {
  readonly argv: readonly string[];
  readonly inputFile?: string;
  readonly stdin: boolean;
  readonly outputFile?: string;
}

/** Rewrites a command line's local files into stdin/stdout of the remote command. */
export function planRemote(argv: readonly string[]): Plan {
  const verb = argv[0];
  if (verb === 'put' || verb === 'write') {
    const pos = positionals(argv, new Set(['--offset']));
    const fileAt = pos[2];
    if (fileAt === undefined || argv[fileAt] === '-') return { argv, stdin: true };
    const copy = [...argv];
    copy[fileAt] = '-';
    return { argv: copy, stdin: true, inputFile: argv[fileAt] ?? '' };
  }
  if (verb === 'get') {
    const at = argv.findIndex((a) => a === '-o' || a === '--output');
    const inline = argv.findIndex((a) => a.startsWith('--output='));
    if (at >= 0 && argv[at + 1] !== undefined) return { argv: [...argv.slice(0, at), ...argv.slice(at + 2)], stdin: false, outputFile: argv[at + 1] ?? '' };
    if (inline >= 0) return { argv: argv.filter((_, i) => i !== inline), stdin: false, outputFile: (argv[inline] ?? '').slice('--output='.length) };
  }
  if ((verb === 'recv' || verb === 'receive') && !argv.includes('-A')) return { argv, stdin: true };
  return { argv, stdin: false };
}

/** Runs `argv` on the node at `url`; resolves with the exit status the node's command returned. */
export async function runRemote(url: string, token: string | undefined, caFile: string | undefined, argv: readonly string[], io: CliIo): Promise<number> {
  if (token === undefined || token === '') {
    throw mpError('EAUTH', `commands sent to ${url} need a token: --token or MIRRORPOOL_TOKEN (create one with \`mirrorpool token create\`)`, { reason: 'token-malformed' });
  }
  const plan = planRemote(argv);
  const { MirrorpoolClient } = await import('./client.js');
  const client = await MirrorpoolClient.connect(url, token, caFile === undefined ? {} : { caFile });
  try {
    const text = new TextDecoder();
    const stderr = (chunk: Uint8Array): void => io.err.write(text.decode(chunk));
    const go = (stdin: AsyncIterable<Uint8Array> | undefined, stdout: (chunk: Uint8Array) => Promise<void>): Promise<number> =>
      client.run(plan.argv, { ...(stdin === undefined ? {} : { stdin }), stdout, stderr });
    const toStdout = async (chunk: Uint8Array): Promise<void> => {
      if (io.stdout !== undefined) await io.stdout.write(chunk);
      else io.out.write(text.decode(chunk, { stream: true }));
    };
    if (plan.outputFile !== undefined) {
      const file = plan.outputFile;
      // The local file is replaced only when the node's command succeeded.
      let status = 0;
      await withFileAtomic(file, async (write) => {
        status = await go(undefined, write);
        if (status !== 0) throw mpError('ECANCELED', `the command on ${url} failed; ${file} is unchanged`);
      }).catch((e: unknown) => {
        if (status === 0) throw e;
      });
      return status;
    }
    if (!plan.stdin) return await go(undefined, toStdout);
    return await withInput(plan.inputFile, io, (chunks) => go(chunks, toStdout));
  } finally {
    await client.close();
  }
}
