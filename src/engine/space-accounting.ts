import { StatefsError } from '../errors.js';
import type { Superblock } from '../format/superblock.js';
import { BTree, diffTrees } from './btree.js';
import type { EntryRef, EntryTable } from './entry-table.js';
import type { Trees } from './keyspace.js';
import type { SegmentUsage } from './segment-usage.js';
import type { Snapshot, SnapshotTable } from './snapshot-table.js';
import type { OpenOptions, SnapshotInfo, SnapshotPin, StoreStat, SubjectStat } from './store-types.js';
import { Pace, inTurns, type Walk } from './turns.js';

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

/** The index at one moment, for a walk over turns of the event loop (`SpaceAccounting.frozen`). */
interface IndexState {
  trees: Trees;
  /** In id order. */
  snapshots: Snapshot[];
  /** The same snapshots by subject: who holds what, as of that moment (`heldByAnother`). */
  snapshotsOf: Map<string, Snapshot[]>;
  /** Each snapshot's entries the live tree does not hold, once found (`notLiveIn`): `stat` needs them twice. */
  notLive: Map<Snapshot, [string, EntryRef][]>;
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

  /**
   * Every distinct entry held by a live tree or a snapshot with a record in `segments`, with a
   * subject and key that hold it, in the state of the moment it is called (`frozen`), walked over
   * turns of the event loop. Entries superseded meanwhile are still listed (GC checks each one
   * before it moves it); no entry can gain a record in `segments` meanwhile, since new records go
   * to the head of the log.
   */
  heldEntriesIn(segments: ReadonlySet<number>): Promise<HeldEntry[]> {
    return inTurns(this.walkHeld(segments, this.frozen(), new Pace()));
  }

  private *walkHeld(segments: ReadonlySet<number>, state: IndexState, pace: Pace): Walk<HeldEntry[]> {
    const out: HeldEntry[] = [];
    const pair: (string | EntryRef)[] = [];
    // An entry is in at most one live tree (one subject, one key): no dedupe needed there.
    for (const [subject, tree] of state.trees) {
      for (const [bin, entry] of tree.entries(undefined, pair)) {
        if (this.host.entries.hasRecordIn(entry, segments)) out.push({ subject, bin, entry });
        if (pace.due()) yield;
      }
    }
    const seen = new Set<EntryRef>();
    for (const snap of state.snapshots) {
      for (const [bin, entry] of this.notLiveIn(state, snap)) {
        if (pace.due()) yield;
        if (seen.has(entry) || !this.host.entries.hasRecordIn(entry, segments)) continue;
        seen.add(entry);
        out.push({ subject: snap.subject, bin, entry });
      }
    }
    return out;
  }

  /** The index as it is now, for a walk over turns: copy-on-write clones of the live trees (O(1) each), and the snapshots (immutable). */
  private frozen(): IndexState {
    const trees: Trees = new Map();
    for (const [subject, tree] of this.host.trees()) trees.set(subject, tree.clone());
    const snapshots = this.host.snapshots.all();
    const snapshotsOf = new Map<string, Snapshot[]>();
    for (const snap of snapshots) {
      let of = snapshotsOf.get(snap.subject);
      if (of === undefined) snapshotsOf.set(snap.subject, (of = []));
      of.push(snap);
    }
    return { trees, snapshots, snapshotsOf, notLive: new Map() };
  }

  /** Whether a snapshot of `subject` in `state` other than `except` holds exactly `entry` at `bin` (`SnapshotTable.holds`, as of that moment). */
  private heldByAnother(state: IndexState, subject: string, bin: string, entry: EntryRef, except: Snapshot): boolean {
    for (const snap of state.snapshotsOf.get(subject) ?? []) if (snap !== except && snap.tree.get(bin) === entry) return true;
    return false;
  }

