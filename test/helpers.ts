import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryDevice } from '../src/device/memory-device.js';
import { Store } from '../src/engine/store.js';
import type { OpenOptions } from '../src/engine/store-types.js';
import { isStatefsError } from '../src/errors.js';

export const MiB = 1024 * 1024;

/** A formatted in-memory image (4 MiB, 256 KiB segments unless told otherwise). */
export async function memoryImage(size = 4 * MiB): Promise<Uint8Array> {
  const dev = new MemoryDevice(size);
  await Store.format(dev, { zeroed: true });
  return dev.bytes;
}

export async function openMemory(bytes: Uint8Array, options: OpenOptions = {}): Promise<Store> {
  return Store.openDevice(new MemoryDevice(bytes), options);
}

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'statefs-test-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export const text = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : Buffer.from(b).toString('utf8'));

/** A seeded PRNG (mulberry32) so every random test can print and replay its seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random key of `length` bytes under /state/ (lowercase letters), from `next` in [0, 1). */
export function randomKey(next: () => number, length: number): string {
  let key = '/state/';
  while (key.length < length) key += String.fromCharCode(97 + Math.floor(next() * 26));
  return key;
}

/** The code a call fails with, or 'OK' (anything but a StatefsError as its text). */
export function codeOf(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => 'OK',
    (err: unknown) => (isStatefsError(err) ? err.code : String(err)),
  );
}
