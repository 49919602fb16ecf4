// The longest time between two turns of the event loop while something runs (a probe re-armed
// with setImmediate), and the longest V8 garbage-collection pause meanwhile, which is no one
// operation's doing but holds the loop all the same.
import { PerformanceObserver, performance } from 'node:perf_hooks';

export class LoopProbe {
  private last = performance.now();
  private worst = 0;
  private running = true;
  private worstGc = 0;
  private readonly gc = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) this.worstGc = Math.max(this.worstGc, e.duration);
  });

  constructor() {
    this.gc.observe({ entryTypes: ['gc'] });
    this.tick();
  }

  private tick(): void {
    const now = performance.now();
    this.worst = Math.max(this.worst, now - this.last);
    this.last = now;
    if (this.running) {
      setImmediate(() => {
        this.tick();
      });
    }
  }

  /** The longest gap between two turns, ms. */
  stop(): number {
    this.running = false;
    this.gc.disconnect();
    return this.worst;
  }

  /** The longest V8 GC pause seen (ms; read after `stop`). */
  get longestGcPause(): number {
    return this.worstGc;
  }
}
