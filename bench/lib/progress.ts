// Progress lines on stderr from inside a job, so a slow step shows where the time goes, and a
// peak of memory which step reached it (the job's peak RSS is one figure of the table).
import { performance } from 'node:perf_hooks';

const MB = 1024 * 1024;

export async function timed<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const result = await fn();
  stepDone(label, performance.now() - t0);
  return result;
}

/** The line for a step that took `ms`, with the process's RSS now and its peak so far. */
export function stepDone(label: string, ms: number): void {
  // maxRSS is in KiB and only grows: a step that raised the job's peak shows a higher figure than the step before it.
  const peak = (process.resourceUsage().maxRSS * 1024) / MB;
  process.stderr.write(`         ${label}: ${(ms / 1000).toFixed(1)} s (RSS now ${(process.memoryUsage.rss() / MB).toFixed(0)} MB, peak so far ${peak.toFixed(0)} MB)\n`);
}
