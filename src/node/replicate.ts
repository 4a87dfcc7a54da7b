// Remote replication (`send ... --to URL:pool/ds`): push a send stream to another node, which
// receives it resumably. When the connection breaks (or the node restarts) the push reconnects,
// asks the receiver for the resume token its stopped receive left, and sends only the rest —
// from the token's object and offset. Errors of the stream itself (a diverged target, a bad
// name) are not retried; losing the connection is, with a growing pause, up to `retries` times.
// Inside a daemon the connection outlives the push (peer-clients.ts). Called by cli-stream.ts.

import { type Pool } from '../engine/index.js';
import { MirrorpoolError, mpError } from '../lib/index.js';
import { decodeResumeToken } from '../sync/index.js';
import { MirrorpoolClient } from './client.js';
import { PeerClients } from './peer-clients.js';
import type { ReplicationEvent } from './node-config.js';
import type { ClientCredentials } from './rpc/index.js';
import { RETRIES_DEFAULT, type ReplicateTarget } from './replicate-target.js';
import { type SendRequest, sendSource } from './send-source.js';

/** The first call on a kept connection (see attempt). */
const REUSED_CALL_DEADLINE_MS = 10_000;
const PAUSE_MS_FIRST = 200;
const PAUSE_MS_MAX = 5000;
/** Codes that mean the link or the peer went away, not that the stream is wrong. */
const RETRYABLE = new Set(['ECANCELED', 'EIO', 'ETIMEDOUT']);

export interface ReplicateOptions {
  readonly pool: Pool;
  readonly request: SendRequest;
  readonly target: ReplicateTarget;
  readonly credentials: ClientCredentials;
  readonly caFile?: string;
  readonly force?: boolean;
  readonly retries?: number;
  readonly events?: (e: ReplicationEvent) => void;
  /** Called before each attempt after the first, with the error that ended the last one. */
  readonly onRetry?: (attempt: number, error: MirrorpoolError) => void;
  readonly onBytes?: (total: number) => void;
  /** Called when an attempt resumes a stopped receive instead of starting over. */
  readonly onResume?: (token: string) => void;
  /** Connections kept between pushes (a daemon's); without it each attempt connects and closes. */
  readonly peers?: PeerClients;
}

export interface ReplicateResult {
  readonly snapshot: string;
  readonly bytes: number;
  readonly attempts: number;
}

const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * One attempt: connect (or take a connection kept from an earlier push), resume if the receiver
 * holds a token for this stream, push. A kept connection whose peer went away silently fails
 * its first call within REUSED_CALL_DEADLINE_MS (as a new one fails to connect), and the retry
 * connects anew.
 */
async function attempt(o: ReplicateOptions, counted: { bytes: number }): Promise<{ snapshot: string }> {
  const connect = (): Promise<MirrorpoolClient> => MirrorpoolClient.connect(o.target.url, o.credentials, o.caFile === undefined ? {} : { caFile: o.caFile });
  const key = PeerClients.key(o.target.url, o.credentials, o.caFile);
  const kept = o.peers !== undefined && key !== undefined ? { peers: o.peers, key } : undefined;
  const { client, reused } = kept !== undefined ? await kept.peers.take(kept.key, connect) : { client: await connect(), reused: false };
  let ok = false;
  try {
    const token = await client.resumeToken(o.target.dataset, reused ? { deadlineMs: REUSED_CALL_DEADLINE_MS } : {});
    let request: SendRequest = o.request;
    let resumed = false;
    if (token !== null) {
      const stopped = decodeResumeToken(token);
      if (stopped.toName !== o.request.to) {
        throw mpError('EBUSY', `${o.target.dataset} on ${o.target.url} holds a stopped receive of ${stopped.toName}; abort it there with \`recv -A\` first`, {
          dataset: o.target.dataset,
          stopped: stopped.toName,
        });
      }
      request = { token };
      resumed = true;
      o.onResume?.(token);
    }
    const source = await sendSource(o.pool, request);
    const frames = async function* (): AsyncGenerator<Uint8Array> {
      // The connection copies each chunk before it asks for the next (MirrorpoolClient.receive).
      for await (const chunk of source.chunks()) {
        counted.bytes += chunk.length;
        o.events?.({ kind: 'bytes', n: chunk.length });
        o.onBytes?.(counted.bytes);
        yield chunk;
      }
    };
    const result = await client.receive(o.target.dataset, frames(), { resumable: true, force: (o.force ?? false) && !resumed });
    ok = true;
    return { snapshot: result.snapshot };
  } finally {
    if (ok && kept !== undefined) kept.peers.give(kept.key, client);
    else await client.close();
  }
}

/** Pushes `request` to the target until it lands or a non-retryable error (or too many retries). */
export async function replicate(o: ReplicateOptions): Promise<ReplicateResult> {
  const retries = o.retries ?? RETRIES_DEFAULT;
  const started = performance.now();
  const counted = { bytes: 0 };
  o.events?.({ kind: 'start' });
  for (let n = 0; ; n++) {
    try {
      const { snapshot } = await attempt(o, counted);
      const short = snapshot.slice(snapshot.indexOf('@'));
      const to = o.request.to ?? '';
      if (o.request.intermediates !== true || to.endsWith(short)) {
        o.events?.({ kind: 'done', seconds: (performance.now() - started) / 1000 });
        return { snapshot, bytes: counted.bytes, attempts: n + 1 };
      }
      // A resumed stream of a package landed; the snapshots after it follow as a new package.
      o = { ...o, request: { ...o.request, from: `${to.slice(0, to.indexOf('@'))}${short}` } };
    } catch (e) {
      if (!(e instanceof MirrorpoolError)) throw e;
      o.events?.({ kind: 'error', code: e.code });
      if (!RETRYABLE.has(e.code) || n >= retries) throw e;
      o.events?.({ kind: 'retry' });
      o.onRetry?.(n + 1, e);
      await pause(Math.min(PAUSE_MS_MAX, PAUSE_MS_FIRST * 2 ** n));
    }
  }
}
