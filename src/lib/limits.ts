// Every bound of the system in one place. Going over a bound means backpressure or EBUSY, never
// unbounded growth. Callers import the constant; tests may shrink bounds through options, never
// by editing these values.

export const limits = {
  /** Disk I/O unit: offsets and lengths of every Disk read/write are multiples of this. */
  sectorBytes: 512,
  /** Largest single Disk read or write. */
  diskIoBytesMax: 16 * 1024 * 1024,
  /** Largest disk (vdev) the engine addresses: offsets stay exact in a JS number. */
  diskBytesMax: Number.MAX_SAFE_INTEGER - (Number.MAX_SAFE_INTEGER % 512),
  /** Chunk the fletcher-4 kernel processes per call (bytes copied into WebAssembly memory). */
  fletcherChunkBytes: 256 * 1024,
  /** Largest simulated disk: SimDisk keeps two copies in memory. */
  simDiskBytesMax: 1024 * 1024 * 1024,
  /** Largest WRITE payload in a send stream: one block of the largest block size. */
  streamWriteBytesMax: 1024 * 1024,
  /** Largest encoded send-stream record (one frame's body): a full WRITE plus room for its fields. */
  streamRecordBytesMax: 1024 * 1024 + 64 * 1024,
} as const;
