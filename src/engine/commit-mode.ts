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

/** Decides, commit by commit, whether the next durable write runs inline. */
export class CommitPlacement {
  private average: number | undefined;
  private inlineNow: boolean;

  constructor(readonly mode: CommitMode = 'auto') {
    // Options reach here from JavaScript callers and the daemon's command line unchecked by types.
    if (!COMMIT_MODES.includes(mode)) throw StatefsError.EINVAL(`commit mode ${mode}: use ${COMMIT_MODES.join(', ')}`, { op: 'open' });
    this.inlineNow = mode !== 'background';
  }

  /** Whether a durable write of `bytes` should run on the calling thread. */
  inlineFor(bytes: number): boolean {
    return this.mode === 'inline' || (this.inlineNow && bytes <= INLINE_MAX_BYTES);
  }

  /** Whether small commits currently run inline (`auto` switches this as the disk speeds up or slows down). */
  get inline(): boolean {
    return this.inlineNow;
  }

  /** Record how long a durable write of `bytes` took (ms, as the caller waited for it). */
  record(ms: number, bytes: number): void {
    if (this.mode !== 'auto' || bytes > INLINE_MAX_BYTES) return;
    this.average = this.average === undefined ? ms : this.average + WEIGHT * (ms - this.average);
    if (this.inlineNow && this.average > INLINE_MAX_MS) this.inlineNow = false;
    else if (!this.inlineNow && this.average < INLINE_RETURN_MS) this.inlineNow = true;
  }
}
