// Bad on-disk bytes of the dataset layer and the durable log: a dataset record, a deadlist entry
// array and a log extent table that do not follow the format are EPROTO, never a wrong answer.
import { describe, expect, it } from 'vitest';
import { DATASET_RECORD_BYTES, DatasetKind, type DatasetRecord, decodeDatasetRecord, encodeDatasetRecord } from './dataset-record.js';
import { EXTENT_ENTRY_BYTES, decodeExtents, encodeExtents } from './log-format.js';
import { codeOf } from './test-support.js';
import { HOLE, guid, objectId, txg } from './types.js';

const RECORD: DatasetRecord = {
  root: HOLE,
  kind: DatasetKind.head,
  createdTxg: txg(3),
  guid: guid(77n),
  creationMs: 1_700_000_000_000,
  parent: objectId(2),
  prevSnap: objectId(0),
  prevSnapTxg: txg(0),
  nextSnap: objectId(0),
  deadlist: objectId(4),
  children: objectId(5),
  snapshots: objectId(6),
  bookmarks: objectId(7),
  props: objectId(8),
  holds: objectId(0),
  origin: objectId(0),
  clones: 0,
  referencedBytes: 4096,
  uniqueBytes: 4096,
  snapUsedBytes: 0,
  appliedTid: 9n,
  intentLog: objectId(0),
  ownBytes: 4096,
};

describe('dataset records', () => {
  it('round-trip', () => {
    expect(decodeDatasetRecord(encodeDatasetRecord(RECORD), {})).toEqual(RECORD);
  });

  it('refuse short, kindless, guidless and out-of-range records with EPROTO', async () => {
    const good = encodeDatasetRecord(RECORD);
    const kind = good.slice();
    kind[128] = 9;
    const noGuid = encodeDatasetRecord({ ...RECORD, guid: guid(1n) });
    noGuid.fill(0, 128 + 2 * 8, 128 + 3 * 8);
    const huge = good.slice();
    huge.fill(0xff, 128 + 16 * 8, 128 + 17 * 8); // referencedBytes past 2^53
    for (const bad of [good.subarray(0, DATASET_RECORD_BYTES - 1), kind, noGuid, huge]) {
      expect(await codeOf(() => decodeDatasetRecord(bad, {}))).toBe('EPROTO');
    }
  });
});

describe('log extent tables', () => {
  it('round-trip, and refuse partial or invalid entries with EPROTO', async () => {
    const extents = [
      { vdev: 0, offset: 1 << 20, bytes: 1 << 20, gen: 1n, txg: txg(5) },
      { vdev: 1, offset: 4 << 20, bytes: 1 << 20, gen: 2n, txg: txg(6) },
    ];
    const table = encodeExtents(extents);
    expect(decodeExtents(table, {})).toEqual(extents);
    const unaligned = table.slice();
    unaligned[8] = 1; // offset 1 MiB + 1
    const noGen = encodeExtents([{ ...extents[0]!, gen: 0n }]);
    for (const bad of [table.subarray(0, EXTENT_ENTRY_BYTES + 3), unaligned, noGen]) {
      expect(await codeOf(() => decodeExtents(bad, {}))).toBe('EPROTO');
    }
  });
});
