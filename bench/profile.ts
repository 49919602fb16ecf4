// `npm run bench:profile`: CPU profiles of StateFS's W2 (durable puts, 64 in flight), W3 (the
// bulk load), W4 (random gets over the loaded keys) and reopen, each covering only that step,
// written to bench/results/statefs-<step>.cpuprofile, then summarised. BENCH_KEYS etc. apply as
// for `npm run bench`.
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runJob } from './lib/jobs.js';
import { RESULTS_DIR } from './lib/paths.js';

const env = { ...process.env, BENCH_CPU_PROFILE: RESULTS_DIR };
const dir = await mkdtemp(join(tmpdir(), 'statefs-profile-'));
try {
  for (const job of ['write', 'load', 'reopen'] as const) {
    const run = await runJob(job, 'statefs', join(dir, job === 'write' ? 'small' : 'big'), env);
    if (run.error !== undefined) throw new Error(run.error);
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
const summary = fileURLToPath(new URL('profile-summary.js', import.meta.url));
const files = ['w2', 'w3', 'w4-get', 'reopen'].map((step) => join(RESULTS_DIR, `statefs-${step}.cpuprofile`));
spawnSync(process.execPath, [summary, ...files], { stdio: 'inherit' });
