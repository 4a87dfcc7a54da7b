// The gate in front of msgpackr on the decode side. A stream record is one msgpack array of 1 to 15
// scalars: integers (fixint, uint/int 8..64), float64 (msgpack's form of an integer above 2^32),
// ASCII strings and binary blobs. scanRecordBytes checks the bytes hold exactly that, with every
// length inside the buffer and nothing after the array, before msgpackr sees them. So untrusted
// stream bytes never reach msgpackr's extension types (Date, RegExp, Error, typed arrays, records),
// maps, nested arrays, or its paths for truncated or trailing input.
//
// Called by decodeRecord (stream-format.ts) only.

import { mpError } from '../lib/index.js';

/** Most fields a record may have (BEGIN has 12): a msgpack fixarray holds at most 15. */
const FIELDS_MAX = 15;

function fail(pos: number, why: string): never {
  throw mpError('EPROTO', `stream record: ${why} at byte ${pos}`, { offset: pos });
}

/** Throws EPROTO unless `bytes` is exactly one msgpack array of allowed scalars. */
export function scanRecordBytes(bytes: Uint8Array): void {
  const head = bytes[0];
  if (head === undefined || head < 0x91 || head > 0x90 + FIELDS_MAX) {
    fail(0, `a record is a msgpack array of 1 to ${FIELDS_MAX} fields`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 1;
  for (let i = 0; i < (head & 0x0f); i++) pos = skipScalar(bytes, view, pos);
  if (pos !== bytes.length) fail(pos, `${bytes.length - pos} bytes after the record`);
}

/** Returns the position after the scalar at `pos`. */
function skipScalar(bytes: Uint8Array, view: DataView, pos: number): number {
  const type = bytes[pos];
  if (type === undefined) fail(pos, 'truncated record');
  if (type <= 0x7f || type >= 0xe0) return pos + 1;
  if (type >= 0xa0 && type <= 0xbf) return skipText(bytes, pos, 1, type & 0x1f);
  switch (type) {
    case 0xcc:
    case 0xd0:
      return within(bytes, pos, 2);
    case 0xcd:
    case 0xd1:
      return within(bytes, pos, 3);
    case 0xce:
    case 0xd2:
      return within(bytes, pos, 5);
    case 0xcb:
    case 0xcf:
    case 0xd3:
      return within(bytes, pos, 9);
    case 0xc4:
      return within(bytes, pos, 2 + view.getUint8(within(bytes, pos, 2) - 1));
    case 0xc5:
      return within(bytes, pos, 3 + view.getUint16(within(bytes, pos, 3) - 2));
    case 0xc6:
      return within(bytes, pos, 5 + view.getUint32(within(bytes, pos, 5) - 4));
    case 0xd9:
      return skipText(bytes, pos, 2, view.getUint8(within(bytes, pos, 2) - 1));
    case 0xda:
      return skipText(bytes, pos, 3, view.getUint16(within(bytes, pos, 3) - 2));
    case 0xdb:
      return skipText(bytes, pos, 5, view.getUint32(within(bytes, pos, 5) - 4));
    default:
      return fail(pos, `msgpack type 0x${type.toString(16)} is not allowed in a stream record`);
  }
}

/** pos + size, if that many bytes exist from pos. */
function within(bytes: Uint8Array, pos: number, size: number): number {
  if (size > bytes.length - pos) fail(pos, 'truncated record');
  return pos + size;
}

/** Text fields are printable ASCII: names and the magic need nothing else. */
function skipText(bytes: Uint8Array, pos: number, headBytes: number, textBytes: number): number {
  const end = within(bytes, pos, headBytes + textBytes);
  for (let i = pos + headBytes; i < end; i++) {
    const c = bytes[i] ?? 0;
    if (c < 0x20 || c > 0x7e) fail(i, 'text fields hold printable ASCII only');
  }
  return end;
}
