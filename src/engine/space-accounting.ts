import { StatefsError } from '../errors.js';
import type { Superblock } from '../format/superblock.js';
import { BTree, diffTrees } from './btree.js';
import type { EntryRef, EntryTable } from './entry-table.js';
import type { Trees } from './keyspace.js';
import type { SegmentUsage } from './segment-usage.js';
import type { Snapshot, SnapshotTable } from './snapshot-table.js';
import type { OpenOptions, SnapshotInfo, SnapshotPin, StoreStat, SubjectStat } from './store-types.js';

/** What space accounting needs from the store. */
export interface SpaceHost {
  readonly usage: SegmentUsage;
  readonly entries: EntryTable;
  readonly snapshots: SnapshotTable;
  /** The working trees: what the live state holds. */
  trees(): Trees;
  /** The quotas in force now (`setAccess` replaces them). */
  quotaOptions(): Pick<OpenOptions, 'quotas' | 'quotaWarnIntervalMs'>;
  marker(line: string): void;
}

/** An entry held by a live tree or a snapshot, with a subject and key that hold it. */
interface HeldEntry {
  subject: string;
  bin: string;
  entry: EntryRef;
}

/** A soft-quota warning a write earns, given once the write is durable. */
export interface QuotaWarning {
  subject: string;
  /** What the subject uses with the write, as counted when the write was checked. */
  used: number;
  soft: number;
}

/**
 * Space accounting: the records each entry held by a live tree or a snapshot keeps in use, per
 * segment (`SegmentUsage`) and per subject (what quotas count), the quota checks on writes, and
 * the figures `stat`, `listSnaps` and `gcPlan` report.
 */
export class SpaceAccounting {
  /** Per subject: bytes of the records its live tree or its snapshots hold (what quotas count). */
  private readonly subjectBytes: Map<string, number>;
  /** When each subject was last warned about its soft quota (markers only, never a decision). */
  private readonly quotaWarnedAt = new Map<string, number>();

  /** `subjectBytes`: per subject, as open counted them (`IndexAccounting`). */
  constructor(
    private readonly host: SpaceHost,
    subjectBytes: ReadonlyMap<string, number>,
  ) {
    this.subjectBytes = new Map(subjectBytes);
  }

  /** An entry starts being held (by the live tree or a snapshot): its records are in use. */
  count(subject: string, e: EntryRef): void {
    this.host.usage.addEntry(e);
    this.addSubjectBytes(subject, this.host.entries.diskBytes(e));
  }

  /** Nothing holds the entry any more. */
  private uncount(subject: string, e: EntryRef): void {
    this.host.usage.removeEntry(e);
    this.addSubjectBytes(subject, -this.host.entries.diskBytes(e));
    this.host.entries.released(e);
  }

  /** The subject's records take `delta` more bytes (fewer, if negative). */
  addSubjectBytes(subject: string, delta: number): void {
    this.subjectBytes.set(subject, (this.subjectBytes.get(subject) ?? 0) + delta);
  }

  /** An entry left the live tree: its records stay in use only while a snapshot holds it. */
  release(subject: string, bin: string, old: EntryRef | undefined): void {
    if (old !== undefined && !this.host.snapshots.holds(subject, bin, old)) this.uncount(subject, old);
  }

  /** A snapshot was deleted (it is out of the table): what no live tree or other snapshot holds is free. */
  releaseSnapshot(snap: Snapshot): void {
    for (const [bin, e] of this.notLive(snap)) if (!this.host.snapshots.holds(snap.subject, bin, e)) this.uncount(snap.subject, e);
  }

  /** Bytes a write of `bin` releases: its current entry, unless a snapshot keeps holding it. */
  freedBy(subject: string, bin: string): number {
    const old = this.host.trees().get(subject)?.get(bin);
    return old === undefined || this.host.snapshots.holds(subject, bin, old) ? 0 : this.host.entries.diskBytes(old);
  }

  /**
   * Refuse a write that would take `subject` over its hard quota. Over the soft one, returns the
   * warning to give once the write is durable (`warnQuota`): a marker never runs ahead of the
   * fact it states, and a write that fails warns of nothing.
   */
  checkQuota(subject: string, delta: number, op: string, key: string | undefined): QuotaWarning | undefined {
    const quota = this.host.quotaOptions().quotas?.[subject];
    if (quota === undefined || delta <= 0) return undefined;
    const used = (this.subjectBytes.get(subject) ?? 0) + delta;
    if (used > quota.hard) {
      this.host.marker(`statefs: quota deny subject=${subject} used=${used} hard=${quota.hard}`);
      throw StatefsError.EDQUOTA(`${subject} would use ${used} bytes (hard quota ${quota.hard})`, { op, subject, ...(key === undefined ? {} : { key }) });
    }
    return used > quota.soft ? { subject, used, soft: quota.soft } : undefined;
  }

  /** A write `checkQuota` warned of is durable: the soft-quota marker, once per subject per interval. */
  warnQuota(warning: QuotaWarning | undefined): void {
    if (warning === undefined) return;
    const { subject, used, soft } = warning;
    const now = Date.now();
    const last = this.quotaWarnedAt.get(subject);
    if (last !== undefined && now - last < (this.host.quotaOptions().quotaWarnIntervalMs ?? 60_000)) return;
    this.quotaWarnedAt.set(subject, now);
    this.host.marker(`statefs: quota warn subject=${subject} used=${used} soft=${soft}`);
  }

  /** Every distinct entry held by a live tree or a snapshot with a record in `segments`, with a subject and key that hold it. */
  heldEntriesIn(segments: ReadonlySet<number>): HeldEntry[] {
    const out: HeldEntry[] = [];
    const walk = this.walkHeld(segments, this.host.trees(), this.host.snapshots.all(), out, Number.POSITIVE_INFINITY);
    for (let step = walk.next(); step.done !== true; step = walk.next());
    return out;
  }

