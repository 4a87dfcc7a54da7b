// The two halves of a call's byte stream with credit-based flow control. OutStream sends DATA
// frames only within the credit the receiver granted, splitting writes to fit the credit and the
// peer's frame limit, and waits while the socket holds too many unflushed bytes. InStream queues
// received payloads, refuses a sender that exceeds its credit, and grants credit back as the
// consumer iterates. Invariant: each DATA frame costs payload + DATA_FRAME_COST_BYTES of credit
// on both sides, so unconsumed bytes (and queued frames) per stream stay within the window.
// Server calls use InStream as ctx.input and OutStream behind ctx.write; client calls the reverse.
// The error a stream ends with is made only when someone sees it (most calls never look), so it
// may be given as a function that makes it.

import { type MirrorpoolError, assert, mpError } from '../../lib/index.js';
import { DATA_FRAME_COST_BYTES, type Wire } from './connection.js';

const CREDIT_MAX = 2 ** 52;
/**
 * A payload is copied out of the websocket message when it is less than 1/PIN_RATIO_MAX of the
 * memory it would keep alive (a socket read of up to 64 KiB, or a joined message), so queued
 * payloads pin at most PIN_RATIO_MAX times their own bytes. A 16 KiB DATA frame (data-writer.ts)
 * inside a 64 KiB read is kept as it is.
 */
const PIN_RATIO_MAX = 8;

const noop = (): void => undefined;

/** An error, or the function that makes it when it is first needed. */
export type LazyError = MirrorpoolError | (() => MirrorpoolError);

export class OutStream {
  private credit: number;
  private endedBy: LazyError | undefined;
  private wake: (() => void) | undefined;
  /** The last write still in progress, if any. */
  private tail: Promise<void> | undefined;

  /** `credit`: what the receiver granted with the request (REQ outputCredit). */
  constructor(private readonly wire: Wire, readonly id: number, credit = 0) {
    this.credit = credit;
  }

  private get ended(): MirrorpoolError | undefined {
    const e = this.endedBy;
    if (typeof e !== 'function') return e;
    return (this.endedBy = e());
  }

  /** The receiver granted `bytes` more. */
  grant(bytes: number): void {
    this.credit = Math.min(this.credit + bytes, CREDIT_MAX);
    this.wake?.();
  }

  /** No more writes: pending and later ones reject with `error`. */
  end(error: LazyError): void {
    this.endedBy ??= error;
    this.wake?.();
  }

  /** Sends `chunk` (copied before the promise resolves); writes go out in call order. */
  write(chunk: Uint8Array): Promise<void> {
    if (!(chunk instanceof Uint8Array)) return Promise.reject(mpError('EINVAL', 'stream chunks must be Uint8Array'));
    const p = this.tail === undefined ? this.send(chunk) : this.tail.then(() => this.send(chunk));
    // The tail only orders writes; each writer sees its own failure through `p`.
    this.tail = p.then(noop, noop);
    return p;
  }

  private async send(chunk: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.ended !== undefined) throw this.ended;
      const n = this.wire.writable ? this.wire.dataBytesWithin(this.credit, chunk.length - offset) : 0;
      if (n === 0) {
        await this.blocked();
        continue;
      }
      this.credit -= this.wire.sendData(this.id, chunk.subarray(offset, offset + n));
      offset += n;
    }
    if (this.ended !== undefined) throw this.ended;
  }

  private blocked(): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        undo();
        this.wake = undefined;
        resolve();
      };
      const undo = this.wire.whenWritable(done);
      this.wake = done;
    });
  }
}

interface Waiter {
  resolve(result: IteratorResult<Uint8Array>): void;
  reject(error: unknown): void;
}

export type PushResult = 'ok' | 'window-exceeded' | 'ended';

export class InStream implements AsyncIterableIterator<Uint8Array> {
  private queue: Uint8Array[] = [];
  private head = 0;
  /** Credit the sender still has, as this side counts it. */
  private allowed = 0;
  /** Consumed cost not yet granted back. */
  private unreported = 0;
  /** Cost of the chunk handed out last: credited when the consumer asks for the next one. */
  private held = 0;
  private ended = false;
  private abandoned = false;
  private failureBy: LazyError | undefined;
  private waiter: Waiter | undefined;

