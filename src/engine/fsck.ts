import type { BlockDevice } from '../device/device.js';
import { FileDevice } from '../device/file-device.js';
import { lockImage } from '../device/image-lock.js';
import { StatefsError } from '../errors.js';
import { SUPERBLOCK_LENGTH, decodeSuperblock, encodeSuperblock, superblockOffset } from '../format/superblock.js';
import { readEntriesBySegment, readEntryValue } from './entry-reader.js';
import type { EntryRef } from './entry-table.js';
import { replayImage, type Replayed } from './replay.js';
import { snapshotDigest } from './snapshot-digest.js';
import { Store } from './store.js';
import { checkImageSize } from './superblock-io.js';
import { checkKey, fromBinary, toBinary } from './names.js';
import { recordLength } from '../format/record.js';
import { maxRecordLength } from '../format/segment.js';
import { asStatefsError } from './store-support.js';

/** Stable reason strings (docs/storage/statefs-v3.md lists them). */
export type FsckReason =
  | 'blank-image'
  | 'superblocks-damaged'
  | 'superblock-a-damaged'
  | 'superblock-b-damaged'
  | 'damage-before-valid-records'
  | 'unsupported-record'
  | 'torn-tail'
  | 'orphaned-transaction'
  | 'live-record-damaged'
  | 'snapshot-digest-mismatch'
  | 'snapshot-digest-missing'
  | 'mount-missing-snapshot'
  | 'legacy-v1'
  | 'legacy-not-upgradable';

/** info: reported, not a problem (crash residue). repairable: `--repair` fixes it. fatal: unrecoverable. */
export type FsckSeverity = 'info' | 'repairable' | 'fatal';

export interface FsckFinding {
  /** Byte offset in the image the finding is about. */
  offset: number;
  reason: FsckReason;
  severity: FsckSeverity;
  message: string;
}

export interface FsckReport {
  /** 0 clean; 1 problems found and repaired (or repairable, with dryRun); 2 unrecoverable. */
  exitCode: 0 | 1 | 2;
  format: 'v3' | 'legacy-v1' | 'unknown';
  findings: FsckFinding[];
  /** Set when `repair` ran and the re-check came back clean. */
  repaired: boolean;
  checked: { records: number; batches: number; values: number; snapshots: number; mounts: number };
}

export interface FsckOptions {
  /** Fix what is repairable (appending ABORT / UMOUNT records, rewriting a damaged superblock slot), then re-check. */
  repair?: boolean;
  /** With `repair`, only say what would be done: nothing is written. */
  dryRun?: boolean;
  /** Called as the check advances (fraction 0..1). */
  onProgress?: (fraction: number, phase: string) => void;
}

/** Check an image file. Opens it read-only unless repairing. */
export async function fsck(path: string, options: FsckOptions = {}): Promise<FsckReport> {
  // A live owner moves the log under the check (GC and checkpoints reuse segments), so its
  // findings would not be the image's: not checked, as e2fsck will not check a mounted file system.
  // The check holds the image's lock to its end, so no owner can start meanwhile either.
  const lock = await lockImage(path, 'fsck', ': stop it to check the image');
  try {
    const report = await checkDevice(await FileDevice.open(path, { readOnly: true }), options);
    if (options.repair !== true || options.dryRun === true || report.exitCode !== 1) return report;
    // Checked without the lock (a directory fsck cannot write): the repair takes it itself, and
    // so fails (nothing may write an image no lock keeps an owner out of).
    await repair(await FileDevice.open(path, lock.held ? { lockHeld: true } : {}), report);
    const again = await checkDevice(await FileDevice.open(path, { readOnly: true }), {});
    return finishRepair(report, again);
  } finally {
    await lock.release();
  }
}

/** Check (and with `repair`, fix) an image on any device. The device is closed at the end. */
export async function fsckDevice(device: BlockDevice, options: FsckOptions = {}): Promise<FsckReport> {
  // The check and the repair each close what they open: lend them a handle whose close is a no-op.
  const lent: BlockDevice = {
    size: device.size,
    read: (offset, length) => device.read(offset, length),
    write: (offset, data) => device.write(offset, data),
    flush: () => device.flush(),
    close: () => Promise.resolve(),
  };
  try {
    const report = await checkDevice(lent, options);
    if (options.repair !== true || options.dryRun === true || report.exitCode !== 1) return report;
    await repair(lent, report);
    return finishRepair(report, await checkDevice(lent, {}));
  } finally {
    await device.close();
  }
}

