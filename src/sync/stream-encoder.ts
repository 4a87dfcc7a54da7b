// Records -> frames for byte streams (pipes, files). A frame is a u32 little-endian length and
// that many bytes of one encoded record. The encoder keeps the running checksum over the encoded
// records (StreamChecksum; length prefixes excluded, so the same records carried one per message
// checksum the same) and writes END with it.
//
// Invariants: the frames it returns form a stream StreamDecoder accepts (a WRITE its maker marked
// verified, stream-record.ts, is taken on trust: its data is not hashed again); a record it
// refuses (EINVAL, or ECKSUM for a WRITE whose data no longer matches its checksum) changes
// nothing, and the caller may go on. Used by the sender; one encoder per stream.

import { assert, concatBytes, limits, mpError } from '../lib/index.js';
import { StreamChecksum, encodeRecord, encodeWriteParts } from './stream-format.js';
import { RecordKind, emptyRecordCounts, recordKindName } from './stream-record.js';
import type { EndRecord, RecordCounts, StreamRecord } from './stream-record.js';
import { StreamOrder } from './stream-order.js';

/** Bytes of a frame's length prefix. */
export const FRAME_PREFIX_BYTES = 4;

export class StreamEncoder {
  private readonly order = new StreamOrder('EINVAL');
  private readonly running = new StreamChecksum();
  private readonly recordCounts = emptyRecordCounts();
  private frameBytes = 0;

  /** Frames written so far, prefixes included: the stream's length up to here. */
  get encodedBytes(): number {
    return this.frameBytes;
  }

  get counts(): Readonly<RecordCounts> {
    return this.recordCounts;
  }

  get ended(): boolean {
    return this.order.ended;
  }

  /** The frame of `r` (a new array the caller owns). END comes from end(), not from here. */
  encode(r: StreamRecord): Uint8Array {
    const parts = this.encodeParts(r);
    return parts.length === 1 && parts[0] !== undefined ? parts[0] : concatBytes(parts);
  }

  /**
   * The frame of `r` as parts to write back to back. A WRITE's data is not copied: its frame is
   * [length prefix and head, r.data, checksum field], so the caller must keep r.data unchanged
   * until the parts are written. Other records are one new array the caller owns.
   */
  encodeParts(r: StreamRecord): readonly Uint8Array[] {
    if (r.kind === RecordKind.end) throw mpError('EINVAL', 'END is written by StreamEncoder.end()', {});
    if (r.kind !== RecordKind.write) {
      const body = encodeRecord(r);
      this.order.accept(r);
      this.running.record(body);
      return [this.frame(r, body)];
    }
    const { head, tail } = encodeWriteParts(r);
    this.order.accept(r);
    const bodyBytes = head.length + r.data.length + tail.length;
    assert(bodyBytes <= limits.streamRecordBytesMax);
    const first = new Uint8Array(FRAME_PREFIX_BYTES + head.length);
    new DataView(first.buffer).setUint32(0, bodyBytes, true);
    first.set(head, FRAME_PREFIX_BYTES);
    this.running.write(head, r, tail);
    this.frameBytes += FRAME_PREFIX_BYTES + bodyBytes;
    this.recordCounts.write++;
    return [first, r.data, tail];
  }

  /** The END frame: the running checksum of everything before it and BEGIN's toGuid. */
  end(): Uint8Array {
    const begin = this.order.begin;
    if (begin === undefined) throw mpError('EINVAL', 'stream does not start with BEGIN', { record: 'END' });
    if (this.order.ended) throw mpError('EINVAL', 'END record after END', {});
    const r: EndRecord = { kind: RecordKind.end, checksum: this.running.digest(), toGuid: begin.toGuid };
    const body = encodeRecord(r);
    this.order.accept(r);
    return this.frame(r, body);
  }

  private frame(r: StreamRecord, body: Uint8Array): Uint8Array {
    assert(body.length > 0 && body.length <= limits.streamRecordBytesMax);
    const out = new Uint8Array(FRAME_PREFIX_BYTES + body.length);
    new DataView(out.buffer).setUint32(0, body.length, true);
    out.set(body, FRAME_PREFIX_BYTES);
    this.frameBytes += out.length;
    this.recordCounts[recordKindName(r.kind)]++;
    return out;
  }
}
