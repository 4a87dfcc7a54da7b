import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type ErrorCode, fletcher4, fromHex, hasCode, toHex } from '../lib/index.js';
import type { Range } from './range-tree.js';
import {
  RECORD_HEADER_BYTES, SECTOR_BYTES, decodeRecordHeader, decodeRecordPayload, decodeSlotHeader, encodeRecord,
  encodeSlotHeader, forEachMapRun, recordBodyIntact, recordHeaderIntact, setMapRun, slotHeaderIntact, spaceMapLayout,
} from './space-map-format.js';

const MS = 1 << 20;
const L = spaceMapLayout(256 * 1024);
const RESERVED = L.reservedBytes / SECTOR_BYTES;
const where = { test: true };

function expectCode(f: () => unknown, code: ErrorCode): void {
  try {
    f();
  } catch (e) {
    if (hasCode(e, code)) return;
    throw e;
  }
  throw new Error(`expected ${code}`);
}

/** Ascending, disjoint, sector-aligned ranges of the allocatable sectors from a list of (gap, len). */
function rangesArb(): fc.Arbitrary<Range[]> {
  return fc.array(fc.tuple(fc.nat(40), fc.integer({ min: 1, max: 30 })), { maxLength: 12 }).map((pairs) => {
    const out: Range[] = [];
    let at = RESERVED;
    for (const [gap, len] of pairs) {
      const s = at + gap;
      if (s + len > L.sectors) break;
      out.push({ start: MS + s * SECTOR_BYTES, size: len * SECTOR_BYTES });
      at = s + len + 1;
    }
    return out;
  });
}

describe('space map format', () => {
  it('lays out two slots of header, 2-bit map and log at the metaslab start', () => {
    expect(L).toEqual({ msBytes: 262144, sectors: 512, mapBytes: 512, logBytes: 4096, slotBytes: 5120, reservedBytes: 10240 });
    expect(spaceMapLayout(2 ** 30)).toMatchObject({ mapBytes: 512 * 1024, logBytes: 512 * 1024 });
  });

  it('encodes a record to the golden bytes', () => {
    const r = encodeRecord(MS, 5, 2, 0, {
      allocs: [{ start: MS + 20 * 512, size: 3 * 512 }, { start: MS + 300 * 512, size: 512 }],
      frees: [{ start: MS + 40 * 512, size: 2 * 512 }],
    });
    expect(r.length).toBe(SECTOR_BYTES);
    expect(toHex(r.subarray(0, 140))).toBe(
      '4c53504d010000000100000002000000010000000700000005000000000000000200000000000000152b970200000000' +
      'dfffadf800000000908d901c2f000000708aa4ed02060000849cca5202000000e185fea50d000000fae4c24e4c000000' +
      'a67d7cd895010000000000000000000000000000000000000000000000000000140395020128020000000000',
    );
  });

  it('encodes a slot header to the golden bytes', () => {
    const h = encodeSlotHeader(L, { generation: 3, baseTxg: 9, mapChecksum: new Uint8Array(32).fill(7) });
    expect(toHex(h.subarray(0, 104))).toBe(
      '4d53504d0100000003000000000000000900000000000000000004000000000000020000001000000707070707070707' +
      '070707070707070707070707070707070707070707070707929d8c8500000000257dd36c0600000099332ef136000000' +
      'f32a7e5e61010000',
    );
    expect(slotHeaderIntact(h)).toBe(true);
    expect(decodeSlotHeader(L, h, where)).toMatchObject({ generation: 3, baseTxg: 9 });
    expect(fromHex(toHex(h)).every((b, i) => b === h[i])).toBe(true);
  });

  it('round-trips any record', () => {
    fc.assert(
      fc.property(rangesArb(), rangesArb(), fc.integer({ min: 1, max: 2 ** 40 }), (allocs, frees, t) => {
        const r = encodeRecord(MS, t, 7, 0, { allocs, frees });
        expect(recordHeaderIntact(r, 7) && recordBodyIntact(r)).toBe(true);
        expect(recordHeaderIntact(r, 8)).toBe(false);
        const h = decodeRecordHeader(r, where);
        expect(h).toMatchObject({ txg: t, generation: 7, allocCount: allocs.length, freeCount: frees.length, sectors: r.length / 512 });
        expect(decodeRecordPayload(L, MS, h, r, where)).toEqual({ allocs, frees });
      }),
    );
  });

  it('rejects payloads that leave the allocatable sectors or have trailing bytes with EPROTO', () => {
    const inReserved = encodeRecord(MS, 1, 1, 0, { allocs: [{ start: MS, size: 512 }], frees: [] });
    expectCode(() => decodeRecordPayload(L, MS, decodeRecordHeader(inReserved, where), inReserved, where), 'EPROTO');
    const past = encodeRecord(MS, 1, 1, 0, { allocs: [{ start: MS + 511 * 512, size: 1024 }], frees: [] });
    expectCode(() => decodeRecordPayload(L, MS, decodeRecordHeader(past, where), past, where), 'EPROTO');
    const ok = encodeRecord(MS, 1, 1, 0, { allocs: [{ start: MS + 100 * 512, size: 512 }], frees: [] });
    const h = decodeRecordHeader(ok, where);
    expectCode(() => decodeRecordPayload(L, MS, { ...h, payloadBytes: h.payloadBytes + 1 }, ok, where), 'EPROTO');
    expectCode(() => decodeRecordPayload(L, MS, { ...h, allocCount: 2 }, ok, where), 'EPROTO');
  });

  it('rejects a record header of another version with EPROTO', () => {
    const r = encodeRecord(MS, 1, 1, 0, { allocs: [], frees: [] });
    r[4] = 9;
    expectCode(() => decodeRecordHeader(r, where), 'EPROTO');
    expect(RECORD_HEADER_BYTES).toBe(128);
  });

  it('gives a zero map checksum to an all-free map only (a header alone names a free map)', () => {
    expect(fletcher4(new Uint8Array(L.mapBytes))).toEqual(new Uint8Array(32));
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(L.sectors - 1), fc.integer({ min: 1, max: 3 })), { minLength: 1, maxLength: 4 }), (paints) => {
        const map = new Uint8Array(L.mapBytes);
        for (const [first, v] of paints) setMapRun(map, first, 1, v);
        expect(fletcher4(map).some((b) => b !== 0)).toBe(true);
      }),
    );
  });

  it('paints and reads back map runs like a naive array of states', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(L.sectors - 1), fc.integer({ min: 1, max: 64 }), fc.integer({ min: 0, max: 3 }))), (paints) => {
        const map = new Uint8Array(L.mapBytes);
        const naive = new Array<number>(L.sectors).fill(0);
        for (const [first, n, v] of paints) {
          const count = Math.min(n, L.sectors - first);
          setMapRun(map, first, count, v);
          naive.fill(v, first, first + count);
        }
        // The map as read at import is a view into a larger buffer, at any alignment.
        for (const at of [0, 1, 4]) {
          const outer = new Uint8Array(at + map.length + 3);
          outer.set(map, at);
          const seen = new Array<number>(L.sectors).fill(0);
          let prev = { v: 0, end: -1 };
          forEachMapRun(outer.subarray(at, at + map.length), L.sectors, (v, first, count) => {
            expect(v).not.toBe(0);
            expect(first > prev.end || v !== prev.v, 'runs are maximal').toBe(true);
            seen.fill(v, first, first + count);
            prev = { v, end: first + count };
          });
          expect(seen).toEqual(naive);
        }
      }),
    );
  });
});
