import type { GcOptions } from './compactor.js';

/*
 * Automatic GC (docs/storage/statefs-v3.md §8.3). The later a cycle starts, the more garbage the
 * segments it empties hold, and the fewer live bytes it moves per byte it frees: starting when an
 * eighth of the image is free (not a quarter), and emptying at most an eighth of the image per
 * cycle (the emptiest segments; the default bound alone is half of a 16 MiB image), cut the bytes
 * written per byte put under the GC benchmark's load from 1.99 to 1.46.
 */
/** A cycle starts when the free segments are at most this share of the image (or twice the reserve)… */
const AUTO_GC_FREE_SHARE = 1 / 8;
/** …or when the reclaimable garbage is at least this share of it. */
const AUTO_GC_GARBAGE_SHARE = 1 / 2;
/** An automatic cycle empties at most this share of the image's segments (and the default byte bound). */
const AUTO_GC_CYCLE_SHARE = 1 / 8;

/** Whether free segments are down to twice the reserve, or an eighth of the image (whichever is more). */
export function isLowOnSpace(freeSegments: number, reserveSegments: number, segmentCount: number): boolean {
  return freeSegments <= Math.max(2 * reserveSegments, Math.floor(segmentCount * AUTO_GC_FREE_SHARE));
}

/**
 * The cycle to start in the background when the image is getting full of garbage, or undefined
 * when none is due yet.
 */
export function autoGcCycle(garbageBytes: number, lowOnSpace: boolean, image: { segmentCount: number; segmentSize: number }): GcOptions | undefined {
  const { segmentCount, segmentSize } = image;
  if (garbageBytes < segmentSize || (!lowOnSpace && garbageBytes < segmentCount * segmentSize * AUTO_GC_GARBAGE_SHARE)) return undefined;
  return { maxSegments: Math.max(1, Math.floor(segmentCount * AUTO_GC_CYCLE_SHARE)) };
}
