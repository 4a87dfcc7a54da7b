// Reused buffers for a producer that hands its buffers to a consumer and learns when the consumer
// is done with them: a receive gathering split frames (sync/stream.ts), a send reading runs of
// blocks (sync/send.ts), recv reading its stdin (node/process-stdio.ts). On the VMs this runs on, touching fresh memory costs more than the work
// done in it (reading 1 GiB from the page cache took 1.08 s into fresh 1 MiB buffers, 0.22 s into
// reused ones), so such producers take their buffers here and give them back.
//
// take() hands out a view of exactly the bytes asked for, of a spare buffer large enough (the
// first one found) or of a new one, sized up to a step so that requests of nearly the same size
// share buffers. give() takes back a view take() handed out, once nothing references it; spares
// past the byte bound are dropped (left to the garbage collector).

import { assert } from './assert.js';

export class SpareBuffers {
  private readonly spare: ArrayBuffer[] = [];
  private spareBytes = 0;

  constructor(
    /** Bytes of spare buffers kept at most. */
    private readonly maxBytes: number,
    /** New buffers are sized in multiples of this. */
    private readonly stepBytes = 4096,
  ) {
    assert(Number.isSafeInteger(maxBytes) && maxBytes >= 0 && Number.isSafeInteger(stepBytes) && stepBytes > 0, 'SpareBuffers: bad bounds');
  }

  /** A buffer of exactly `bytes` whose contents are garbage: the caller overwrites what it reads. */
  take(bytes: number): Uint8Array {
    const i = this.spare.findIndex((b) => b.byteLength >= bytes);
    if (i < 0) return new Uint8Array(new ArrayBuffer(Math.ceil(bytes / this.stepBytes) * this.stepBytes), 0, bytes);
    const [buffer] = this.spare.splice(i, 1);
    assert(buffer !== undefined);
    this.spareBytes -= buffer.byteLength;
    return new Uint8Array(buffer, 0, bytes);
  }

  /** Gives back a view take() returned; nothing may reference it any more. */
  give(view: Uint8Array): void {
    const buffer = view.buffer as ArrayBuffer;
    assert(view.byteOffset === 0, 'SpareBuffers: not a view take() handed out');
    if (this.spareBytes + buffer.byteLength > this.maxBytes) return;
    assert(!this.spare.includes(buffer), 'SpareBuffers: a buffer given back twice');
    this.spare.push(buffer);
    this.spareBytes += buffer.byteLength;
  }
}
