// The public surface of src/lib: primitives every other layer builds on.
export { assert, assertUint, unreachable, AssertionFailure } from './assert.js';
export { ERROR_CODES, MirrorpoolError, mpError, hasCode, isErrorCode, renderErrorsDoc } from './errors.js';
export type { ErrorCode, ErrorDetails } from './errors.js';
export { limits } from './limits.js';
export { bytesEqual, concatBytes, copyBytes, fromHex, toHex, skipBytes, readU64, writeU64, readU64Number, writeU64Number } from './bytes.js';
export { Fletcher4, fletcher4, FLETCHER4_DIGEST_BYTES } from './fletcher4.js';
export {
  CHECKSUM_BYTES,
  ChecksumKind,
  checksum,
  checksumKindFromId,
  checksumKindFromName,
  checksumMatches,
  sha256,
} from './checksum.js';
export type { ChecksumName } from './checksum.js';
export type { Random } from './random.js';
export { RandomBase, SystemRandom } from './random.js';
export { Prng } from './prng.js';
export type { Clock, SimClockOptions } from './clock.js';
export { SystemClock, SimClock, idle } from './clock.js';
export type { Disk } from './disk.js';
export { checkDiskRange, checkDiskSize, writeGathered } from './disk.js';
export { FileDisk } from './file-disk.js';
export type { FileDiskOptions } from './file-disk.js';
export { SimDisk } from './sim-disk.js';
export type { CrashMode, CrashReport, DiskFaultRule, DiskFaultEffect, DiskOp, SimDiskOptions } from './sim-disk.js';
export { PowerCutDisk, PowerSwitch } from './power-cut.js';
export { Gate } from './gate.js';
export { SpareBuffers } from './spare-buffers.js';
