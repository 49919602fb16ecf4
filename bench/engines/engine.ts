// What the workloads need from a store. Each engine (StateFS and every peer) implements it with
// its own idiomatic, crash-safe calls; durable means fsynced before the promise resolves.

/**
 * What a get returns to W4: the value, or (for a getter that copies into a reused buffer, as
 * lmdb-js's `getBinaryFast` and StateFS's `getInto` do) a view whose `length` is the value's.
 */
export interface ReadValue {
  readonly length: number;
}

/** One way of reading a value: W4 times each getter an engine offers. */
export type Getter =
  | { name: string; kind: 'sync'; get: (key: string) => ReadValue | undefined }
  | { name: string; kind: 'async'; get: (key: string) => Promise<ReadValue | undefined> };

export interface BenchEngine {
  /** One durable put (W1; W2's in-flight puts unless `putGroup` is given). */
  put(key: string, value: Uint8Array): Promise<void>;
  /**
   * W2 for an engine whose writes are grouped by transaction rather than kept in flight
   * (better-sqlite3 is synchronous): `writes` (key, value) made durable in one transaction.
   */
  readonly putGroup?: (writes: readonly (readonly [string, Uint8Array])[]) => Promise<void>;
  /**
   * W3: keys `keyOf(0..count-1)` with values `valueOf(i)` written crash-safely with (at least)
   * one sync at the end. Resolves to the name of the method used, recorded with the figures.
   */
  bulkLoad(count: number, keyOf: (i: number) => string, valueOf: (i: number) => Uint8Array): Promise<string>;
  readonly getters: readonly Getter[];
  /** W6: how many keys (at most `limit`) start with `prefix`. */
  list(prefix: string, limit: number): Promise<number>;
  /**
   * W7: a persistent point-in-time snapshot, durable when it resolves, under the name `tag`
   * (a file beside the store for the peers that copy). Undefined: the engine has none.
   */
  readonly snapshot?: (tag: string) => Promise<void>;
  /** Untimed, after each W7 run: a peer deletes its copy. */
  readonly afterSnapshot?: (tag: string) => Promise<void>;
  /** Engine-specific space figures recorded (not tabled) after W7, e.g. StateFS's live vs garbage bytes. */
  readonly spaceDetails?: () => Promise<Record<string, number>>;
  close(): Promise<void>;
}

export interface EngineFactory {
  /** A new, empty store in `dir` (which exists and is empty). */
  create(dir: string, expectedKeys: number): Promise<BenchEngine>;
  /** Open the store `create` made in `dir` and closed. */
  open(dir: string): Promise<BenchEngine>;
  /** The path whose allocated bytes are the store's on-disk size. */
  dataPath(dir: string): string;
  /** How the engine is configured, for the report (durability settings above all). */
  readonly describe: string;
}
