// The handlers of the daemon's RPC methods (api.ts names them and their scopes). Parameters are
// checked by api.ts before anything runs. `cli.run` runs a command line in this process, the
// same program as the local CLI, against the daemon's resident pools: its text and binary output
// come back on the response stream, each chunk tagged with its channel, and stdin comes from the
// request stream. The stream methods move send streams with the transport's backpressure.
// Every handler runs under NodeDaemon.track, so shutdown waits for it.
// Called by daemon.ts (one method table per connection).

import { parseName } from '../engine/index.js';
import { mpError } from '../lib/index.js';
import { receiveStream } from '../sync/index.js';
import {
  CHANNEL_STDERR,
  CHANNEL_STDOUT,
  type MethodName,
  sectionHeader,
  METHOD_SCOPES,
  commandScope,
  isMethodName,
  receiveParams,
  resumeTokenParams,
  runParams,
  sendParams,
  tokenParams,
} from './api.js';
import type { CallContext, Handler, MethodSpec } from './rpc/index.js';
import { createToken, scopeAllows } from './rpc/index.js';
import { runCommand } from './cli.js';
import { oneReceivePerDataset } from './cli-stream.js';
import type { NodeDaemon } from './daemon.js';
import { withPool } from './pool-open.js';
import { sendSource, sendTarget } from './send-source.js';

/** Options a remote command line may not carry: the daemon decides where its pools live. */
const LOCAL_ONLY_OPTIONS = ['--home', '--node', '--token', '--ca'];

/** Writes one section (header, then the bytes as they are) after everything queued before it. */
function section(ctx: CallContext, queue: { last: Promise<void> }, channel: number, bytes: Uint8Array): Promise<void> {
  queue.last = queue.last.then(async () => {
    await ctx.write(sectionHeader(channel, bytes.length));
    await ctx.write(bytes);
  });
  return queue.last;
}

function runHandler(daemon: NodeDaemon): Handler {
  return async (raw, ctx) => {
    const { argv, stdin } = runParams(raw);
    const banned = argv.find((a) => LOCAL_ONLY_OPTIONS.some((o) => a === o || a.startsWith(`${o}=`)));
    if (banned !== undefined) throw mpError('EINVAL', `${banned} is an option of the local command line; it cannot be sent to a node`, { option: banned });
    if (argv[0] === 'node' || argv[0] === 'up') throw mpError('EINVAL', `\`${argv.slice(0, 2).join(' ')}\` runs on the local machine, not on a node`);
    const need = commandScope(argv);
    if (!scopeAllows(ctx.principal.scope, need)) {
      daemon.metrics.transport.authFailure('scope');
      throw mpError('EAUTH', `a token of scope ${ctx.principal.scope} cannot run \`${argv.slice(0, 2).join(' ')}\` (needs ${need})`, { reason: 'scope', need });
    }
    const queue = { last: Promise.resolve() };
    // Text writes are synchronous for the command; their sections go out in order behind it. A
    // failed write also fails queue.last, which the handler awaits below, so it is not lost.
    const text = (channel: number) => ({ write: (s: string) => void section(ctx, queue, channel, Buffer.from(s, 'utf8')).catch(() => undefined) });
    const io = {
      out: text(CHANNEL_STDOUT),
      err: text(CHANNEL_STDERR),
      stdin: stdin ? ctx.input : emptyInput(),
      stdout: { write: (chunk: Uint8Array) => section(ctx, queue, CHANNEL_STDOUT, chunk) },
    };
    const exitCode = await runCommand(['--home', daemon.node.home, ...argv], io);
    await queue.last;
    return { exitCode };
  };
}

async function* emptyInput(): AsyncGenerator<Uint8Array> {
  // A command that reads stdin without the caller sending any sees an empty input.
}

function sendHandler(daemon: NodeDaemon): Handler {
  return async (raw, ctx) => {
    const p = sendParams(raw);
    const request = { ...(p.snapshot === undefined ? {} : { to: p.snapshot }), ...(p.from === undefined ? {} : { from: p.from }), ...(p.token === undefined ? {} : { token: p.token }) };
    let bytes = 0;
    await withPool(daemon.node.home, parseName(sendTarget(request), ['snapshot']).pool, async (pool) => {
      const source = await sendSource(pool, request);
      // ctx.write copies each chunk before it resolves: the source reuses its buffer.
      for await (const chunk of source.chunks()) {
        if (ctx.signal.aborted) throw mpError('ECANCELED', 'the send was canceled');
        await ctx.write(chunk);
        bytes += chunk.length;
      }
    });
    return { bytes };
  };
}

function receiveHandler(daemon: NodeDaemon): Handler {
  return async (raw, ctx) => {
    const p = receiveParams(raw);
    const pool = parseName(p.dataset, ['dataset']).pool;
    let counted = 0;
    const result = await withPool(daemon.node.home, pool, (open) =>
      oneReceivePerDataset(daemon.node.home, p.dataset, () => receiveStream(open, p.dataset, ctx.input, {
        force: p.force,
        resumable: p.resumable,
        progress: (r) => {
          daemon.metrics.replication({ kind: 'bytes', n: r.dataBytes - counted });
          counted = r.dataBytes;
        },
      })),
    );
    return { snapshot: result.snapshot, records: result.records, dataBytes: result.dataBytes };
  };
}

function resumeTokenHandler(daemon: NodeDaemon): Handler {
  return async (raw) => {
    const { dataset } = resumeTokenParams(raw);
    const pool = parseName(dataset, ['dataset']).pool;
    // A receive into the dataset that is still stopping (its sender just went away) leaves its
    // token when it ends: wait for it rather than answer "none" a moment too early.
    const token = await withPool(daemon.node.home, pool, (open) =>
      oneReceivePerDataset(daemon.node.home, dataset, () => Promise.resolve(open.dsl.receiveResumeToken(dataset))),
    );
    return { token: token ?? null };
  };
}

function handlers(daemon: NodeDaemon): Record<MethodName, Handler> {
  return {
    'node.status': () => Promise.resolve(daemon.status()),
    'token.create': (raw) => {
      const p = tokenParams(raw);
      const now = Date.now();
      const token = createToken(daemon.node.clusterSecret, p.scope, { ttlMs: p.ttlMs, now });
      return Promise.resolve({ token, scope: p.scope, expiresAt: now + p.ttlMs });
    },
    'cli.run': runHandler(daemon),
    'stream.send': sendHandler(daemon),
    'stream.receive': receiveHandler(daemon),
    'stream.resumeToken': resumeTokenHandler(daemon),
  };
}

/** The method table of one connection: each handler runs tracked, so shutdown waits for it. */
export function daemonMethods(daemon: NodeDaemon): (name: string) => MethodSpec | undefined {
  const table = handlers(daemon);
  return (name) => {
    if (!isMethodName(name)) return undefined;
    const handler = table[name];
    return { scope: METHOD_SCOPES[name], handler: (params, ctx) => daemon.track(() => handler(params, ctx)) };
  };
}
