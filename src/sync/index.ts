// The public surface of src/sync: send and receive streams. Other layers import only this file.
export { encodeRecord, decodeRecord, FIELDS } from './stream-format.js';
export { StreamEncoder, FRAME_PREFIX_BYTES } from './stream-encoder.js';
export { StreamDecoder } from './stream-decoder.js';
export type { StreamDecoderOptions } from './stream-decoder.js';
export { StreamOrder } from './stream-order.js';
export {
  RecordKind,
  RECORD_KIND_LABELS,
  STREAM_CHECKSUM_BYTES,
  STREAM_FEATURES_KNOWN,
  STREAM_MAGIC,
  STREAM_VERSION,
  StreamFeature,
  emptyRecordCounts,
  makeWriteRecord,
  recordKindName,
} from './stream-record.js';
export type {
  BeginRecord,
  EndRecord,
  FreeObjectsRecord,
  FreeRecord,
  ObjectRecord,
  RecordCounts,
  RecordKindName,
  SnapshotRecord,
  StreamRecord,
  WriteRecord,
} from './stream-record.js';
export { beginRecord, changeRecords, planSend } from './send.js';
export type { SendOptions, SendPlan } from './send.js';
export { receiveRecords } from './receive.js';
export type { ReceiveOptions, ReceiveProgress, ReceiveResult } from './receive.js';
export { decodeResumeToken, encodeResumeToken, planResume } from './resume-token.js';
export type { ResumeToken } from './resume-token.js';
export { estimateSend, packageSnapshots, receiveStream, sendPackage, sendPlan, sendStream, sendStreamParts } from './stream.js';
export type { ReceiveStreamOptions, StreamSendOptions } from './stream.js';
