import { StatefsError } from '../errors.js';
import type { EntryRef, EntryTable } from './entry-table.js';
import type { Extent, SegmentAllocator } from './journal-writer.js';

/**
 * Which segments are in use. A segment is in use while it is in the log chain (from the current
 * checkpoint's segment to the head: replay reads it) or holds a record of an indexed value.
 * Reference counts follow the working index, so a segment outside the chain is free as soon as
 * its last indexed record is superseded. That is safe before the superseding record is durable:
 * the segment can only be rewritten later in the log, and the journal flushes before it moves to
 * another segment, so a rewrite that reaches the disk implies the supersession did too.
 */
export class SegmentUsage implements SegmentAllocator {
  private readonly refs: Uint32Array;
  readonly liveBytes: Float64Array;
  private readonly inChain: Uint8Array;
  /** Segments of the log chain in log order. */
  chain: number[] = [];
  private readonly free: Uint8Array;
  private freeTotal = 0;
  /** Times each segment was taken for the log: a device read of a segment is stale if this changed meanwhile. */
  private readonly taken: Uint32Array;
  /**
   * Segments GC leaves alone for now, each with the entries whose value failed to read there
   * (damage found by a read on demand): such a value cannot be moved, so the segment cannot be
   * emptied, and choosing it again at every cycle would reclaim nothing anywhere. A segment comes
   * back once those entries are released (overwritten or deleted).
   */
  private readonly setAside = new Map<number, Set<EntryRef>>();
  /**
   * Per segment, its share of `candidateGarbage` (its dead bytes if it is a `gcCandidates`
   * segment, else 0), and their sum, brought up to date whenever something the share depends on
   * changes. Automatic GC asks for the sum after every durable round: a walk of all segments there
   * cost 67–94 µs of CPU per lone put on a 32 GiB image (docs/performance.md).
   */
  private readonly candidateShare: Float64Array;
  private candidateTotal = 0;
  /**
   * Whether the shares are kept: from the first `resetChain` (or ask) on. The open's accounting
   * adds every record of the index before that, and a share per record then would be thrown away.
   */
  private counting = false;
  /** Below 1/16 of a segment, moving the live rest would cost more than it frees. */
  private readonly minGarbage: number;

  constructor(
    readonly count: number,
    private readonly segmentSize: number,
    private readonly entries: EntryTable,
  ) {
    this.refs = new Uint32Array(count);
    this.liveBytes = new Float64Array(count);
    this.inChain = new Uint8Array(count);
    this.free = new Uint8Array(count);
    this.taken = new Uint32Array(count);
    this.minGarbage = segmentSize / 16;
    this.candidateShare = new Float64Array(count);
  }

  /** Set the chain and recompute free segments from scratch (open and after a checkpoint). */
  resetChain(chain: readonly number[]): void {
    this.chain = [...chain];
    this.inChain.fill(0);
    for (const s of chain) this.inChain[s] = 1;
    this.freeTotal = 0;
    for (let s = 0; s < this.count; s++) {
      const isFree = this.inChain[s] === 0 && this.refs[s] === 0 ? 1 : 0;
      this.free[s] = isFree;
      this.freeTotal += isFree;
    }
    this.recountAll();
  }

  addEntry(e: EntryRef): void {
    const entries = this.entries;
    const length = entries.recordLength(e);
    if (length === 0) return; // no record yet (a legacy v1 value)
    this.addRecord(entries.segment(e), length);
    for (const x of entries.moreRecords(e)) this.addRecord(x.segment, x.length);
  }

  removeEntry(e: EntryRef): void {
    const entries = this.entries;
    const length = entries.recordLength(e);
    if (length === 0) return;
    if (this.setAside.size > 0) this.forgetDamaged(e);
    this.removeRecord(entries.segment(e), length);
    for (const x of entries.moreRecords(e)) this.removeRecord(x.segment, x.length);
  }

  /** GC leaves every segment holding a record of `e` alone until `e` is released: its value failed to read. */
  setAsideFor(e: EntryRef): void {
    for (const s of [this.entries.segment(e), ...this.entries.moreRecords(e).map((x) => x.segment)]) {
      const damaged = this.setAside.get(s) ?? new Set<EntryRef>();
      damaged.add(e);
      this.setAside.set(s, damaged);
      this.recount(s);
    }
  }