  private notLiveIn(state: IndexState, snap: Snapshot): [string, EntryRef][] {
    let found = state.notLive.get(snap);
    if (found === undefined) state.notLive.set(snap, (found = this.notLive(snap, state.trees)));
    return found;
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

  /** Each snapshot's keys and bytes, the bytes only it holds, and its digest once known (walked over turns of the event loop). */
  snapshotInfos(snaps: readonly Snapshot[]): Promise<SnapshotInfo[]> {
    return inTurns(this.walkSnapshotInfos(snaps, this.frozen(), new Pace()));
  }

  private *walkSnapshotInfos(snaps: readonly Snapshot[], state: IndexState, pace: Pace): Walk<SnapshotInfo[]> {
    const out: SnapshotInfo[] = [];
    for (const snap of snaps) out.push(yield* this.walkSnapshotInfo(snap, state, pace));
    return out;
  }

  private *walkSnapshotInfo(snap: Snapshot, state: IndexState, pace: Pace): Walk<SnapshotInfo> {
    let bytes = 0;
    for (const e of snap.tree.values()) {
      bytes += this.host.entries.diskBytes(e);
      if (pace.due()) yield;
    }
    let exclusiveBytes = 0;
    for (const [bin, e] of this.notLiveIn(state, snap)) {
      // Held by another snapshot as of the walk's moment, not now: one deleted since shares nothing less.
      if (!this.heldByAnother(state, snap.subject, bin, e, snap)) exclusiveBytes += this.host.entries.diskBytes(e);
      if (pace.due()) yield;
    }
    const info: SnapshotInfo = { name: snap.name, id: snap.id, keys: snap.tree.size, bytes, exclusiveBytes };
    if (snap.digest !== undefined) info.digest = Buffer.from(snap.digest).toString('hex');
    return info;
  }

  /**
   * What each snapshot pins (bytes no GC cycle can reclaim while it exists) as of now, walked over
   * turns of the event loop when the returned function is called: `gcPlan` takes its state with
   * the plan's, and walks it after the plan's walk, not in the same turns.
   */
  pinnedBySnapshotsNow(): () => Promise<SnapshotPin[]> {
    const state = this.frozen();
    return () => inTurns(this.walkPinned(state, new Pace()));
  }

  private *walkPinned(state: IndexState, pace: Pace): Walk<SnapshotPin[]> {
    const out: SnapshotPin[] = [];
    for (const snap of state.snapshots) {
      const info = yield* this.walkSnapshotInfo(snap, state, pace);
      out.push({ subject: snap.subject, name: snap.name, exclusiveBytes: info.exclusiveBytes });
    }
    return out;
  }

  /**
   * Space accounting for the image and each subject as of the moment it is called (`headFree`: the
   * head segment's unwritten tail); the per-key sums are walked over turns of the event loop.
   */
  stat(image: Pick<Superblock, 'capacity' | 'segmentSize' | 'segmentCount'>, headFree: number): Promise<StoreStat> {
    const { usage } = this.host;
    const { segmentSize, segmentCount, capacity } = image;
    const segmentsFree = usage.freeCount();
    const segmentsUsed = segmentCount - segmentsFree;
    const usedBytes = segmentsUsed * segmentSize - headFree;
    let liveBytes = 0;
    for (let seg = 0; seg < segmentCount; seg++) liveBytes += usage.liveBytes[seg] ?? 0;
    const figures: Omit<StoreStat, 'subjects' | 'snapshots'> = {
      capacity,
      segmentSize,
      segments: segmentCount,
      segmentsUsed,
      segmentsFree,
      usedBytes,
      liveBytes,
      garbageBytes: usedBytes - liveBytes,
      freeBytes: segmentsFree * segmentSize + headFree,
    };
    return inTurns(this.walkStat(figures, this.frozen(), new Map(this.subjectBytes), new Pace()));
  }

  private *walkStat(image: Omit<StoreStat, 'subjects' | 'snapshots'>, state: IndexState, subjectBytes: ReadonlyMap<string, number>, pace: Pace): Walk<StoreStat> {
    const subjects: SubjectStat[] = [];
    const names = new Set([...state.trees.keys(), ...state.snapshots.map((snap) => snap.subject)]);
    for (const subject of [...names].sort()) {
      const tree = state.trees.get(subject);
      const snaps = state.snapshots.filter((snap) => snap.subject === subject);
      if ((tree === undefined || tree.size === 0) && snaps.length === 0) continue;
      const stat: SubjectStat = { subject, keys: tree?.size ?? 0, liveBytes: 0, snapshotOnlyBytes: 0, usedBytes: subjectBytes.get(subject) ?? 0, snapshots: snaps.length };
      for (const e of tree?.values() ?? []) {
        stat.liveBytes += this.host.entries.diskBytes(e);
        if (pace.due()) yield;
      }
      const counted = new Set<EntryRef>();
      for (const snap of snaps) {
        for (const [, e] of this.notLiveIn(state, snap)) {
          if (pace.due()) yield;
          if (counted.has(e)) continue;
          counted.add(e);
          stat.snapshotOnlyBytes += this.host.entries.diskBytes(e);
        }
      }
      subjects.push(stat);
    }
    return { ...image, subjects, snapshots: yield* this.walkPinned(state, pace) };
  }
}
