// The jobs a child process can run, and running one from the orchestrator.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { EngineName } from './config.js';
import { WORKER_JS } from './paths.js';
import { readJobResult, type JobResult } from './recorder.js';

export const JOBS = ['write', 'load', 'reopen', 'raw', 'gc', 'statefsd', 'redis'] as const;
export type Job = (typeof JOBS)[number];

/** Client counts of the daemon phases; redis is measured at the last one (issue 8's target). */
export const DAEMON_CLIENTS = [1, 16, 64] as const;
export const REDIS_CLIENTS = 64;

/** A job still running after this long is stopped and reported as failed (default 420 s). */
function jobTimeoutSeconds(): number {
  const raw = Number(process.env.BENCH_JOB_TIMEOUT_SECONDS ?? 420);
  return Number.isFinite(raw) && raw > 0 ? raw : 420;
}

export interface JobRun {
  result?: JobResult;
  error?: string;
  seconds: number;
}

/** Run one job in a fresh `node` process; its figures, or why it failed. */
export async function runJob(job: Job, engine: EngineName, dir: string, env: NodeJS.ProcessEnv = process.env): Promise<JobRun> {
  const out = join(dir, `${job}-result.json`);
  const t0 = performance.now();
  const child = spawn(process.execPath, [WORKER_JS, job, engine, dir, out], { stdio: ['ignore', 'inherit', 'inherit'], env });
  const limit = jobTimeoutSeconds();
  const state = { timedOut: false };
  const timer = setTimeout(() => {
    state.timedOut = true;
    child.kill('SIGTERM'); // the worker exits on SIGTERM, stopping any server it started
  }, limit * 1000);
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  clearTimeout(timer);
  const seconds = (performance.now() - t0) / 1000;
  if (state.timedOut) return { error: `${job} ${engine}: stopped after BENCH_JOB_TIMEOUT_SECONDS=${limit}`, seconds };
  if (code !== 0) return { error: `${job} ${engine}: the child exited with ${String(code)}`, seconds };
  try {
    return { result: await readJobResult(out), seconds };
  } catch (err) {
    return { error: `${job} ${engine}: ${String(err)}`, seconds };
  }
}
