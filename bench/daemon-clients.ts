// Durable puts and gets over the daemon's Unix socket with 1, 16 and 64 clients (issue 7):
// ops/s, p50 and p99 latency. The daemon runs in a child process, as in production.
// `npm run bench` records the same phases in its table; this prints them alone.
// Run: npm run build && node dist/bench/daemon-clients.js   (STATEFS_BENCH_SECONDS per phase, default 3)
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LatencySummary } from './lib/stats.js';
import { statefsdLoad } from './lib/statefsd-load.js';

const seconds = Number(process.env.STATEFS_BENCH_SECONDS ?? 3);

function line(kind: string, s: LatencySummary): string {
  return `${kind}: ${s.opsPerSec.toFixed(0)} ops/s, p50 ${s.p50.toFixed(2)} ms, p99 ${s.p99.toFixed(2)} ms`;
}

const dir = await mkdtemp(join(tmpdir(), 'statefs-daemon-bench-'));
try {
  for (const p of await statefsdLoad(dir, [1, 16, 64], seconds)) {
    console.log(`${String(p.clients).padStart(2)} clients: ${line('puts', p.put)}; ${line('gets', p.get)}`);
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
