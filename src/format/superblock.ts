import { crc32c } from './crc32c.js';
import { getU64, setU64, view } from './bytes.js';

/*
 * Superblock, written copy-on-write to two 4 KiB slots: slot A at byte 0, slot B in the last
 * 4 KiB of the image. Each write goes to the slot holding the older generation, so a crash leaves
 * the other slot intact. The valid slot with the highest generation wins. Little-endian:
 *
 *   offset  size  field
 *   0       4     magic            0x4253584E ("NXSB"; bytes 4E 58 53 42)
 *   4       2     version          3
 *   6       2     flags            0
 *   8       8     generation       +1 per superblock write
 *   16      8     capacity         image size in bytes
 *   24      4     segment_size     bytes per segment
 *   28      4     segment_count    segments start at byte 4096, back to back
 *   32      4     ckpt_segment     segment holding the start of the current checkpoint
 *   36      4     ckpt_offset      byte offset (in that segment) of the batch that starts it
 *   40      8     ckpt_seg_seq     sequence number that segment's header must carry
 *   48      8     ckpt_id          id carried by every chunk of that checkpoint
 *   56      68    reserved         zero
 *   124     4     crc32c           CRC-32C of bytes [0, 124)
 */
export const SUPERBLOCK_MAGIC = 0x4253584e;
export const SUPERBLOCK_VERSION = 3;
export const SUPERBLOCK_SLOT = 4096;
export const SUPERBLOCK_LENGTH = 128;

export interface Superblock {
  generation: number;
  capacity: number;
  segmentSize: number;
  segmentCount: number;
  ckptSegment: number;
  ckptOffset: number;
  ckptSegSeq: number;
  ckptId: number;
}

export type SuperblockFault = 'magic' | 'crc' | 'version' | 'geometry';

export function encodeSuperblock(sb: Superblock): Uint8Array {
  const out = new Uint8Array(SUPERBLOCK_LENGTH);
  const v = view(out);
  v.setUint32(0, SUPERBLOCK_MAGIC, true);
  v.setUint16(4, SUPERBLOCK_VERSION, true);
  v.setUint16(6, 0, true);
  setU64(v, 8, sb.generation);
  setU64(v, 16, sb.capacity);
  v.setUint32(24, sb.segmentSize, true);
  v.setUint32(28, sb.segmentCount, true);
  v.setUint32(32, sb.ckptSegment, true);
  v.setUint32(36, sb.ckptOffset, true);
  setU64(v, 40, sb.ckptSegSeq);
  setU64(v, 48, sb.ckptId);
  v.setUint32(124, crc32c(out.subarray(0, 124)), true);
  return out;
}

/** Decode a superblock slot; checks magic, CRC, version and that the geometry fits `deviceSize`. */
export function decodeSuperblock(buf: Uint8Array, deviceSize: number): { ok: true; sb: Superblock } | { ok: false; fault: SuperblockFault } {
  if (buf.length < SUPERBLOCK_LENGTH) return { ok: false, fault: 'magic' };
  const v = view(buf);
  if (v.getUint32(0, true) !== SUPERBLOCK_MAGIC) return { ok: false, fault: 'magic' };
  if (crc32c(buf.subarray(0, 124)) !== v.getUint32(124, true)) return { ok: false, fault: 'crc' };
  if (v.getUint16(4, true) !== SUPERBLOCK_VERSION) return { ok: false, fault: 'version' };
  const sb: Superblock = {
    generation: getU64(v, 8),
    capacity: getU64(v, 16),
    segmentSize: v.getUint32(24, true),
    segmentCount: v.getUint32(28, true),
    ckptSegment: v.getUint32(32, true),
    ckptOffset: v.getUint32(36, true),
    ckptSegSeq: getU64(v, 40),
    ckptId: getU64(v, 48),
  };
  const geometryOk =
    sb.capacity === deviceSize &&
    sb.segmentSize >= MIN_SEGMENT_SIZE &&
    sb.segmentCount >= 2 &&
    SUPERBLOCK_SLOT + sb.segmentCount * sb.segmentSize <= deviceSize - SUPERBLOCK_SLOT &&
    sb.ckptSegment < sb.segmentCount &&
    sb.ckptOffset < sb.segmentSize;
  return geometryOk ? { ok: true, sb } : { ok: false, fault: 'geometry' };
}

/** Segments must hold the largest record (a 64 KiB value with its key) plus framing. */
export const MIN_SEGMENT_SIZE = 256 * 1024;

/** Byte offset of the slot (0 = A, 1 = B) in an image of `capacity` bytes. */
export function superblockOffset(slot: 0 | 1, capacity: number): number {
  return slot === 0 ? 0 : capacity - SUPERBLOCK_SLOT;
}

/** Byte offset of segment `index`. */
export function segmentOffset(index: number, segmentSize: number): number {
  return SUPERBLOCK_SLOT + index * segmentSize;
}
