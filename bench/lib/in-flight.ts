// Keep `width` calls in flight until `count` have completed (a sliding window, not waves).

export async function inFlight(width: number, count: number, call: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) await call(next++);
  };
  await Promise.all(Array.from({ length: Math.min(width, count) }, worker));
}

/** Like `inFlight`, for `seconds`: returns how many calls completed and their latencies (ms). */
export async function inFlightFor(width: number, seconds: number, call: (i: number) => Promise<unknown>): Promise<{ latencies: number[]; elapsed: number }> {
  const latencies: number[] = [];
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (performance.now() < end) {
      const s = performance.now();
      await call(next++);
      latencies.push(performance.now() - s);
    }
  };
  await Promise.all(Array.from({ length: width }, worker));
  return { latencies, elapsed: (performance.now() - t0) / 1000 };
}
