import type { BlockDevice } from '../device/device.js';
import { StatefsError } from '../errors.js';
import { SEGMENT_RECORD_LENGTH } from '../format/segment.js';
import { SUPERBLOCK_LENGTH, SUPERBLOCK_SLOT, segmentOffset, superblockOffset } from '../format/superblock.js';
import type { MovingLog } from './entry-reader.js';
import { replayImage, type Replayed } from './replay.js';
import { readImageKind, type ImageKind } from './superblock-io.js';

/*
 * A read-only open takes no lock, so the image's owner, if one runs, goes on writing under it:
 * GC and checkpoints free segments, and the log takes them again and rewrites them. A replay that
 * reads such a segment before and after it is rewritten could report damage that is not there,
 * or take another key's record for a value (a review: a read-only open or fsck of a live image).
 *
 * A segment is rewritten only after the log takes it, and taking it writes a new SEGMENT header
 * (a higher `seg_seq`) before anything else. So a replay whose segments all carry, once it is
 * done, the headers they had when it read them first, read one life of each: a consistent image
 * as of some moment (appends to the head segment meanwhile read as a torn tail or not at all).
 * What else can make one replay fail without damage (a checkpoint written before the headers
 * were read; a buffered read of the head torn by appends; a v1 image upgraded under it) is met
 * by checking the superblock slots too and trusting a failure only when a second replay repeats it.
 */

/** Replays of a moving image tried before giving up with `EBUSY`. */
const ATTEMPTS = 3;

/** A replay that is known to have read one consistent image, and the headers it read. */
export interface ReadOnlyReplay {
  replayed: Replayed;
  /** Each segment the replay read, with the bytes of its header then. */
  headers: Map<number, Uint8Array>;
}

/** Replay for a read-only open: again while the image changed under the replay, then `EBUSY`. */
export async function replayReadOnly(device: BlockDevice, legacySubject: string): Promise<ReadOnlyReplay> {
  let previous: string | undefined;
  for (let attempt = 1; ; attempt++) {
    // The slots as they were before the replay read them: a superblock written meanwhile (a
    // checkpoint, which frees the chain before it; or the upgrade of a v1 image) shows here.
    const slots = await readSlots(device);
    let kind: ImageKind;
    try {
      kind = await readImageKind(device);
    } catch (err) {
      // Its three reads may straddle the upgrade of a v1 image (slot B, then slot A over byte 0).
      if (await slotsUnchanged(device, slots)) throw err;
      if (attempt === ATTEMPTS) throw moving();
      continue;
    }
    const recorder = new ReadRecorder(device);
    let replayed: Replayed;
    try {
      replayed = await replayImage(recorder, legacySubject);
    } catch (err) {
      // Damage found in bytes rewritten during the replay is not damage: replay again. Nor is
      // damage found by a replay that started from a checkpoint superseded before it read the
      // headers (the chain it names may be reused by then, and its headers read as new).
      // And a read of the head segment is not atomic against the owner's appends on a file image
      // (a buffered pread copies page by page): damage is reported only once a second replay of
      // the same image meets the same damage.
      const headers = kind.kind === 'v3' ? recorder.headersRead(kind.sb.segmentSize, kind.sb.segmentCount) : new Map<number, Uint8Array>();
      const still = (await unchanged(device, kind.kind === 'v3' ? kind.sb.segmentSize : 0, headers)) && (await slotsUnchanged(device, slots));
      const seen = damageOf(err);
      if (still && (seen === previous || attempt === ATTEMPTS)) throw err;
      previous = seen;
      if (attempt === ATTEMPTS) throw moving();
      continue;
    }
    // A legacy v1 image has no segments yet; its owner's first write upgrades it, which writes a
    // superblock: until then nothing writes the v1 journal.
    if (kind.kind === 'legacy-v1' || replayed.legacy !== undefined) {
      if (kind.kind === 'legacy-v1' && replayed.legacy !== undefined && (await slotsUnchanged(device, slots))) return { replayed, headers: new Map() };
      if (attempt === ATTEMPTS) throw moving();
      continue;
    }
    // The geometry is fixed at mkfs: the superblock it comes from may change, the geometry not.
    const headers = recorder.headersRead(replayed.sb.segmentSize, replayed.sb.segmentCount);
    if (await unchanged(device, replayed.sb.segmentSize, headers)) return { replayed, headers };
    if (attempt === ATTEMPTS) throw moving();
  }
}

function damageOf(err: unknown): string {
  return err instanceof StatefsError ? `${err.code} ${String(err.offset)} ${err.message}` : String(err);
}

