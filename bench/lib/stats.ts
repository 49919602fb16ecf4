// Small statistics over the repetitions and latencies the workloads record.

export function median(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const hi = sorted[mid] ?? 0;
  return sorted.length % 2 === 1 ? hi : ((sorted[mid - 1] ?? hi) + hi) / 2;
}

/** The p-quantile (0..1) of an ascending array. */
export function quantile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;
}

/** Latencies summarised: ops/s over the whole phase, p50, p99 and worst, in ms. */
export interface LatencySummary {
  opsPerSec: number;
  p50: number;
  p99: number;
  worst: number;
}

export function summarize(latencies: number[], seconds: number): LatencySummary {
  latencies.sort((a, b) => a - b);
  return { opsPerSec: latencies.length / seconds, p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99), worst: latencies.at(-1) ?? 0 };
}
