/**
 * A block device: a fixed-capacity byte array with explicit durability. Everything the engine
 * writes goes through this interface, so tests can swap in the memory or fault-injecting device.
 *
 * Contract:
 * - `write` may be buffered; only bytes written before a successful `flush` are durable.
 * - A failed `write` or `flush` rejects with a `StatefsError` (`EIO`, `ENOSPC`); the engine then
 *   stops writing (it never retries a flush and reports success).
 * - `read` returns exactly `length` bytes or rejects.
 */
export interface BlockDevice {
  /** Capacity in bytes. */
  readonly size: number;
  read(offset: number, length: number): Promise<Uint8Array>;
  /**
   * Read `into.length` bytes at `offset` into `into` (optional: callers fall back to `read`). For
   * reading a whole image's worth of segments through one reused buffer instead of a new one each.
   */
  readInto?(offset: number, into: Uint8Array): Promise<void>;
  /**
   * `readInto` on the calling thread (optional). A writable store reads the values it loaded from
   * its checkpoint with it when they are asked for, instead of holding them all in memory from the
   * open (docs/storage/statefs-v3.md 6.3). Errors are thrown, as `StatefsError`s.
   */
  readSync?(offset: number, into: Uint8Array): void;
  write(offset: number, data: Uint8Array): Promise<void>;
  flush(): Promise<void>;
  /**
   * Write and make durable in one step, as `write` then `flush` would (optional: the journal
   * falls back to exactly that). A file device does it with one `O_DSYNC` write — one trip to
   * the I/O thread pool per group commit instead of two.
   */
  writeDurable?(offset: number, data: Uint8Array): Promise<void>;
  /**
   * `writeDurable` on the calling thread, returning once the bytes are durable (optional; only
   * used where `writeDurable` is offered). Errors are thrown, as `StatefsError`s.
   */
  writeDurableSync?(offset: number, data: Uint8Array): void;
  /**
   * Ranges never written may hold no disk blocks yet (a sparse regular file): a durable write into
   * them also makes the file system record the new blocks, which costs a second flush of its own
   * journal. The log then writes zeros ahead of its tail in segments it has not written before,
   * so later small commits land in blocks that exist (docs/storage/statefs-v3.md 5.2).
   */
  readonly sparse?: boolean;
  close(): Promise<void>;
}