async function readSlots(device: BlockDevice): Promise<Uint8Array[]> {
  // A device too small for two slots is refused by readImageKind, with its own error.
  if (device.size < 2 * SUPERBLOCK_SLOT) return [];
  return [await device.read(superblockOffset(0, device.size), SUPERBLOCK_LENGTH), await device.read(superblockOffset(1, device.size), SUPERBLOCK_LENGTH)];
}

async function slotsUnchanged(device: BlockDevice, before: Uint8Array[]): Promise<boolean> {
  const now = await readSlots(device);
  return now.every((slot, i) => Buffer.compare(slot, before[i] ?? new Uint8Array(0)) === 0);
}

function moving(): StatefsError {
  return StatefsError.EBUSY(`the image changed under a read-only open ${String(ATTEMPTS)} times: another process is writing it (read through its daemon with --connect)`, { op: 'open' });
}

/**
 * What `readMovingEntryValue` checks a read-only store's later reads against (`verifySnapshot`):
 * nothing is pending in this process, and a segment read must still carry the header it had at
 * the open, else the image has moved on since (`EBUSY`, not the damage such a read would find).
 */
export function readOnlyLog(device: BlockDevice, segmentSize: number, headers: Map<number, Uint8Array>): MovingLog {
  return {
    pending: () => false,
    drain: () => Promise.resolve(),
    // A segment's header changes when the log takes it, before any other byte of its new life is
    // written, and never returns to an earlier one (its sequence number grows): a header still as
    // the open saw it after a read means the read met that life, so the read needs no mark before.
    mark: async (segment, when) => {
      if (when === 'before') return 0;
      const seen = headers.get(segment);
      if (seen === undefined || !(await unchanged(device, segmentSize, new Map([[segment, seen]])))) {
        throw StatefsError.EBUSY(`segment ${String(segment)} was rewritten since this read-only open: another process is writing the image (open it again, or read through its daemon)`, { op: 'read' });
      }
      return 0;
    },
  };
}

async function unchanged(device: BlockDevice, segmentSize: number, headers: Map<number, Uint8Array>): Promise<boolean> {
  for (const [segment, seen] of headers) {
    const now = await device.read(segmentOffset(segment, segmentSize), SEGMENT_RECORD_LENGTH);
    if (Buffer.compare(now, seen) !== 0) return false;
  }
  return true;
}

/** A device that passes reads through and remembers where they went, and the first bytes read of each header-sized read. */
class ReadRecorder implements BlockDevice {
  private readonly ranges: { offset: number; length: number }[] = [];
  private readonly firstHeaderReads = new Map<number, Uint8Array>();

  constructor(private readonly device: BlockDevice) {}

  get size(): number {
    return this.device.size;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const bytes = await this.device.read(offset, length);
    this.saw(offset, length, bytes);
    return bytes;
  }

  async readInto(offset: number, into: Uint8Array): Promise<void> {
    if (this.device.readInto === undefined) into.set(await this.device.read(offset, into.length));
    else await this.device.readInto(offset, into);
    this.saw(offset, into.length, into);
  }

  private saw(offset: number, length: number, bytes: Uint8Array): void {
    this.ranges.push({ offset, length });
    if (length === SEGMENT_RECORD_LENGTH && !this.firstHeaderReads.has(offset)) this.firstHeaderReads.set(offset, bytes.slice());
  }

  /**
   * Every segment a read touched, with its header as first read. Replay reads every header before
   * any record (`readSegmentHeaders`), so that is the header before any other read of the segment.
   */
  headersRead(segmentSize: number, segmentCount: number): Map<number, Uint8Array> {
    const out = new Map<number, Uint8Array>();
    const base = segmentOffset(0, segmentSize);
    for (const { offset, length } of this.ranges) {
      const first = Math.max(0, Math.floor((offset - base) / segmentSize));
      const last = Math.min(segmentCount - 1, Math.floor((offset + length - 1 - base) / segmentSize));
      for (let s = first; s <= last; s++) {
        const header = this.firstHeaderReads.get(segmentOffset(s, segmentSize));
        // A segment read without its header first cannot be shown unchanged: zeros (no header)
        // compare unequal with any header it holds now, so such a replay is not trusted.
        out.set(s, header ?? new Uint8Array(SEGMENT_RECORD_LENGTH));
      }
    }
    return out;
  }

  write(): Promise<void> {
    return Promise.reject(StatefsError.EROFS('a read-only replay does not write', { op: 'write' }));
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
