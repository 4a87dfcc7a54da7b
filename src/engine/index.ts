// The public surface of src/engine: one node's pool engine. Other layers import only this file.
export { Pool } from './pool.js';
export type { LeafInput, PoolEnv, PoolStatus, PoolTuning } from './pool.js';
export type { TxHandle } from './txg.js';
export * as dmu from './dmu.js';
export type { Tx, CreateOptions, ObjectInfo } from './dmu.js';
export { ObjectSet, ObjsetType } from './objset.js';
export { ObjectType, BONUS_BYTES_MAX } from './dnode.js';
export { Zap, zapNumber, zapU64, zapKeyText, ZAP_KEY_BYTES_MAX, ZAP_VALUE_BYTES_MAX } from './zap.js';
export type { ZapEntry, ZapKey } from './zap.js';
export { readDiskLabels, readPool } from './label.js';
export type { PoolConfig, Uberblock } from './label.js';
export { traverseObjset } from './traverse.js';
export { BlockType, HOLE, isHole, guid, objectId, txg } from './types.js';
export type { BlockPointer, Dva, Guid, ObjectId, Txg } from './types.js';
export { MIRROR_CHILDREN_MAX } from './vdev.js';
export { TOP_VDEVS_MAX } from './blkptr.js';