  /**
   * `heldEntriesIn` for the state of the moment it is called (copy-on-write clones of the live
   * trees, the snapshots then), walked `step` entries per turn of the event loop: at a million
   * keys the walk in one go held the loop 50–80 ms. Entries superseded meanwhile are still listed
   * (GC checks each one before it moves it); no entry can gain a record in `segments` meanwhile,
   * since new records go to the head of the log.
   */
  async heldEntriesInSteps(segments: ReadonlySet<number>, step: number): Promise<HeldEntry[]> {
    const frozen: Trees = new Map();
    for (const [subject, tree] of this.host.trees()) frozen.set(subject, tree.clone());
    const out: HeldEntry[] = [];
    const walk = this.walkHeld(segments, frozen, this.host.snapshots.all(), out, step);
    while (walk.next().done !== true) await new Promise((resolve) => setImmediate(resolve));
    return out;
  }

  /** Fills `out` (see `heldEntriesIn`), pausing after every `step` entries of the live trees and after each snapshot. */
  private *walkHeld(segments: ReadonlySet<number>, trees: Trees, snapshots: readonly Snapshot[], out: HeldEntry[], step: number): Generator<undefined, void, undefined> {
    const pair: (string | EntryRef)[] = [];
    let walked = 0;
    // An entry is in at most one live tree (one subject, one key): no dedupe needed there.
    for (const [subject, tree] of trees) {
      for (const [bin, entry] of tree.entries(undefined, pair)) {
        if (this.host.entries.hasRecordIn(entry, segments)) out.push({ subject, bin, entry });
        if (++walked % step === 0) yield;
      }
    }
    const seen = new Set<EntryRef>();
    for (const snap of snapshots) {
      for (const [bin, entry] of this.notLive(snap, trees)) {
        if (seen.has(entry) || !this.host.entries.hasRecordIn(entry, segments)) continue;
        seen.add(entry);
        out.push({ subject: snap.subject, bin, entry });
      }
      yield;
    }
  }

  /** Entries of a snapshot that its subject's live tree (in `trees`, by default the working trees) does not hold. */
  private notLive(snap: Snapshot, trees: Trees = this.host.trees()): [string, EntryRef][] {
    const out: [string, EntryRef][] = [];
    const live = trees.get(snap.subject) ?? new BTree<string, EntryRef>();
    diffTrees(
      snap.tree,
      live,
      (bin, e) => out.push([bin, e]),
      () => undefined,
      (bin, e) => out.push([bin, e]),
    );
    return out;
  }

  /** A snapshot's keys and bytes, the bytes only it holds, and its digest once known. */
  snapshotInfo(snap: Snapshot): SnapshotInfo {
    let bytes = 0;
    for (const e of snap.tree.values()) bytes += this.host.entries.diskBytes(e);
    let exclusiveBytes = 0;
    for (const [bin, e] of this.notLive(snap)) if (!this.host.snapshots.holds(snap.subject, bin, e, snap)) exclusiveBytes += this.host.entries.diskBytes(e);
    const info: SnapshotInfo = { name: snap.name, id: snap.id, keys: snap.tree.size, bytes, exclusiveBytes };
    if (snap.digest !== undefined) info.digest = Buffer.from(snap.digest).toString('hex');
    return info;
  }

  /** What each snapshot pins: bytes no GC cycle can reclaim while it exists. */
  pinnedBySnapshots(): SnapshotPin[] {
    return this.host.snapshots.all().map((snap) => ({ subject: snap.subject, name: snap.name, exclusiveBytes: this.snapshotInfo(snap).exclusiveBytes }));
  }

  /** Space accounting for the image and each subject; `headFree`: the head segment's unwritten tail. */
  stat(image: Pick<Superblock, 'capacity' | 'segmentSize' | 'segmentCount'>, headFree: number): StoreStat {
    const { usage, snapshots } = this.host;
    const trees = this.host.trees();
    const subjects: SubjectStat[] = [];
    const names = new Set([...trees.keys(), ...snapshots.all().map((snap) => snap.subject)]);
    for (const subject of [...names].sort()) {
      const tree = trees.get(subject);
      const snaps = snapshots.of(subject);
      if ((tree === undefined || tree.size === 0) && snaps.length === 0) continue;
      const stat: SubjectStat = { subject, keys: tree?.size ?? 0, liveBytes: 0, snapshotOnlyBytes: 0, usedBytes: this.subjectBytes.get(subject) ?? 0, snapshots: snaps.length };
      for (const e of tree?.values() ?? []) stat.liveBytes += this.host.entries.diskBytes(e);
      const counted = new Set<EntryRef>();
      for (const snap of snaps) {
        for (const [, e] of this.notLive(snap)) {
          if (counted.has(e)) continue;
          counted.add(e);
          stat.snapshotOnlyBytes += this.host.entries.diskBytes(e);
        }
      }
      subjects.push(stat);
    }
    const { segmentSize, segmentCount, capacity } = image;
    const segmentsFree = usage.freeCount();
    const segmentsUsed = segmentCount - segmentsFree;
    const usedBytes = segmentsUsed * segmentSize - headFree;
    let liveBytes = 0;
    for (let seg = 0; seg < segmentCount; seg++) liveBytes += usage.liveBytes[seg] ?? 0;
    return {
      capacity,
      segmentSize,
      segments: segmentCount,
      segmentsUsed,
      segmentsFree,
      usedBytes,
      liveBytes,
      garbageBytes: usedBytes - liveBytes,
      freeBytes: segmentsFree * segmentSize + headFree,
      subjects,
      snapshots: this.pinnedBySnapshots(),
    };
  }
}
