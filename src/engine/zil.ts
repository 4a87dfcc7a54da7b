// A dataset's intent log (ZIL): the keyed changes a synchronous caller needs durable before the
// next txg sync, as records of a DurableLog. A change and its record are made in one turn of the
// log order (one at a time per dataset, in memory only — the fsync is shared), so the records of
// one txg are in the order the changes were made. Once txg t is durable, records of txgs <= t are
// dead and the log is truncated past them. Import replays the live records of txgs that did not
// reach disk, sorted by (txg, seq), in one new txg that also truncates the log (keyed.ts).
//
// Record (little-endian): 0 op u8 | 1 reserved | 2 key length u16 | 4 reserved u32 | 8 txg u64 |
//   16 argument u64 (put: object number; write: offset; truncate: size) | 24 key | data (write).

import { mpError, readU64Number, writeU64Number } from '../lib/index.js';
import type { DurableLog } from './durable-log.js';
import { type Txg, txg } from './types.js';

export const ZilOp = { put: 1, write: 2, truncate: 3, remove: 4 } as const;
export type ZilOp = (typeof ZilOp)[keyof typeof ZilOp];

const HEADER_BYTES = 24;
const KEY_BYTES_MAX = 1024;

export interface ZilRecord {
  readonly op: ZilOp;
  readonly txg: Txg;
  readonly key: string;
  readonly arg: number;
  readonly data: Uint8Array;
}

const utf8 = new TextEncoder();

export function encodeZilRecord(r: ZilRecord): Uint8Array {
  const key = utf8.encode(r.key);
  const out = new Uint8Array(HEADER_BYTES + key.length + r.data.length);
  const view = new DataView(out.buffer);
  out[0] = r.op;
  view.setUint16(2, key.length, true);
  writeU64Number(out, 8, r.txg);
  writeU64Number(out, 16, r.arg);
  out.set(key, HEADER_BYTES);
  out.set(r.data, HEADER_BYTES + key.length);
  return out;
}

export function decodeZilRecord(bytes: Uint8Array, where: Record<string, unknown>): ZilRecord {
  if (bytes.length < HEADER_BYTES) throw mpError('EPROTO', 'intent log record is too short', where);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const op = bytes[0] ?? 0;
  const keyBytes = view.getUint16(2, true);
  if (op < ZilOp.put || op > ZilOp.remove) throw mpError('EPROTO', `intent log record has op ${op}`, where);
  if (keyBytes === 0 || keyBytes > KEY_BYTES_MAX || HEADER_BYTES + keyBytes > bytes.length) {
    throw mpError('EPROTO', 'intent log record has a bad key length', where);
  }
  const data = bytes.slice(HEADER_BYTES + keyBytes);
  if (op !== ZilOp.write && data.length > 0) throw mpError('EPROTO', 'intent log record carries data it should not', where);
  return {
    op: op as ZilOp,
    txg: txg(readU64Number(bytes, 8)),
    key: new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(HEADER_BYTES, HEADER_BYTES + keyBytes)),
    arg: readU64Number(bytes, 16),
    data,
  };
}

export class Zil {
  readonly log: DurableLog;
  private order: Promise<void> = Promise.resolve();
  /** Records not yet known dead, in log order. */
  private readonly live: { seq: number; txg: Txg }[] = [];

  constructor(log: DurableLog) {
    this.log = log;
  }

  /** Most data bytes one write record may carry. */
  get dataBytesMax(): number {
    return this.log.recordBytesMax - HEADER_BYTES - KEY_BYTES_MAX;
  }

  /**
   * Runs `change` (an in-memory change in some txg) and appends the record it returns, in one
   * turn of the log order. Returns the change's result and the record's seq.
   */
  async ordered<T>(change: () => Promise<{ result: T; record: ZilRecord }>): Promise<{ result: T; seq: number }> {
    const previous = this.order;
    let release = (): void => undefined;
    this.order = new Promise<void>((resolve) => (release = resolve));
    await previous;
    try {
      const { result, record } = await change();
      const seq = this.log.append(encodeZilRecord(record));
      this.live.push({ seq, txg: record.txg });
      return { result, seq };
    } finally {
      release();
    }
  }

  /** Resolves once the record `seq` and all before it are durable. */
  commit(seq: number): Promise<void> {
    return this.log.waitDurable(seq);
  }

  /** Txg `t` is durable: records of txgs up to it are dead. */
  txgSynced(t: Txg): void {
    while (this.live.length > 0 && (this.live[0]?.txg ?? Infinity) <= t) this.live.shift();
    this.log.truncate(this.live[0]?.seq ?? this.log.endSeq);
  }
}
