// `npm run bench`: StateFS and the peers through the same workloads, each engine × job in its
// own child process, then one table of medians, ratios and issue 8's targets on stdout and the
// raw figures in bench/results/. Knobs: see docs/performance.md (BENCH_QUICK=1 for a smoke run).
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { arch, cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ENGINES, engineMissing } from './engines/registry.js';
import { loadConfig, type EngineName } from './lib/config.js';
import { settleDisk } from './lib/disk.js';
import { runJob, type Job, type JobRun } from './lib/jobs.js';
import { REPO_ROOT, RESULTS_DIR } from './lib/paths.js';
import type { JobResult } from './lib/recorder.js';
import { REDIS_CONFIG, redisServerVersion } from './lib/redis-load.js';
import { buildRows, renderTable, type Column, type Figures } from './lib/report.js';

const cfg = loadConfig();
const t0 = performance.now();
const notes: string[] = [];
const figures: Figures = {};
const jobLog: { column: Column; job: Job; seconds: number; error?: string }[] = [];

function elapsed(): number {
  return (performance.now() - t0) / 1000;
}

function log(message: string): void {
  process.stderr.write(`[${elapsed().toFixed(0).padStart(4)} s] ${message}\n`);
}

function merge(column: Column, result: JobResult): void {
  const into = (figures[column] ??= { figures: {}, notes: {} });
  for (const [name, values] of Object.entries(result.figures)) (into.figures[name] ??= []).push(...values);
  Object.assign(into.notes, result.notes);
}

async function job(column: Column, name: Job, engine: EngineName, dir: string, env: NodeJS.ProcessEnv = process.env): Promise<JobRun> {
  settleDisk();
  log(`${column}: ${name} ...`);
  const run = await runJob(name, engine, dir, env);
  jobLog.push({ column, job: name, seconds: run.seconds, ...(run.error === undefined ? {} : { error: run.error }) });
  if (run.result !== undefined) merge(column, run.result);
  if (run.error !== undefined) {
    notes.push(`FAILED: ${run.error}`);
    log(`FAILED: ${run.error}`);
  } else log(`${column}: ${name} done in ${run.seconds.toFixed(1)} s`);
  return run;
}

function gitCommit(): string {
  try {
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
    // Results and docs change with every run; only changes to the code make the figures unreproducible.
    const pathspec = ['.', ':(exclude)bench/results', ':(exclude)docs', ':(exclude)*.md'];
    const status = execFileSync('git', ['status', '--porcelain', '--untracked-files=no', '--', ...pathspec], { cwd: REPO_ROOT, encoding: 'utf8' });
    const dirty = status.trim() !== '';
    return dirty ? `${sha}+uncommitted changes` : sha;
  } catch {
    return 'unknown';
  }
}

