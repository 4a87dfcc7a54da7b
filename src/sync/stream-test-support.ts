// Test helpers for the stream codec: msgpack-encodes arbitrary arrays, so tests can build records
// the encoder would refuse (bad magic, wrong types, extra fields). Imports msgpackr's plain-JS build
// the way stream-format.ts does, so tests never load the optional native extractor either.

import type { Options as MsgpackOptions, Packr } from 'msgpackr';
import * as msgpackPure from 'msgpackr/pack';

const msgpack = msgpackPure as unknown as { readonly Packr: new (options: MsgpackOptions) => Packr };
const packr = new msgpack.Packr({ useRecords: false, moreTypes: false });
const packrMore = new msgpack.Packr({ useRecords: false, moreTypes: true });

/** `value` as msgpack bytes (a copy the caller owns); `moreTypes` allows msgpackr's extensions. */
export function rawRecord(value: unknown, moreTypes = false): Uint8Array {
  const packed = (moreTypes ? packrMore : packr).pack(value);
  const out = new Uint8Array(packed.length);
  out.set(packed);
  return out;
}
