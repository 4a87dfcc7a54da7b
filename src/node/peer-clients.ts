// The connections a daemon keeps to the nodes it pushes to (`send --to`): a push takes one, and
// gives it back when its calls succeeded, so the next push to that node skips the connect and the
// handshake (about 5 ms of a 70 ms push between two nodes on one host, connecting and closing,
// and round trips more on a network). A client given back is closed after PEER_IDLE_MS unused,
// when the other end closes it, or when the daemon stops; one whose call failed is closed by the
// caller, never given back. Only node credentials are cached: a token may expire while its
// connection lives on. Owned by the daemon (daemon.ts, through LocalNode), used by replicate.ts.

import { assert } from '../lib/index.js';
import type { MirrorpoolClient } from './client.js';
import type { ClientCredentials } from './rpc/index.js';

/** How long a connection nobody uses stays open. */
export const PEER_IDLE_MS = 30_000;

interface Idle {
  readonly client: MirrorpoolClient;
  readonly timer: NodeJS.Timeout;
}

/**
 * One idle connection per node at most: pushes to one node at once beyond it connect anew, and a
 * node gone silent costs one failed call, not one per idle connection.
 */
export class PeerClients {
  private readonly idle = new Map<string, Idle>();
  /** Clients whose closing has started (idle timeout, the daemon stopping), until they are closed. */
  private readonly closing = new Set<Promise<void>>();
  private stopped = false;

  constructor(private readonly idleMs = PEER_IDLE_MS) {}

  /** The key of a connection to `url` with `credentials`; undefined when it must not be kept. */
  static key(url: string, credentials: ClientCredentials, caFile: string | undefined): string | undefined {
    if (credentials.kind !== 'node') return undefined;
    return JSON.stringify([url, credentials.keys.id, caFile ?? null]);
  }

  /** The idle client of `key` if it is still open, or a new one from `connect`. */
  async take(key: string, connect: () => Promise<MirrorpoolClient>): Promise<{ client: MirrorpoolClient; reused: boolean }> {
    const entry = this.idle.get(key);
    if (entry !== undefined) {
      this.idle.delete(key);
      clearTimeout(entry.timer);
      if (entry.client.isOpen) return { client: entry.client, reused: true };
      this.closeLater(entry.client);
    }
    return { client: await connect(), reused: false };
  }

  /** Gives back a client whose last call succeeded. */
  give(key: string, client: MirrorpoolClient): void {
    if (this.stopped || !client.isOpen || this.idle.has(key)) {
      this.closeLater(client);
      return;
    }
    const timer = setTimeout(() => {
      assert(this.idle.get(key)?.client === client, 'PeerClients: an idle client went missing');
      this.idle.delete(key);
      this.closeLater(client);
    }, this.idleMs);
    // An idle connection alone does not keep the process alive.
    timer.unref();
    this.idle.set(key, { client, timer });
  }

  /** Idle clients now (tests watch it). */
  get idleCount(): number {
    return this.idle.size;
  }

  /** Closes every idle client; clients given back later are closed at once. */
  async close(): Promise<void> {
    this.stopped = true;
    for (const e of this.idle.values()) {
      clearTimeout(e.timer);
      this.closeLater(e.client);
    }
    this.idle.clear();
    await Promise.all(this.closing);
  }

  private closeLater(client: MirrorpoolClient): void {
    const done = client.close().catch(() => undefined);
    this.closing.add(done);
    void done.then(() => this.closing.delete(done));
  }
}