  private forgetDamaged(e: EntryRef): void {
    for (const [s, damaged] of this.setAside) {
      if (damaged.delete(e) && damaged.size === 0) {
        this.setAside.delete(s);
        this.recount(s);
      }
    }
  }

  private isSetAside(segment: number): boolean {
    return this.setAside.size > 0 && this.setAside.has(segment);
  }

  private addRecord(segment: number, length: number): void {
    this.refs[segment] = (this.refs[segment] ?? 0) + 1;
    this.liveBytes[segment] = (this.liveBytes[segment] ?? 0) + length;
    this.recount(segment);
  }

  private removeRecord(segment: number, length: number): void {
    const refs = (this.refs[segment] ?? 1) - 1;
    this.refs[segment] = refs;
    this.liveBytes[segment] = (this.liveBytes[segment] ?? 0) - length;
    if (refs === 0 && this.inChain[segment] === 0 && this.free[segment] === 0) {
      this.free[segment] = 1;
      this.freeTotal++;
      this.setAside.delete(segment); // nothing of it is held: whatever failed to read there is gone
    }
    this.recount(segment);
  }

  /** Drop the chain before `segment` (a checkpoint there is durable); frees what nothing references. */
  trimChainBefore(segment: number): void {
    const at = this.chain.indexOf(segment);
    if (at > 0) this.resetChain(this.chain.slice(at));
  }

  freeCount(): number {
    return this.freeTotal;
  }

  take(): number {
    for (let s = 0; s < this.count; s++) {
      if (this.free[s] === 1) {
        this.entries.segmentTaken(s); // while it still holds what it held: nothing is written to it before this
        this.free[s] = 0;
        this.taken[s] = (this.taken[s] ?? 0) + 1;
        this.inChain[s] = 1;
        this.chain.push(s);
        this.freeTotal--;
        return s; // free before, in the chain now: its share of `candidateGarbage` is 0 either way
      }
    }
    throw StatefsError.ENOSPC('no free segment (internal: checkSpace must run first)', { op: 'append' });
  }

  /** How many times `segment` has been taken for the log since the open (see `taken`). */
  takenCount(segment: number): number {
    return this.taken[segment] ?? 0;
  }

  usedCount(): number {
    return this.count - this.freeTotal;
  }

  /**
   * Segments GC may empty: in use, outside the log chain (replay never reads them), with at
   * least 1/16 of the segment garbage, not set aside (`setAsideFor`). Ordered by live bytes, then index: the cheapest to empty first, deterministically.
   */
  gcCandidates(): number[] {
    const out: number[] = [];
    for (let s = 0; s < this.count; s++) if (this.candidateBytes(s) > 0) out.push(s);
    return out.sort((a, b) => (this.liveBytes[a] ?? 0) - (this.liveBytes[b] ?? 0) || a - b);
  }

  /** Garbage bytes in the `gcCandidates` segments: the same sum, without building and sorting the list (kept as segments change). */
  candidateGarbage(): number {
    if (!this.counting) this.recountAll();
    return this.candidateTotal;
  }

  /** The garbage bytes `segment` adds to `candidateGarbage`: all its dead bytes if it is a candidate, else 0. */
  private candidateBytes(segment: number): number {
    if (this.free[segment] !== 0 || this.inChain[segment] !== 0 || this.isSetAside(segment)) return 0;
    const dead = this.segmentSize - (this.liveBytes[segment] ?? 0);
    return dead >= this.minGarbage ? dead : 0;
  }

  /** `segment` changed: bring its share of `candidateGarbage` up to date. */
  private recount(segment: number): void {
    if (!this.counting) return;
    const now = this.candidateBytes(segment);
    this.candidateTotal += now - (this.candidateShare[segment] ?? 0);
    this.candidateShare[segment] = now;
  }

  /** Every segment's share from scratch; from here on they are kept (`counting`). */
  private recountAll(): void {
    this.candidateTotal = 0;
    for (let s = 0; s < this.count; s++) {
      const bytes = this.candidateBytes(s);
      this.candidateShare[s] = bytes;
      this.candidateTotal += bytes;
    }
    this.counting = true;
  }

  isFree(segment: number): boolean {
    return this.free[segment] === 1;
  }

  /** Move an entry, and its accounting, to the record `to` (GC relocation). */
  moveEntry(e: EntryRef, to: Extent): void {
    this.addRecord(to.segment, to.length);
    this.removeEntry(e);
    this.entries.moveTo(e, to);
  }
}
