// The typed client library of a mirrorpool node: connect with a token (or, between nodes, with
// node credentials) and call the daemon's methods with the parameter and result types of api.ts.
// Streams keep the transport's backpressure: `send` hands each chunk to a sink and waits for it,
// `receive` pulls from an async iterable only as fast as the node applies it. `run` executes a
// CLI command line on the node, which is how `mirrorpool --node URL ...` works.
// Used by remote.ts (the CLI), replicate.ts (send --to), cli-node.ts and the tests.

import { readFile } from 'node:fs/promises';
import {
  CHANNEL_STDOUT,
  SectionReader,
  type Methods,
  type MethodName,
  type NodeStatus,
  type ReceiveResultWire,
  type SendParams,
  type TokenResult,
} from './api.js';
import { type CallOptions, type ClientCredentials, type RpcClient, type Scope, connect } from './rpc/index.js';

export interface ClientOptions {
  /** Path of the PEM CA certificate that signed the node's certificate (wss:// with a private CA). */
  readonly caFile?: string;
  readonly expectNodeId?: string;
  readonly timeoutMs?: number;
}

export interface RunIo {
  readonly stdin?: AsyncIterable<Uint8Array>;
  /** Channel 1: what the command writes to stdout, text and bytes alike. */
  stdout(chunk: Uint8Array): Promise<void> | void;
  /** Channel 2: what the command writes to stderr. */
  stderr(chunk: Uint8Array): Promise<void> | void;
}

export class MirrorpoolClient {
  private open = true;

  private constructor(readonly rpc: RpcClient, readonly url: string) {
    void rpc.closed.then(() => (this.open = false));
  }

  /** False once the connection closed, from either end. */
  get isOpen(): boolean {
    return this.open;
  }

  /** Connects and authenticates; EAUTH when refused, EIO/ETIMEDOUT when the node cannot be reached. */
  static async connect(url: string, credentials: ClientCredentials | string, options: ClientOptions = {}): Promise<MirrorpoolClient> {
    const creds: ClientCredentials = typeof credentials === 'string' ? { kind: 'token', token: credentials } : credentials;
    const ca = options.caFile === undefined ? undefined : await readFile(options.caFile);
    const rpc = await connect(url, creds, {
      ...(ca === undefined ? {} : { ca }),
      ...(options.expectNodeId === undefined ? {} : { expectNodeId: options.expectNodeId }),
      ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
    });
    return new MirrorpoolClient(rpc, url);
  }

  /** The node's identity as it proved it in the handshake. */
  get server(): { readonly id: string; readonly publicKey: string } {
    return this.rpc.server;
  }

  call<M extends MethodName>(method: M, params: Methods[M]['params'], options?: CallOptions): Promise<Methods[M]['result']> {
    return this.rpc.call<Methods[M]['result']>(method, params, options);
  }

  nodeStatus(): Promise<NodeStatus> {
    return this.call('node.status', {});
  }

  createToken(scope: Scope, ttlMs: number): Promise<TokenResult> {
    return this.call('token.create', { scope, ttlMs });
  }

  /** Runs a command line on the node; resolves with its exit status (0, 1 failed, 2 bad usage). */
  async run(argv: readonly string[], io: RunIo, options: { signal?: AbortSignal } = {}): Promise<number> {
    const sections = new SectionReader((channel, bytes) => (channel === CHANNEL_STDOUT ? io.stdout(bytes) : io.stderr(bytes)));
    const { exitCode } = await this.call(
      'cli.run',
      { argv, stdin: io.stdin !== undefined },
      {
        ...(io.stdin === undefined ? {} : { input: io.stdin }),
        ...(options.signal === undefined ? {} : { signal: options.signal }),
        deadlineMs: RUN_DEADLINE_MS,
        output: (chunk) => sections.push(chunk),
      },
    );
    sections.finish();
    return exitCode;
  }

  /** Streams a send of the node's snapshot into `sink`, chunk by chunk. */
  async send(params: SendParams, sink: (chunk: Uint8Array) => Promise<void> | void, options: { signal?: AbortSignal } = {}): Promise<number> {
    const { bytes } = await this.call('stream.send', params, { output: sink, deadlineMs: RUN_DEADLINE_MS, ...(options.signal === undefined ? {} : { signal: options.signal }) });
    return bytes;
  }

  /**
   * Applies the stream in `source` to `dataset` on the node. Each chunk is copied before the next
   * one is asked for, so a source may reuse its buffer.
   */
  receive(dataset: string, source: AsyncIterable<Uint8Array>, options: { force?: boolean; resumable?: boolean; signal?: AbortSignal } = {}): Promise<ReceiveResultWire> {
    return this.call(
      'stream.receive',
      { dataset, force: options.force ?? false, resumable: options.resumable ?? false },
      { input: source, deadlineMs: RUN_DEADLINE_MS, ...(options.signal === undefined ? {} : { signal: options.signal }) },
    );
  }

  /** The token a stopped resumable receive into `dataset` left, or null. */
  async resumeToken(dataset: string, options: { deadlineMs?: number } = {}): Promise<string | null> {
    return (await this.call('stream.resumeToken', { dataset }, options)).token;
  }

  close(): Promise<void> {
    return this.rpc.close();
  }
}

/** Commands and streams may run long (a large send); they end by cancellation, not by a short deadline. */
const RUN_DEADLINE_MS = 24 * 3600 * 1000;
