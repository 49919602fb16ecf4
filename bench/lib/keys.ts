// The keys and values every engine is given: keys like `/state/app<n>/k<i>`, 100-byte values.

export const VALUE_BYTES = 100;
export const SUBJECT = 'bench';

const POOL_BYTES = 1 << 20;

/**
 * 100-byte values that do not compress: key i's value is a slice of 1 MiB of fixed pseudo-random
 * bytes at an offset that depends on i, so neighbouring keys hold different bytes (LevelDB
 * compresses blocks with snappy; identical values would flatter its on-disk size).
 */
export function benchValues(): (i: number) => Uint8Array {
  const pool = new Uint8Array(POOL_BYTES);
  const next = randomIndexes(256, 42);
  for (let j = 0; j < POOL_BYTES; j++) pool[j] = next();
  return (i) => {
    const at = Math.imul(i, 7919) >>> 0;
    const offset = at % (POOL_BYTES - VALUE_BYTES);
    return pool.subarray(offset, offset + VALUE_BYTES);
  };
}

/** Spreads `keys` keys over apps of `listKeys` keys each, so W6 lists one whole app. */
export function keyLayout(keys: number, listKeys: number): { apps: number; keyOf: (i: number) => string } {
  const apps = Math.max(1, Math.floor(keys / listKeys));
  return { apps, keyOf: (i) => `/state/app${i % apps}/k${i}` };
}

/** The prefix W6 lists, and how many of keys 0..keys-1 it holds. */
export function listTarget(keys: number, apps: number): { prefix: string; expected: number } {
  const app = Math.min(7, apps - 1);
  return { prefix: `/state/app${app}/`, expected: Math.floor((keys - 1 - app) / apps) + 1 };
}

/** The exclusive upper bound of the keys starting with `prefix` (its last character plus one). */
export function prefixEnd(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}

/** A fixed-seed generator of indexes in [0, n): the same random keys every run and every engine. */
export function randomIndexes(n: number, seed = 12345): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return Math.floor((s / 4294967296) * n); // the high bits: an LCG's low bits repeat quickly
  };
}