  /**
   * `discard`: nobody reads this stream (a call without an output callback); payloads are
   * dropped as they arrive and credited back as if consumed at once.
   */
  constructor(private readonly wire: Wire, readonly id: number, private readonly window: number, private readonly discard = false) {}

  /**
   * Grants the whole window to the sender: in a CREDIT frame, or not when `announced` (the
   * grant went out with the request as its outputCredit).
   */
  open(announced = false): void {
    this.allowed = this.window;
    if (!announced) this.wire.send({ kind: 'credit', id: this.id, bytes: this.window });
  }

  private get failure(): MirrorpoolError | undefined {
    const e = this.failureBy;
    if (typeof e !== 'function') return e;
    return (this.failureBy = e());
  }

  push(payload: Uint8Array): PushResult {
    if (this.ended) return 'ended';
    const cost = payload.length + DATA_FRAME_COST_BYTES;
    if (cost > this.allowed) return 'window-exceeded';
    this.allowed -= cost;
    if (this.abandoned || this.failureBy !== undefined) return 'ok';
    if (this.discard) {
      this.credit(cost);
      return 'ok';
    }
    const chunk = payload.length * PIN_RATIO_MAX < payload.buffer.byteLength ? Uint8Array.prototype.slice.call(payload) : payload;
    const waiter = this.waiter;
    if (waiter !== undefined) {
      this.waiter = undefined;
      this.held = cost;
      waiter.resolve({ value: chunk, done: false });
    } else {
      this.queue.push(chunk);
    }
    return 'ok';
  }

  /** The sender finished: iteration ends after the queued chunks. */
  end(): void {
    this.ended = true;
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.resolve({ value: undefined, done: true });
  }

  /** The call ended: the reader gets `error`, queued chunks are dropped. */
  fail(error: LazyError): void {
    if (this.failureBy !== undefined) return;
    this.failureBy = error;
    if (this.queue.length > 0) {
      this.queue = [];
      this.head = 0;
    }
    const waiter = this.waiter;
    this.waiter = undefined;
    if (waiter !== undefined) waiter.reject(this.failure);
  }

  /**
   * The next queued chunk at once, as next() would give it, or undefined when none is queued
   * (then next() waits). A socket read often brings several chunks: taking them this way costs
   * no promise each.
   */
  take(): Uint8Array | undefined {
    const chunk = this.queue[this.head];
    if (chunk === undefined) return undefined;
    this.credit(this.held);
    this.head++;
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    }
    this.held = chunk.length + DATA_FRAME_COST_BYTES;
    return chunk;
  }

  next(): Promise<IteratorResult<Uint8Array>> {
    const chunk = this.take();
    if (chunk !== undefined) return Promise.resolve({ value: chunk, done: false });
    this.credit(this.held);
    this.held = 0;
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.ended || this.abandoned) return Promise.resolve({ value: undefined, done: true });
    assert(this.waiter === undefined, 'an RPC input stream has one reader at a time');
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  /** The reader stopped early: later payloads are dropped. */
  return(): Promise<IteratorResult<Uint8Array>> {
    this.abandoned = true;
    this.queue = [];
    this.head = 0;
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  private credit(cost: number): void {
    if (cost === 0 || this.abandoned || this.failureBy !== undefined || this.ended) return;
    this.unreported += cost;
    if (this.unreported < Math.max(1, Math.floor(this.window / 4))) return;
    this.allowed += this.unreported;
    this.wire.send({ kind: 'credit', id: this.id, bytes: this.unreported });
    this.unreported = 0;
  }
}

/** ctx.input of a call that streams nothing. */
export const EMPTY_INPUT: AsyncIterable<Uint8Array> = Object.freeze({
  [Symbol.asyncIterator]: (): AsyncIterator<Uint8Array> => ({ next: () => Promise.resolve({ value: undefined, done: true }) }),
});
