// Progress lines on stderr from inside a job, so a slow step shows where the time goes.
import { performance } from 'node:perf_hooks';

export async function timed<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const result = await fn();
  process.stderr.write(`         ${label}: ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  return result;
}
