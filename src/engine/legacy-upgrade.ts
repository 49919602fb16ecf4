import type { BlockDevice } from '../device/device.js';
import { StatefsError } from '../errors.js';
import { emptyCheckpoint, encodeCheckpoint, encodeCheckpointChunk } from '../format/checkpoint.js';
import { encodeUpgrade, type UpgradeMark } from '../format/meta-records.js';
import { Op } from '../format/opcodes.js';
import { RECORD_OVERHEAD } from '../format/record.js';
import { SYNC_RECORD_LENGTH } from '../format/segment.js';
import type { Superblock } from '../format/superblock.js';
import type { EntryRef, EntryTable } from './entry-table.js';
import type { JournalWriter, RecordToWrite } from './journal-writer.js';
import type { Trees } from './keyspace.js';
import { indexKey } from './names.js';
import type { SegmentUsage } from './segment-usage.js';
import { EMPTY, appendOrThrow, awaitDurable, withContext } from './store-support.js';
import { writeSuperblock } from './superblock-io.js';

/** What the upgrade needs from the store. */
export interface UpgradeHost {
  readonly device: BlockDevice;
  readonly usage: SegmentUsage;
  readonly entries: EntryTable;
  readonly journal: Pick<JournalWriter<unknown>, 'append' | 'checkSpace'>;
  /** The v1 journal being upgraded: its end and CRC-32C, named by the UPGRADE record. */
  readonly v1Journal: UpgradeMark;
  /** The working trees: the v1 state, with values in memory and no records yet. */
  trees(): Trees;
  /** The superblock the store uses now (the image's geometry). */
  superblock(): Superblock;
  /** A value of `subject` now lives in a record of another size. */
  moved(subject: string, beforeBytes: number, afterBytes: number): void;
  /** A superblock write failed: the store refuses writes with `error` until reopened. */
  writeFailed(error: StatefsError): void;
  /** The image is v3 now: `sb` is on disk, in both slots, naming a checkpoint of `checkpointBytes` of payload. */
  upgraded(sb: Superblock, checkpointBytes: number): void;
}

/**
 * Upgrade a legacy v1 image in place: write a v3 log (an UPGRADE record naming the v1 journal,
 * flushed on its own; then an empty checkpoint and every v1 value as a PUT) into the segments
 * past the v1 journal, then superblock slot B — at the end of the device, outside the v1 journal
 * — so a crash at any point leaves either the intact v1 image or the upgraded one. `ENOSPC`
 * (nothing written; the image stays v1 and readable) if it cannot fit.
 */
export async function writeUpgrade(host: UpgradeHost): Promise<void> {
  const entries: [string, EntryRef][] = [];
  for (const [subject, tree] of host.trees()) for (const [bin, e] of tree.entries()) entries.push([indexKey(subject, bin), e]);
  const checkpoint = encodeCheckpoint(emptyCheckpoint());
  const records: RecordToWrite[] = [
    { opcode: Op.CKPT, key: EMPTY, value: encodeCheckpointChunk(1, 0, 1, checkpoint) },
    ...entries.map(([ik, e]) => ({ opcode: Op.PUT, key: Buffer.from(ik, 'latin1'), value: host.entries.value(e) })),
  ];
  // The UPGRADE record is made durable before any value is written: a crash that tears the
  // values' write (even keeping later bytes of it and not earlier ones) leaves it whole, and the
  // open then knows the bytes past the v1 journal for the upgrade's (statefs-v3.md 6.5).
  const mark: RecordToWrite = { opcode: Op.UPGRADE, key: EMPTY, value: encodeUpgrade(host.v1Journal) };
  // Both batches are checked before either is written: the second follows the first's SYNC.
  const syncSized: RecordToWrite = { opcode: Op.SYNC, key: EMPTY, value: new Uint8Array(SYNC_RECORD_LENGTH - RECORD_OVERHEAD) };
  try {
    host.journal.checkSpace([mark, syncSized, ...records]);
  } catch (err) {
    throw withContext(err, 'upgrade', undefined, undefined);
  }
  await awaitDurable(appendOrThrow(host.journal, [mark], 'upgrade', undefined, undefined, { ownBatch: true }).durable, 'upgrade', undefined, undefined);
  const appended = appendOrThrow(host.journal, records, 'upgrade', undefined, undefined, { ownBatch: true });
  entries.forEach(([ik, e], i) => {
    const extent = appended.extents[i + 1];
    if (extent === undefined) return;
    // Open counted the entry already (with no record): now its record, once.
    host.usage.moveEntry(e, extent);
    host.moved(ik.slice(0, ik.indexOf('\0')), 0, host.entries.diskBytes(e));
  });
  await awaitDurable(appended.durable, 'upgrade', undefined, undefined);
  const sb: Superblock = {
    ...host.superblock(),
    generation: 1,
    ckptSegment: appended.batchStart.segment,
    ckptOffset: appended.batchStart.offset,
    ckptSegSeq: appended.batchStart.segSeq,
    ckptId: 1,
  };
  try {
    await writeSuperblock(host.device, sb);
    // Then slot A (over the start of the old v1 journal) with the same pointers, so either slot
    // can be damaged later without losing the upgrade.
    await writeSuperblock(host.device, { ...sb, generation: 2 });
  } catch (err) {
    const failure = StatefsError.EIO('superblock write failed during the v1 upgrade; reopen the store', { op: 'upgrade', cause: err });
    host.writeFailed(failure);
    throw failure;
  }
  host.upgraded({ ...sb, generation: 2 }, checkpoint.length);
}
