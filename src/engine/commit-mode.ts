import { performance } from 'node:perf_hooks';
import { StatefsError } from '../errors.js';

/**
 * Where a group commit's durable write runs.
 * - `inline`: on the event loop's own thread, a synchronous `O_DSYNC` write. No trip to the I/O
 *   thread pool and back (on a fast disk that trip is a third of a lone put's latency), but the
 *   event loop waits for the disk meanwhile.
 * - `background`: on libuv's thread pool; the event loop keeps serving while the disk works.
 * - `auto` (the default): small commits inline while the disk answers fast, in the background while
 *   it does not, and large writes always in the background (see `CommitPlacement`), so a slow disk
 *   or a bulk load never stalls the event loop for long.
 * Either way a put resolves only after its record is durable; only the waiting thread differs.
 */
export type CommitMode = 'auto' | 'inline' | 'background';

export const COMMIT_MODES: readonly CommitMode[] = ['auto', 'inline', 'background'];

/**
 * Larger writes (bulk loads, GC moves) always go to the thread pool: they take long enough that
 * the pool trip does not matter, and the event loop should not stall for them. Their times are
 * not counted in the running average, which is about the small commits that wait on the disk's
 * sync latency.
 */
export const INLINE_MAX_BYTES = 64 * 1024;
/** `auto` moves commits to the thread pool when the running average commit takes longer than this. */
export const INLINE_MAX_MS = 1;
/**
 * …and back inline once it is below this. Timed in the background, a commit includes the trip to
 * the pool and back, so the disk itself is faster than this figure; the gap to `INLINE_MAX_MS`
 * keeps the choice from flapping.
 */
export const INLINE_RETURN_MS = 0.8;
/** Weight of the newest commit in the running average (about the last ten commits count). */
const WEIGHT = 0.2;
/**
 * While `auto` is in the background, one small commit is written inline now and then to time the
 * disk itself: a commit timed in the background includes the trip to the thread pool, which on a
 * busy or slow machine alone can keep the average over `INLINE_RETURN_MS` with a fast disk (a
 * cold first commit after open, 2 ms, then kept a store's every commit on the pool, each paying
 * a 0.4–0.8 ms trip: measured on a 2-core VM). The first probe comes this long after the move…
 */
export const PROBE_FIRST_MS = 100;
/** …and the wait doubles after each slow probe, up to this: a stalled disk blocks the event loop for one commit now and then, not for every one. */
export const PROBE_MAX_MS = 5000;

/** Decides, commit by commit, whether the next durable write runs inline. */
export class CommitPlacement {
  private average: number | undefined;
  private inlineNow: boolean;
  /** In the background: when the next inline probe may go (`performance.now()` time), and the wait after it. */
  private probeAt = 0;
  private probeEvery = PROBE_FIRST_MS;
  /** When small commits last went inline (`performance.now()` time). */
  private inlineSince = Number.NEGATIVE_INFINITY;

  constructor(readonly mode: CommitMode = 'auto') {
    // Options reach here from JavaScript callers and the daemon's command line unchecked by types.
    if (!COMMIT_MODES.includes(mode)) throw StatefsError.EINVAL(`commit mode ${mode}: use ${COMMIT_MODES.join(', ')}`, { op: 'open' });
    this.inlineNow = mode !== 'background';
  }

  /** Whether a durable write of `bytes` should run on the calling thread (in the background, a probe when one is due). */
  inlineFor(bytes: number, now = performance.now()): boolean {
    if (this.mode !== 'auto') return this.mode === 'inline';
    return bytes <= INLINE_MAX_BYTES && (this.inlineNow || now >= this.probeAt);
  }

  /** Whether small commits currently run inline (`auto` switches this as the disk speeds up or slows down). */
  get inline(): boolean {
    return this.inlineNow;
  }

  /** Record how long a durable write of `bytes` took (ms, as the caller waited for it), and whether it was written `inline`. */
  record(ms: number, bytes: number, inline: boolean, now = performance.now()): void {
    if (this.mode !== 'auto' || bytes > INLINE_MAX_BYTES) return;
    if (inline && !this.inlineNow) {
      // A probe: the disk's own time, kept out of the background average.
      if (ms < INLINE_RETURN_MS) this.moveInline(ms, now);
      else this.probeAt = now + this.backOff();
      return;
    }
    this.average = this.average === undefined ? ms : this.average + WEIGHT * (ms - this.average);
    if (this.inlineNow && this.average > INLINE_MAX_MS) {
      this.inlineNow = false;
      // One fast probe is one sample: a disk that stalls now and then passes most probes. Back
      // inline for less than PROBE_MAX_MS, the wait keeps doubling (else such a disk blocked the
      // event loop for a stall every PROBE_FIRST_MS); after longer inline it starts again.
      this.probeAt = now + (now - this.inlineSince < PROBE_MAX_MS ? this.backOff() : (this.probeEvery = PROBE_FIRST_MS));
    } else if (!this.inlineNow && this.average < INLINE_RETURN_MS) {
      this.moveInline(this.average, now);
    }
  }

  private backOff(): number {
    return (this.probeEvery = Math.min(2 * this.probeEvery, PROBE_MAX_MS));
  }

  private moveInline(average: number, now: number): void {
    this.inlineNow = true;
    this.average = average;
    this.inlineSince = now;
  }
}
