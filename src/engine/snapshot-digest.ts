import { createHash } from 'node:crypto';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { Tree } from './keyspace.js';

/** Entries hashed between yields to the event loop, so digests never block writers for long. */
const STEP = 2048;

/**
 * The content digest of a snapshot: SHA-256 over its entries in key order, each as
 * `key_len u16 LE | key bytes | value_len u32 LE | value bytes`. `valueOf` supplies the bytes
 * (from memory when a snapshot is made, from disk when it is verified).
 */
export async function snapshotDigest(tree: Tree, valueOf: (bin: string) => Promise<Uint8Array> | Uint8Array): Promise<Uint8Array> {
  // Nothing before the first await: the caller (a snapshot that has just become durable) goes on
  // at once, and the hashing proceeds in steps behind it.
  await Promise.resolve();
  const hash = createHash('sha256');
  const header = Buffer.alloc(4);
  let n = 0;
  for (const bin of tree.keys()) {
    const key = Buffer.from(bin, 'latin1');
    const value = await valueOf(bin);
    header.writeUInt16LE(key.length, 0);
    hash.update(header.subarray(0, 2));
    hash.update(key);
    header.writeUInt32LE(value.length, 0);
    hash.update(header);
    hash.update(value);
    if (++n % STEP === 0) await yieldToLoop();
  }
  return new Uint8Array(hash.digest());
}