const root = await mkdtemp(join(tmpdir(), 'statefs-bench-'));
const engines: EngineName[] = [];
for (const name of cfg.engines) {
  const missing = engineMissing(name);
  if (missing === undefined) engines.push(name);
  else notes.push(`${name} skipped: ${missing} (run \`npm run bench\`, which installs bench/'s dependencies)`);
}
const redisVersion = redisServerVersion();
log(`keys ${cfg.keys}, ${cfg.runs} run(s) per figure, ${cfg.seconds} s per timed run; engines: ${engines.join(', ')}; redis: ${redisVersion ?? 'not on PATH'}`);
try {
  await job('raw', 'raw', 'statefs', join(root, 'raw'));
  // The durable-write jobs go round-robin, one run per engine per round, so that every engine
  // samples the same stretches of a disk whose fdatasync rate drifts (other tenants).
  for (let r = 0; r < cfg.runs; r++) {
    for (const name of engines) await job(name, 'write', name, join(root, name, `write-${r}`), { ...process.env, BENCH_RUNS: '1' });
  }
  for (const [index, name] of engines.entries()) {
    // The big store: loaded, read and reopened in fresh processes; repeated while a run is short
    // and the suite is within its time budget (this engine's share of it).
    const share = (cfg.budgetSeconds * (index + 1)) / engines.length;
    for (let r = 0; r < cfg.runs; r++) {
      const dir = join(root, name, `big-${r}`);
      const load = await job(name, 'load', name, dir);
      const reopen = load.error === undefined ? await job(name, 'reopen', name, dir) : undefined;
      await rm(dir, { recursive: true, force: true });
      if (load.error !== undefined || reopen?.error !== undefined || r + 1 === cfg.runs) break;
      const took = load.seconds + (reopen?.seconds ?? 0);
      const why =
        Math.max(load.seconds, reopen?.seconds ?? 0) >= cfg.repeatUnderSeconds
          ? `a job took over BENCH_REPEAT_UNDER_SECONDS=${cfg.repeatUnderSeconds}`
          : elapsed() + took > share
            ? `another would pass this engine's share of BENCH_BUDGET_SECONDS=${cfg.budgetSeconds}`
            : undefined;
      if (why !== undefined) {
        notes.push(`${name}: the ${cfg.keys}-key load and reopen ran ${r + 1} time(s) of ${cfg.runs}: ${why}`);
        break;
      }
    }
    await rm(join(root, name), { recursive: true, force: true });
  }
  if (engines.includes('statefs')) {
    await job('statefs', 'gc', 'statefs', join(root, 'gc'));
    await job('statefs', 'statefsd', 'statefs', join(root, 'statefsd'));
  }
  if (redisVersion === undefined) notes.push('redis skipped: redis-server is not on PATH (install redis-server 7 to add the column)');
  else await job('redis', 'redis', 'statefs', join(root, 'redis'));
} finally {
  await rm(root, { recursive: true, force: true });
}

const wallSeconds = (performance.now() - t0) / 1000;
const rows = buildRows(figures, cfg.keys, cfg.smallSnapshotKeys);
const columns: Column[] = [...engines, ...(figures.redis === undefined ? [] : (['redis'] as const)), 'raw'];
const commit = gitCommit();
const date = new Date().toISOString();
const table = renderTable(rows, columns);
for (const [column, result] of Object.entries(figures)) {
  const method = result.notes['w3.method'];
  if (method !== undefined) notes.push(`${column} W3: ${method}`);
}
if (figures.statefs?.notes.gc !== undefined) notes.push(`GC rows: ${figures.statefs.notes.gc}; GC on: 16 MiB image, GC off: 1 GiB image`);
if (redisVersion !== undefined) notes.push(`redis: ${redisVersion}; ${REDIS_CONFIG}; 64 clients of the \`redis\` npm client over TCP loopback`);

console.log(`\nStateFS benchmark — ${date}, commit ${commit}, node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}`);
console.log(`${cfg.keys} keys, 100-byte values, median of ${cfg.runs} run(s)${cfg.quick ? ', QUICK smoke run' : ''}; suite wall time ${wallSeconds.toFixed(0)} s\n`);
console.log(table);
console.log('\nratio: StateFS / best peer for throughputs, best peer / StateFS for times and sizes (above 1: StateFS is ahead).');
for (const note of notes) console.log(`- ${note}`);

const report = {
  date,
  commit,
  wallSeconds,
  machine: { node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model, arch: arch(), kernel: release() },
  config: cfg,
  engines: Object.fromEntries(engines.map((e) => [e, ENGINES[e].describe])),
  redis: redisVersion === undefined ? null : { version: redisVersion, config: REDIS_CONFIG },
  figures,
  rows,
  notes,
  jobs: jobLog,
  table,
};
await mkdir(RESULTS_DIR, { recursive: true });
const stamp = date.replaceAll(':', '-').replace(/\.\d+Z$/, 'Z');
const file = join(RESULTS_DIR, `${stamp}${cfg.quick ? '-quick' : ''}.json`);
await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
if (!cfg.quick) await writeFile(join(RESULTS_DIR, 'latest.json'), `${JSON.stringify(report, null, 2)}\n`);
log(`raw figures: ${file}${cfg.quick ? '' : ' and latest.json'}`);
if (jobLog.some((j) => j.error !== undefined)) process.exitCode = 1;
