import { createHash } from 'node:crypto';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { StatefsError } from '../errors.js';
import type { EntryRef } from './entry-table.js';
import type { Tree } from './keyspace.js';
import type { Snapshot } from './snapshot-table.js';

/** Entries hashed between yields to the event loop, so digests never block writers for long. */
const STEP = 2048;

/** Bytes gathered before one `hash.update` (a native call per field would cost more than the hashing). */
const SCRATCH = 64 * 1024;

/**
 * The content digest of a snapshot: SHA-256 over its entries in key order, each as
 * `key_len u16 LE | key bytes | value_len u32 LE | value bytes`. `valueOf` supplies the bytes
 * (from memory when a snapshot is made, from disk when it is verified).
 */
export async function snapshotDigest(tree: Tree, valueOf: (bin: string, entry: EntryRef) => Promise<Uint8Array> | Uint8Array): Promise<Uint8Array> {
  // Nothing before the loop's next turn, not even the hash's set-up: the caller (a snapshot that
  // has just become durable) answers first, and the hashing proceeds in steps behind it. (It used
  // to start at the next microtask, one entry per microtask until its first yield, so the caller's
  // own continuations went through while it ran: a snapshot of 1,000 keys still answered about
  // 0.1 ms later than without a digest.)
  await yieldToLoop();
  const hash = createHash('sha256');
  // The fields are gathered into one buffer and hashed a buffer at a time: the same byte stream.
  const scratch = Buffer.allocUnsafe(SCRATCH);
  let used = 0;
  const flush = (): void => {
    hash.update(scratch.subarray(0, used));
    used = 0;
  };
  let n = 0;
  for (const [bin, entry] of tree.entries()) {
    // In-memory values are hashed a whole step at a time; values read from the device are awaited.
    const got = valueOf(bin, entry);
    const value = got instanceof Uint8Array ? got : await got;
    if (used + 6 + bin.length + value.length > SCRATCH) flush();
    used = scratch.writeUInt16LE(bin.length, used);
    used += scratch.write(bin, used, 'latin1');
    used = scratch.writeUInt32LE(value.length, used);
    if (used + value.length <= SCRATCH) {
      scratch.set(value, used);
      used += value.length;
    } else {
      flush(); // a value too large for what is left (at most 64 KiB): hashed on its own
      hash.update(value);
    }
    if (++n % STEP === 0) await yieldToLoop();
  }
  flush();
  return new Uint8Array(hash.digest());
}

/**
 * Snapshot digests computed in the background from the values in memory, one snapshot after
 * another, each recorded by `record` (a SNAPDIGEST record) once known.
 */
export class DigestJobs {
  /** Digests being computed or waiting their turn, by snapshot id. */
  private readonly jobs = new Map<number, Promise<Uint8Array>>();
  /**
   * The digest started last, settled: the next starts after it. Each digest takes one step
   * (`STEP` entries) per turn of the event loop; several at once would each take theirs in the
   * same turn, and writers would wait behind all of them (100 snapshots of a 200,000-key subject
   * taken in a row held lone puts to ~100/s until their digests were done).
   */
  private previous: Promise<unknown> = Promise.resolve();
  /** Digests waiting their turn, being computed or being recorded; close waits for them so they reach the disk. */
  private readonly writes = new Set<Promise<void>>();

  /** `valueOf`: an entry's value in memory; `held`: whether the snapshot still exists. */
  constructor(
    private readonly valueOf: (entry: EntryRef) => Uint8Array,
    private readonly record: (snap: Snapshot, digest: Uint8Array) => Promise<void>,
    private readonly held: (snap: Snapshot) => boolean,
  ) {}

  /**
   * Compute a snapshot's digest in the background, after those started before it (unless it is
   * being computed or waiting already), and record it once known. A snapshot deleted before its
   * turn is not hashed: its job fails with `ENOENT` (snapshots rotated as fast as they are taken
   * would otherwise keep the queue, and `close`, busy with digests nobody will read).
   */
  start(snap: Snapshot): Promise<Uint8Array> {
    let job = this.jobs.get(snap.id);
    if (job !== undefined) return job;
    job = this.previous.then(() => {
      if (!this.held(snap)) throw StatefsError.ENOENT(`snapshot ${snap.name} (deleted before its digest was computed)`, { op: 'snapshot', subject: snap.subject, name: snap.name });
      return snapshotDigest(snap.tree, (_bin, entry) => this.valueOf(entry));
    });
    this.previous = job.catch(() => undefined);
    this.jobs.set(snap.id, job);
    const recorded = job
      .then((digest) => {
        snap.digest = digest;
        return this.record(snap, digest);
      })
      // A digest that did not reach the disk is recomputed after the next open.
      .catch(() => undefined)
      .finally(() => {
        this.jobs.delete(snap.id);
        this.writes.delete(recorded);
      });
    this.writes.add(recorded);
    return job;
  }

  /** Resolves once every digest started so far is recorded, or failed to be. */
  recorded(): Promise<unknown> {
    return Promise.all(this.writes);
  }
}
