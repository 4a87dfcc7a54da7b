// Streams as bytes: send produces frames (an async iterable with backpressure: nothing is read
// ahead of the consumer), receive consumes them. The in-process API the CLI, the daemon and the
// cluster's resync use; send.ts and receive.ts do the work, the encoder and decoder the framing
// and the running checksum.

import { SpareBuffers, concatBytes, mpError } from '../lib/index.js';
import type { Pool } from '../engine/index.js';
import { type ReceiveOptions, type ReceiveResult, receiveRecords } from './receive.js';
import { planResume } from './resume-token.js';
import { type SendOptions, type SendPlan, beginRecord, changeRecords, planSend } from './send.js';
import { StreamDecoder } from './stream-decoder.js';
import { StreamEncoder } from './stream-encoder.js';
import { StreamFeature, type StreamRecord } from './stream-record.js';

export interface StreamSendOptions extends SendOptions {
  /** Resume the stream a stopped receive's token names (`send -t`); `to` and `from` are ignored. */
  readonly token?: string;
}

/** Checks the snapshots (or the token) and returns what would be sent. */
export function sendPlan(pool: Pool, to: string, options: StreamSendOptions = {}): Promise<SendPlan> {
  return options.token !== undefined ? planResume(pool, options.token) : planSend(pool, to, options);
}

/**
 * The frames of a send stream: BEGIN, the changes, END (`more`: another stream follows), each
 * one array the caller owns (sendStreamParts joined).
 */
export async function* sendStream(pool: Pool, plan: SendPlan, options: { more?: boolean } = {}): AsyncGenerator<Uint8Array, void, undefined> {
  for await (const parts of sendStreamParts(pool, plan, options)) yield parts.length === 1 && parts[0] !== undefined ? parts[0] : concatBytes(parts);
}

/**
 * sendStream as the parts of each frame (StreamEncoder.encodeParts): a WRITE's data is yielded as
 * the buffer the block was read into, not copied into a frame. The consumer writes each frame's
 * parts back to back and must be done with them before it asks for the next frame: the buffers
 * blocks are read into are reused from then on (changeRecords `reuse`). A consumer that needs a
 * frame longer copies it (sendStream does).
 */
export async function* sendStreamParts(pool: Pool, plan: SendPlan, options: { more?: boolean } = {}): AsyncGenerator<readonly Uint8Array[], void, undefined> {
  const encoder = new StreamEncoder();
  yield encoder.encodeParts(beginRecord(plan, options.more === true));
  for await (const r of changeRecords(pool, plan, { reuse: true })) yield encoder.encodeParts(r);
  yield [encoder.end()];
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

/**
 * The snapshots a `send -I from to` package carries, oldest first: every snapshot of the
 * dataset after `from` up to `to` (EINVAL unless `from` is an older snapshot of it).
 */
export async function packageSnapshots(pool: Pool, from: string, to: string): Promise<string[]> {
  const plan = await planSend(pool, to, { from });
  const dataset = to.slice(0, to.indexOf('@'));
  if (!from.includes('@')) throw mpError('EINVAL', `send -I takes a snapshot, not ${from}`, { from });
  const snaps = (await pool.dsl.list({ under: dataset, types: ['snapshot'] })).filter((e) => e.name.startsWith(`${dataset}@`));
  return snaps.filter((e) => e.createTxg > plan.fromTxg && e.createTxg <= plan.toTxg).sort((a, b) => a.createTxg - b.createTxg).map((e) => e.name);
}

/**
 * A package (`send -I`): one incremental stream per step from `from` through every snapshot in
 * between to `to`, back to back. receiveStream takes it like a single stream.
 */
export async function* sendPackage(pool: Pool, from: string, to: string): AsyncGenerator<Uint8Array, void, undefined> {
  let prev = from;
  const snaps = await packageSnapshots(pool, from, to);
  for (const [i, snap] of snaps.entries()) {
    yield* sendStream(pool, await planSend(pool, snap, { from: prev }), { more: i < snaps.length - 1 });
    prev = snap;
  }
}

export interface ReceiveStreamOptions extends ReceiveOptions {
  /**
   * Hands a chunk of `source` back to its producer once nothing decoded from it is referenced
   * any more: the decoder has read past it and every record decoded from it has been applied.
   * The producer may then refill it (a pool of reused buffers); until then it must not touch
   * it. A chunk that also holds the start of the next stream of a package, and the chunks of a
   * receive that fails, are never handed back (they are simply dropped).
   */
  readonly recycle?: (chunk: Uint8Array) => void;
}

/**
 * Receives the stream in `source` (chunks of any size) into dataset `target`; a package of
 * streams (`send -I`) is received one stream after another, each one atomic on its own. Bytes
 * after the END of a stream not marked `package` are EPROTO before anything is committed.
 * Returns the last stream's result.
 */
export async function receiveStream(pool: Pool, target: string, source: AsyncIterable<Uint8Array>, options: ReceiveStreamOptions = {}): Promise<ReceiveResult> {
  const input = source[Symbol.asyncIterator]();
  const { recycle, ...receiveOptions } = options;
  const frames = new SpareBuffers(GATHER_SPARE_BYTES_MAX);
  let carry: Uint8Array = new Uint8Array(0);
  for (;;) {
    const decoder = new StreamDecoder({ stopAtEnd: true, frameBuffer: (bytes) => frames.take(bytes) });
    const first = carry;
    // Chunks the decoder has read past, and buffers it gathered split frames into, whose records
    // may still wait in a batch not yet applied.
    let passed: Uint8Array[] = [];
    let gathered: Uint8Array[] = [];
    const applied = (): void => {
      for (const frame of gathered) frames.give(frame);
      gathered = [];
      if (recycle === undefined) return;
      const done = passed;
      passed = [];
      for (const chunk of done) recycle(chunk);
    };
    const records = async function* (): AsyncGenerator<StreamRecord, void, undefined> {
      if (first.length > 0) decoder.push(first);
      let current: Uint8Array | null = null;
      for (;;) {
        for (let r = decoder.next(); r !== undefined; r = decoder.next()) {
          const frame = decoder.gathered;
          if (frame !== undefined) gathered.push(frame);
          yield r;
        }
        if (decoder.ended && ((decoder.begin?.features ?? 0) & StreamFeature.package) !== 0) return;
        if (decoder.ended) {
          // The last stream: the source must end here.
          const rest = decoder.takeRest();
          let next = await input.next();
          while (rest.length === 0 && next.done !== true && next.value.length === 0) next = await input.next();
          if (rest.length > 0 || next.done !== true) throw mpError('EPROTO', 'bytes after END', { consumedBytes: decoder.consumedBytes });
          return;
        }
        // next() returned undefined: the decoder holds nothing of the current chunk any more
        // (a frame split across chunks is gathered into a buffer of its own).
        if (current !== null) passed.push(current);
        const next = await input.next();
        if (next.done === true) {
          decoder.finish();
          return;
        }
        current = next.value;
        decoder.push(next.value);
      }
    };
    const result = await receiveRecords(pool, target, records(), receiveOptions, { applied });
    if (((decoder.begin?.features ?? 0) & StreamFeature.package) === 0) return result;
    carry = decoder.takeRest();
    while (carry.length === 0) {
      const next = await input.next();
      if (next.done === true) return result;
      carry = next.value;
    }
  }
}

/**
 * Bytes of spare buffers one receive keeps for gathering split frames (a stream carried in small
 * messages splits nearly every WRITE frame).
 */
const GATHER_SPARE_BYTES_MAX = 16 * 1024 * 1024;
