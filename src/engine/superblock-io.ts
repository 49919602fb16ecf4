import type { BlockDevice } from '../device/device.js';
import { StatefsError } from '../errors.js';
import { Op } from '../format/opcodes.js';
import { RECORD_MAGIC } from '../format/record.js';
import { view } from '../format/bytes.js';
import {
  SUPERBLOCK_LENGTH,
  decodeSuperblock,
  encodeSuperblock,
  superblockOffset,
  type Superblock,
  type SuperblockFault,
} from '../format/superblock.js';

export type ImageKind = { kind: 'v3'; sb: Superblock; slots: [SlotState, SlotState] } | { kind: 'legacy-v1' };

export type SlotState = { ok: true; generation: number } | { ok: false; fault: SuperblockFault };

/** Smaller than its two superblock slots: no image (`EINVAL`), whatever its bytes. */
export function checkImageSize(device: BlockDevice): void {
  if (device.size < 2 * 4096) throw StatefsError.EINVAL(`device of ${device.size} bytes is too small`, { op: 'open' });
}

/**
 * Identify an image: the valid superblock slot with the highest generation; failing both, a v1
 * journal (a record at byte 0); failing that, `EINVAL` for a blank device and `EINTEGRITY` when
 * both slots are damaged.
 */
export async function readImageKind(device: BlockDevice): Promise<ImageKind> {
  checkImageSize(device);
  const a = decodeSuperblock(await device.read(superblockOffset(0, device.size), SUPERBLOCK_LENGTH), device.size);
  const b = decodeSuperblock(await device.read(superblockOffset(1, device.size), SUPERBLOCK_LENGTH), device.size);
  const slots: [SlotState, SlotState] = [
    a.ok ? { ok: true, generation: a.sb.generation } : { ok: false, fault: a.fault },
    b.ok ? { ok: true, generation: b.sb.generation } : { ok: false, fault: b.fault },
  ];
  if (a.ok && b.ok) return { kind: 'v3', sb: a.sb.generation >= b.sb.generation ? a.sb : b.sb, slots };
  if (a.ok) return { kind: 'v3', sb: a.sb, slots };
  if (b.ok) return { kind: 'v3', sb: b.sb, slots };
  const head = await device.read(0, 16);
  const op = head[4];
  if (view(head).getUint32(0, true) === RECORD_MAGIC && (op === Op.PUT || op === Op.DELETE || op === Op.CHECKPOINT)) return { kind: 'legacy-v1' };
  if (head.every((x) => x === 0) && a.fault === 'magic' && b.fault === 'magic') {
    throw StatefsError.EINVAL('the image is blank: run mkfs first', { op: 'open' });
  }
  throw StatefsError.EINTEGRITY(`both superblocks are damaged (A: ${a.fault}, B: ${b.fault})`, { op: 'open', offset: 0 });
}

/**
 * Make the slot `sb` is not in name the same checkpoint as `sb` (writing it, generation + 1, if
 * not), and return the superblock in force. A checkpoint writes both slots (statefs-v3.md 7.2),
 * but a crash between the two writes, or a damaged slot, leaves one naming an older checkpoint
 * whose segments the store would reuse at once: one flipped byte in the newer slot later, and
 * no checkpoint would be intact (review). A writable open calls this before it writes anything.
 */
export async function alignSuperblockSlots(device: BlockDevice, sb: Superblock): Promise<Superblock> {
  const otherSlot = sb.generation % 2 === 0 ? 1 : 0;
  const other = decodeSuperblock(await device.read(superblockOffset(otherSlot, device.size), SUPERBLOCK_LENGTH), device.size);
  const same = other.ok && other.sb.ckptId === sb.ckptId && other.sb.ckptSegment === sb.ckptSegment && other.sb.ckptOffset === sb.ckptOffset && other.sb.ckptSegSeq === sb.ckptSegSeq;
  if (same) return sb;
  const next = { ...sb, generation: sb.generation + 1 };
  await writeSuperblock(device, next);
  return next;
}

/** Write `sb` to the slot its generation selects (alternating, so the other slot keeps the previous one) and flush. */
export async function writeSuperblock(device: BlockDevice, sb: Superblock): Promise<void> {
  const slot = sb.generation % 2 === 0 ? 0 : 1;
  await device.write(superblockOffset(slot, device.size), encodeSuperblock(sb));
  await device.flush();
}