function finishRepair(before: FsckReport, after: FsckReport): FsckReport {
  const clean = after.exitCode === 0;
  return { ...before, repaired: clean, exitCode: clean ? 1 : 2, findings: clean ? before.findings : [...before.findings, ...after.findings] };
}

async function checkDevice(device: BlockDevice, options: FsckOptions): Promise<FsckReport> {
  const findings: FsckFinding[] = [];
  const checked = { records: 0, batches: 0, values: 0, snapshots: 0, mounts: 0 };
  const progress = options.onProgress ?? ((): void => undefined);
  let format: FsckReport['format'] = 'unknown';
  try {
    progress(0, 'superblocks');
    try {
      checkImageSize(device); // before the slots are read: a file of 100 bytes was an EIO, exit 1
    } catch (err) {
      findings.push(fromOpenError(err));
      return report(findings, format, checked);
    }
    const slots = await superblockFindings(device);
    findings.push(...slots);
    progress(0.05, 'journal');
    let replayed: Replayed;
    try {
      replayed = await replayImage(device, 'legacy');
    } catch (err) {
      findings.push(fromOpenError(err));
      return report(findings, format, checked);
    }
    format = replayed.legacy === undefined ? 'v3' : 'legacy-v1';
    if (replayed.legacy !== undefined) {
      findings.push({ offset: 0, reason: 'legacy-v1', severity: 'info', message: 'legacy v1 image: opens as subject legacy and is upgraded by its first write' });
      const blocked = notUpgradable(replayed, replayed.legacy.segmentSize);
      if (blocked !== undefined) findings.push(blocked);
    }
    checked.records = replayed.scan.records;
    checked.batches = replayed.scan.batches;
    if (replayed.scan.torn !== undefined) {
      findings.push({ offset: replayed.scan.torn.offset, reason: 'torn-tail', severity: 'info', message: `the log ends in an incomplete batch (${replayed.scan.torn.fault}): crash residue, discarded` });
    }
    for (const o of replayed.orphans) {
      findings.push({ offset: o.offset, reason: 'orphaned-transaction', severity: 'repairable', message: `transaction ${o.txnId} of ${o.subject} was prepared but never committed or aborted` });
    }
    progress(0.5, 'values');
    await checkValues(device, replayed, findings, checked);
    progress(0.75, 'snapshots');
    await checkSnapshots(device, replayed, findings, checked);
    for (const m of replayed.mounts.all()) {
      checked.mounts++;
      if (replayed.snapshots.get(m.owner, m.name)?.id !== m.snapId) {
        findings.push({ offset: m.at, reason: 'mount-missing-snapshot', severity: 'repairable', message: `${m.caller}:${m.path} mounts ${m.owner}/${m.name}, which does not exist` });
      }
    }
    progress(1, 'done');
  } finally {
    await device.close();
  }
  return report(findings, format, checked);
}

function report(findings: FsckFinding[], format: FsckReport['format'], checked: FsckReport['checked']): FsckReport {
  const exitCode = findings.some((f) => f.severity === 'fatal') ? 2 : findings.some((f) => f.severity === 'repairable') ? 1 : 0;
  return { exitCode, format, findings, repaired: false, checked };
}

async function superblockFindings(device: BlockDevice): Promise<FsckFinding[]> {
  const out: FsckFinding[] = [];
  const results = [];
  for (const slot of [0, 1] as const) {
    const at = superblockOffset(slot, device.size);
    results.push({ slot, at, r: decodeSuperblock(await device.read(at, SUPERBLOCK_LENGTH), device.size) });
  }
  const good = results.filter((x) => x.r.ok);
  if (good.length === 1) {
    for (const x of results) {
      if (!x.r.ok) {
        out.push({
          offset: x.at,
          reason: x.slot === 0 ? 'superblock-a-damaged' : 'superblock-b-damaged',
          severity: 'repairable',
          message: `superblock slot ${x.slot === 0 ? 'A' : 'B'} is unreadable (${x.r.fault}); the other copy is used`,
        });
      }
    }
  }
  return out;
}

/**
 * A v1 state the v3 layout cannot hold (a review found fsck called such images clean): a value
 * whose record does not fit in a segment makes the upgrade, and so every write, fail; a key v3
 * refuses can be listed but never read or deleted.
 */
