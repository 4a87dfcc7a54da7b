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

  // RPC transport (src/node/rpc). RpcLimits defaults; tests shrink them per connection.
  /** Largest websocket message accepted (ws maxPayload): 4 MiB of params or result plus header room. */
  rpcFrameBytesMax: 4 * 1024 * 1024 + 64 * 1024,
  /** Concurrent requests per connection; one more gets EBUSY at once. */
  rpcInflightMax: 64,
  /** Credit window of one stream direction: bytes a sender may have unconsumed at the receiver. */
  rpcStreamWindowBytes: 8 * 1024 * 1024,
  /** Time a new connection has to complete authentication. */
  rpcHandshakeTimeoutMs: 5_000,
  /** Deadline of a call that names none. */
  rpcDeadlineMsDefault: 60_000,
  /** Longest deadline a call may ask for. */
  rpcDeadlineMsMax: 24 * 60 * 60 * 1000,
  /**
   * Stream bytes per DATA frame: senders split larger writes (also bounded by the frame limit).
   * 128 KiB measured fastest on loopback: bigger messages cost the receiver fresh memory each.
   */
  rpcDataChunkBytes: 128 * 1024,
  /** Stream bytes one connection may have handed to its socket but not yet flushed. */
  rpcSendBufferedBytesMax: 4 * 1024 * 1024,
  /** Longest method name on the wire. */
  rpcMethodNameLengthMax: 128,
  /** Longest error message on the wire; longer ones are cut. */
  rpcErrorMessageLengthMax: 4096,
  /** Deepest nesting of params and results (arrays and maps). */
  rpcValueDepthMax: 64,
  /** Longest client token, in characters. */
  rpcTokenLengthMax: 1024,
  /**
   * Stream bytes per socket write: DATA frames are batched into one reused buffer of about this
   * size, as large as the raw peers' writes in bench/transport.bench.ts.
   */
  rpcSendBatchBytes: 1024 * 1024,
  /**
   * The same over TLS, where one batch at a time goes to the socket: TLS encrypts it at once and
   * the peer decrypts it from the kernel's buffer, so the less ciphertext between the two the
   * more of it is still in cache (wss:// on 127.0.0.1: one 256 KiB batch ~1.1x of a raw TLS
   * socket writing 1 MiB at a time, one 1 MiB batch ~0.89x, two ~0.72x; see DataWriter.ready).
   */
  rpcTlsSendBatchBytes: 256 * 1024,
  /**
   * Websocket frame size (headers included) of DATA over plain TCP; over TLS a frame is one TLS
   * record (16 KiB). A frame that spans two socket reads (64 KiB each) is joined into fresh memory
   * by the receiver: at 16 KiB one frame in four is, at 64 KiB every one (profiled: the joins took
   * 0.16 s per GiB at 16 KiB, 1.1 s at 64 KiB).
   */
  rpcPlainFrameBytes: 16 * 1024,

  // Send and receive streams over pipes (src/node/cli-stream.ts).
  /** Bytes of one reused buffer `recv` reads its standard input into. */
  streamReadChunkBytes: 4 * 1024 * 1024,
  /** Chunks `recv` reads ahead of the decoder. */
  streamReadAheadChunks: 8,
  /** Free read buffers `recv` keeps for reuse; more are dropped. */
  streamReadSpareChunksMax: 16,
  /** Stream bytes `send` may have queued on a non-blocking standard output but not yet written. */
  streamWriteQueuedBytesMax: 8 * 1024 * 1024,
} as const;
