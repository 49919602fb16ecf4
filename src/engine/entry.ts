import type { Extent } from './journal-writer.js';

/** One stored value: its bytes (kept in memory) and the records on disk that hold them. */
export interface Entry {
  value: Uint8Array;
  extents: Extent[];
}

/** Bytes an entry occupies on disk (framing included). */
export function entryDiskBytes(e: Entry): number {
  let n = 0;
  for (const x of e.extents) n += x.length;
  return n;
}
