import type { BlockDevice } from '../device/device.js';
import { StatefsError } from '../errors.js';
import { emptyCheckpoint, encodeCheckpoint, encodeCheckpointChunk } from '../format/checkpoint.js';
import { Op } from '../format/opcodes.js';
import { encodeRecord } from '../format/record.js';
import { NO_SEGMENT, encodeSegmentHeader, encodeSync } from '../format/segment.js';
import { MIN_SEGMENT_SIZE, SUPERBLOCK_SLOT, segmentOffset, type Superblock } from '../format/superblock.js';
import { writeSuperblock } from './superblock-io.js';

export const DEFAULT_IMAGE_SIZE = 256 * 1024 * 1024;

export interface FormatOptions {
  /** Bytes per segment: a multiple of 4096, at least 256 KiB. Default 1 MiB (256 KiB below 64 MiB images). */
  segmentSize?: number;
  /**
   * The device reads as zeros (a new or truncated file, a new memory device). Otherwise every
   * segment is zeroed first, so no record of an earlier image can be taken for part of this log.
   */
  zeroed?: boolean;
}

/** Segments needed for a usable store: the log head, one to roll into, and the reserve. */
const MIN_SEGMENTS = 4;

/** `4 MiB`, `1032 KiB` or `1000 bytes`: the largest unit that gives a whole number. */
function sizeText(bytes: number): string {
  if (bytes > 0 && bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)} MiB`;
  if (bytes > 0 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} bytes`;
}

export function defaultSegmentSize(capacity: number): number {
  return capacity >= 64 * 1024 * 1024 ? 1024 * 1024 : MIN_SEGMENT_SIZE;
}

/** Write an empty v3 layout: segment 0 holding an empty checkpoint, then both superblocks. */
export async function formatDevice(device: BlockDevice, options: FormatOptions = {}): Promise<Superblock> {
  const capacity = device.size;
  const segmentSize = options.segmentSize ?? defaultSegmentSize(capacity);
  if (!Number.isSafeInteger(segmentSize) || segmentSize < MIN_SEGMENT_SIZE || segmentSize % 4096 !== 0 || segmentSize > 64 * 1024 * 1024) {
    throw StatefsError.EINVAL(`segment size ${segmentSize}: use a multiple of 4096 from ${MIN_SEGMENT_SIZE} to 64 MiB`, { op: 'mkfs' });
  }
  const segmentCount = Math.floor((capacity - 2 * SUPERBLOCK_SLOT) / segmentSize);
  if (segmentCount < MIN_SEGMENTS) {
    const least = MIN_SEGMENTS * segmentSize + 2 * SUPERBLOCK_SLOT;
    const why = `${MIN_SEGMENTS} segments and two ${sizeText(SUPERBLOCK_SLOT)} superblock slots`;
    throw StatefsError.EINVAL(`image of ${sizeText(capacity)} is too small: with ${sizeText(segmentSize)} segments it must be at least ${sizeText(least)} (${why})`, { op: 'mkfs' });
  }
  if (options.zeroed !== true) {
    const zeros = new Uint8Array(segmentSize);
    for (let i = 1; i < segmentCount; i++) await device.write(segmentOffset(i, segmentSize), zeros);
  }
  const empty = new Uint8Array(0);
  const header = encodeRecord(Op.SEGMENT, empty, encodeSegmentHeader({ segSeq: 1, segIndex: 0, prevIndex: NO_SEGMENT, prevEnd: 0 }));
  const ckpt = encodeRecord(Op.CKPT, empty, encodeCheckpointChunk(1, 0, 1, encodeCheckpoint(emptyCheckpoint())));
  const sync = encodeRecord(Op.SYNC, empty, encodeSync({ segSeq: 1, batchStart: header.length }));
  const first = new Uint8Array(segmentSize);
  first.set(header, 0);
  first.set(ckpt, header.length);
  first.set(sync, header.length + ckpt.length);
  await device.write(segmentOffset(0, segmentSize), first);
  await device.flush();
  const sb: Superblock = { generation: 1, capacity, segmentSize, segmentCount, ckptSegment: 0, ckptOffset: header.length, ckptSegSeq: 1, ckptId: 1 };
  await writeSuperblock(device, { ...sb, generation: 0 });
  await writeSuperblock(device, sb);
  return sb;
}
