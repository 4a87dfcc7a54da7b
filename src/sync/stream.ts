// Streams as bytes: send produces frames (an async iterable with backpressure: nothing is read
// ahead of the consumer), receive consumes them. The in-process API the CLI, the daemon and the
// cluster's resync use; send.ts and receive.ts do the work, the encoder and decoder the framing
// and the running checksum.

import type { Pool } from '../engine/index.js';
import { type ReceiveOptions, type ReceiveResult, receiveRecords } from './receive.js';
import { planResume } from './resume-token.js';
import { type SendOptions, type SendPlan, beginRecord, changeRecords, planSend } from './send.js';
import { StreamDecoder } from './stream-decoder.js';
import { StreamEncoder } from './stream-encoder.js';

export interface StreamSendOptions extends SendOptions {
  /** Resume the stream a stopped receive's token names (`send -t`); `to` and `from` are ignored. */
  readonly token?: string;
}

/** Checks the snapshots (or the token) and returns what would be sent. */
export function sendPlan(pool: Pool, to: string, options: StreamSendOptions = {}): Promise<SendPlan> {
  return options.token !== undefined ? planResume(pool, options.token) : planSend(pool, to, options);
}

/** The frames of a send stream: BEGIN, the changes, END. */
export async function* sendStream(pool: Pool, plan: SendPlan): AsyncGenerator<Uint8Array, void, undefined> {
  const encoder = new StreamEncoder();
  yield encoder.encode(beginRecord(plan));
  for await (const r of changeRecords(pool, plan)) yield encoder.encode(r);
  yield encoder.end();
}

/**
 * The exact size of the stream of `plan`, found by the same walk without reading any data block
 * (`send --estimate`): a WRITE's frame does not depend on its bytes.
 */
export async function estimateSend(pool: Pool, plan: SendPlan): Promise<number> {
  const encoder = new StreamEncoder();
  encoder.encode(beginRecord(plan));
  for await (const r of changeRecords(pool, plan, { readData: false })) encoder.encode(r);
  encoder.end();
  return encoder.encodedBytes;
}

/** Receives the stream in `source` (chunks of any size) into dataset `target`. */
export function receiveStream(pool: Pool, target: string, source: AsyncIterable<Uint8Array>, options: ReceiveOptions = {}): Promise<ReceiveResult> {
  return receiveRecords(pool, target, new StreamDecoder().records(source), options);
}