function notUpgradable(replayed: Replayed, segmentSize: number): FsckFinding | undefined {
  const largest = maxRecordLength(segmentSize);
  const bad: string[] = [];
  for (const [subject, tree] of replayed.index) {
    tree.forEachPair((bin, e) => {
      const key = fromBinary(bin);
      try {
        // Bytes that are not UTF-8 read back as U+FFFD: a key no call can name (a review).
        if (toBinary(key, 'key', 'fsck') !== bin) throw StatefsError.EINVAL('key bytes are not UTF-8', { op: 'fsck', subject });
        checkKey(key, 'fsck', subject);
      } catch (err) {
        bad.push(`key ${JSON.stringify(key)} (${asStatefsError(err, 'fsck').code})`);
        return;
      }
      const length = recordLength(subject.length + 1 + bin.length, replayed.entries.valueLength(e));
      if (length > largest) bad.push(`${JSON.stringify(key)} (a record of ${String(length)} bytes, over a segment)`);
    });
  }
  if (bad.length === 0) return undefined;
  const listed = bad.slice(0, 5).join(', ') + (bad.length > 5 ? `, and ${String(bad.length - 5)} more` : '');
  return { offset: 0, reason: 'legacy-not-upgradable', severity: 'fatal', message: `the v1 state reads, but v3 cannot hold ${listed}: read the values out and write them to a new image` };
}

function fromOpenError(err: unknown): FsckFinding {
  if (err instanceof StatefsError) {
    const offset = err.offset ?? 0;
    if (err.code === 'EINVAL') return { offset, reason: 'blank-image', severity: 'fatal', message: err.message };
    if (err.code === 'ENOTSUP') return { offset, reason: 'unsupported-record', severity: 'fatal', message: err.message };
    if (err.message.includes('both superblocks')) return { offset, reason: 'superblocks-damaged', severity: 'fatal', message: err.message };
    return { offset, reason: 'damage-before-valid-records', severity: 'fatal', message: err.message };
  }
  throw err;
}

/** Every value the live state or a snapshot reads: its records decode with a good CRC. */
async function checkValues(device: BlockDevice, replayed: Replayed, findings: FsckFinding[], checked: FsckReport['checked']): Promise<void> {
  if (replayed.legacy !== undefined) return; // v1 values were read whole by replay
  const entries = new Set<EntryRef>();
  for (const tree of [...replayed.index.values(), ...replayed.snapshots.all().map((s) => s.tree)]) for (const e of tree.values()) entries.add(e);
  await readEntriesBySegment(device, replayed.sb.segmentSize, replayed.entries, entries, (_entry, value) => {
    checked.values++;
    if (value instanceof StatefsError) {
      findings.push({ offset: value.offset ?? 0, reason: 'live-record-damaged', severity: 'fatal', message: value.message });
    }
  });
}

/** Every snapshot's content digest, recomputed from the records on the device. */
async function checkSnapshots(device: BlockDevice, replayed: Replayed, findings: FsckFinding[], checked: FsckReport['checked']): Promise<void> {
  for (const snap of replayed.snapshots.all()) {
    checked.snapshots++;
    if (snap.digest === undefined) {
      findings.push({ offset: snap.at, reason: 'snapshot-digest-missing', severity: 'info', message: `${snap.subject}/${snap.name} has no recorded digest yet (it is recomputed on open)` });
      continue;
    }
    const digest = await snapshotDigest(snap.tree, (_bin, entry) => readEntryValue(device, replayed.sb.segmentSize, replayed.entries.extents(entry)).catch(() => new Uint8Array(0)));
    if (Buffer.compare(digest, snap.digest) !== 0) {
      findings.push({ offset: snap.at, reason: 'snapshot-digest-mismatch', severity: 'fatal', message: `${snap.subject}/${snap.name}: content does not match its digest` });
    }
  }
}

/** Fix what `report` found repairable. Appends only; a damaged superblock slot gets the good copy. */
async function repair(device: BlockDevice, found: FsckReport): Promise<void> {
  const damagedSlot = found.findings.find((f) => f.reason === 'superblock-a-damaged' || f.reason === 'superblock-b-damaged');
  if (damagedSlot !== undefined) {
    const slot = damagedSlot.reason === 'superblock-a-damaged' ? 0 : 1;
    const other = decodeSuperblock(await device.read(superblockOffset(slot === 0 ? 1 : 0, device.size), SUPERBLOCK_LENGTH), device.size);
    if (other.ok) {
      await device.write(superblockOffset(slot, device.size), encodeSuperblock(other.sb));
      await device.flush();
    }
  }
  const store = await Store.openDevice(device, { autoGc: false });
  try {
    await store.abortOrphans();
    for (const m of store.mountsOfMissingSnapshots()) await store.umount(m.caller, m.path);
  } finally {
    await store.close();
  }
}
