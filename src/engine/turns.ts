/**
 * Walks of the whole index (GC's search for what to move, `stat`, snapshot details) spread over
 * turns of the event loop: at a million keys one walk in one go held the loop 36–80 ms on a
 * 2-core VM, and every request waited. A walk is a generator that yields where it may pause.
 */

/** Index entries a walk looks at per turn of the event loop (a few ms). */
const WALK_STEP = 32_768;

/** Counts a walk's entries: `due()` is true after every `WALK_STEP`-th, where the walk pauses. */
export class Pace {
  private n = 0;

  due(): boolean {
    return ++this.n % WALK_STEP === 0;
  }
}

/** A walk: yields where it may pause for a turn, returns its result. */
export type Walk<T> = Generator<undefined, T, undefined>;

/** Run a walk to its end, one stretch per turn of the event loop (a walk shorter than one stretch takes none). */
export async function inTurns<T>(walk: Walk<T>): Promise<T> {
  for (;;) {
    const step = walk.next();
    if (step.done === true) return step.value;
    await new Promise((resolve) => setImmediate(resolve));
  }
}
