// Many clients, each issuing one request at a time for a fixed time: ops/s and latency.
import { performance } from 'node:perf_hooks';
import { summarize, type LatencySummary } from './stats.js';

/** One client's request for its i-th operation. */
type ClientOp = (client: number, i: number) => Promise<unknown>;

async function clientPhase(clients: number, seconds: number, op: ClientOp): Promise<LatencySummary> {
  const latencies: number[] = [];
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let i = 0; performance.now() < end; i++) {
        const s = performance.now();
        await op(c, i);
        latencies.push(performance.now() - s);
      }
    }),
  );
  return summarize(latencies, (performance.now() - t0) / 1000);
}

const KEYS_PER_CLIENT = 1000;

/**
 * Puts then gets by many clients: client c puts keys `/state/c<c>/k<i % 1000>`, then gets only
 * keys it wrote, and every get must find a value.
 */
export async function putThenGet(
  clients: number,
  seconds: number,
  put: (client: number, key: string) => Promise<unknown>,
  get: (client: number, key: string) => Promise<unknown>,
): Promise<{ put: LatencySummary; get: LatencySummary }> {
  const key = (c: number, i: number): string => `/state/c${c}/k${i % KEYS_PER_CLIENT}`;
  const written = new Array<number>(clients).fill(0);
  const putSummary = await clientPhase(clients, seconds, async (c, i) => {
    await put(c, key(c, i));
    written[c] = Math.max(written[c] ?? 0, i + 1);
  });
  const getSummary = await clientPhase(clients, seconds, async (c, i) => {
    const k = key(c, i % Math.max(1, Math.min(KEYS_PER_CLIENT, written[c] ?? 0)));
    if ((await get(c, k)) == null) throw new Error(`get ${k}: no value, though the put of it was acknowledged`);
  });
  return { put: putSummary, get: getSummary };
}

export async function retry<T>(attempts: number, delayMs: number, fn: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (i >= attempts) throw err;
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
}

export function fail(message: string): never {
  throw new Error(message);
}
