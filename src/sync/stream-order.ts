// The sequence rules a stream satisfies on its own, without the dataset: a pure state machine fed
// one record at a time. StreamEncoder runs it with EINVAL (a sender never writes a stream a
// receiver would refuse), StreamDecoder with EPROTO. It keeps O(1) state: no per-object sets.
//
// Checked here:
//   - BEGIN comes first and only once; END comes last; nothing follows END; END.toGuid = BEGIN.toGuid.
//   - WRITE and FREE name the current object: the one of the latest OBJECT record since BEGIN or
//     the latest SNAPSHOT, and not freed since by FREEOBJECTS. A resumed stream (BEGIN.resumeObject
//     > 0) may, before its first OBJECT record, WRITE and FREE any object >= resumeObject.
//   - SNAPSHOT only in streams with StreamFeature.snapshots; its txg is above fromTxg, below toTxg
//     and above the previous SNAPSHOT's; its guid differs from toGuid, fromGuid and the previous
//     SNAPSHOT's; its dataset is BEGIN.toName's.
// Left to the receiver, which checks them against the dataset: object types and checksum kinds it
// can create, offsets against block and object sizes, OBJECT/FREEOBJECTS order and overlap, that
// the from snapshot exists, that a resume point matches its partial state.
//
// The END checksum is StreamDecoder's (it needs the bytes); everything else about END is here.

import { mpError } from '../lib/index.js';
import type { ErrorCode } from '../lib/index.js';
import { RECORD_KIND_LABELS, RecordKind, StreamFeature } from './stream-record.js';
import type { BeginRecord, SnapshotRecord, StreamRecord } from './stream-record.js';

export type OrderCode = Extract<ErrorCode, 'EPROTO' | 'EINVAL'>;

export class StreamOrder {
  private beginRecord: BeginRecord | undefined;
  private endSeen = false;
  /** Object WRITE and FREE may name; undefined when none. */
  private current: number | undefined;
  private objectSeen = false;
  private lastSnapshot: { readonly txg: number; readonly guid: bigint } | undefined;

  constructor(private readonly code: OrderCode) {}

  /** The stream's BEGIN, once accepted. */
  get begin(): BeginRecord | undefined {
    return this.beginRecord;
  }

  get ended(): boolean {
    return this.endSeen;
  }

  /** Accepts `r` as the next record, or throws (code given at construction) and changes nothing. */
  accept(r: StreamRecord): void {
    if (this.endSeen) this.fail(`${RECORD_KIND_LABELS[r.kind]} record after END`, {});
    const begin = this.beginRecord;
    if (begin === undefined) {
      if (r.kind !== RecordKind.begin) this.fail('stream does not start with BEGIN', { record: RECORD_KIND_LABELS[r.kind] });
      this.beginRecord = r;
      return;
    }
    switch (r.kind) {
      case RecordKind.begin:
        return this.fail('a second BEGIN record', {});
      case RecordKind.object:
        this.current = r.object;
        this.objectSeen = true;
        return;
      case RecordKind.freeObjects:
        if (this.current !== undefined && this.current >= r.first && this.current - r.first < r.count) {
          this.current = undefined;
        }
        return;
      case RecordKind.write:
      case RecordKind.free:
        return this.checkObject(begin, r.object, RECORD_KIND_LABELS[r.kind]);
      case RecordKind.snapshot:
        this.checkSnapshot(begin, r);
        this.lastSnapshot = { txg: r.txg, guid: r.guid };
        this.current = undefined;
        return;
      case RecordKind.end:
        if (r.toGuid !== begin.toGuid) {
          this.fail('END.toGuid differs from BEGIN.toGuid', { toGuid: String(r.toGuid), beginToGuid: String(begin.toGuid) });
        }
        this.endSeen = true;
        return;
    }
  }

  private checkObject(begin: BeginRecord, object: number, label: string): void {
    if (object === this.current) return;
    const resuming = begin.resumeObject > 0 && !this.objectSeen && object >= begin.resumeObject;
    if (resuming) return;
    this.fail(`${label} for object ${object} without its OBJECT record`, { record: label, object,
      current: this.current ?? null });
  }

  private checkSnapshot(begin: BeginRecord, r: SnapshotRecord): void {
    const details = { record: 'SNAPSHOT', name: r.name, txg: r.txg };
    if ((begin.features & StreamFeature.snapshots) === 0) {
      this.fail('SNAPSHOT record in a stream without the snapshots feature', details);
    }
    const after = this.lastSnapshot?.txg ?? begin.fromTxg;
    if (r.txg <= after || r.txg >= begin.toTxg) {
      this.fail(`SNAPSHOT.txg ${r.txg} is not between ${after} and ${begin.toTxg}`, details);
    }
    if (r.guid === begin.toGuid || r.guid === begin.fromGuid || r.guid === this.lastSnapshot?.guid) {
      this.fail('SNAPSHOT.guid repeats a guid of this stream', details);
    }
    if (datasetOf(r.name) !== datasetOf(begin.toName)) {
      this.fail(`SNAPSHOT.name ${r.name} is not a snapshot of ${datasetOf(begin.toName)}`, details);
    }
  }

  private fail(message: string, details: Record<string, unknown>): never {
    throw mpError(this.code, message, details);
  }
}

/** The dataset part of a `dataset@snapshot` name (the codec has parsed it already). */
function datasetOf(snapshotName: string): string {
  return snapshotName.slice(0, snapshotName.indexOf('@'));
}
