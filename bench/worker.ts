// One job of the suite in its own process, so its peak RSS is its own:
//   node dist/bench/worker.js <job> <engine> <dir> <result.json>
// Jobs: write (W1, W2, snapshot of a small store), load (W3, then W4, W6, W7, on-disk size),
// reopen (open the loaded store, then random gets), raw, gc, statefsd, redis.
// Settings come from the environment (see lib/config.ts), the same for every child.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ENGINES } from './engines/registry.js';
import { ENGINE_NAMES, loadConfig, type BenchConfig, type EngineName } from './lib/config.js';
import { profiled } from './lib/cpu-profile.js';
import { allocatedBytes } from './lib/disk.js';
import { describeGcLoad, gcLoadRun } from './lib/gc-load.js';
import { VALUE_BYTES, benchValues, keyLayout } from './lib/keys.js';
import { fdatasyncLoop, rawJob } from './lib/raw.js';
import { stepDone, timed } from './lib/progress.js';
import { Recorder } from './lib/recorder.js';
import { DAEMON_CLIENTS, JOBS, REDIS_CLIENTS, type Job } from './lib/jobs.js';
import { REDIS_CONFIG, redisLoad, redisServerVersion } from './lib/redis-load.js';
import { statefsdLoad } from './lib/statefsd-load.js';
import { freshWrites, readWorkloads, snapshotRuns, w1, w2, w3, w4 } from './lib/workloads.js';

async function writeJob(name: EngineName, dir: string, cfg: BenchConfig, rec: Recorder): Promise<void> {
  const factory = ENGINES[name];
  await mkdir(join(dir, 'w'));
  await mkdir(join(dir, 's'));
  const engine = await factory.create(join(dir, 'w'), 0);
  const nextWrite = freshWrites(cfg);
  try {
    // One untimed run of each first, as W4, W6 and W7 have: the suite gives each write job a
    // fresh process, whose first run would otherwise time the JIT compiling the engine's
    // JavaScript (all of StateFS's put, a thin layer of each peer's) rather than a service's puts.
    await w1(engine, cfg.seconds, nextWrite);
    for (let r = 0; r < cfg.runs; r++) {
      rec.add('w1.raw', fdatasyncLoop(join(dir, 'raw-w1.log'), 1, cfg.seconds)); // the limit, at the same moment
      rec.add('w1', await w1(engine, cfg.seconds, nextWrite));
    }
    await w2(engine, cfg.seconds, nextWrite);
    await profiled(`${name}-w2`, async () => {
      for (let r = 0; r < cfg.runs; r++) rec.add('w2', await w2(engine, cfg.seconds, nextWrite));
    });
  } finally {
    await engine.close();
  }
  // Snapshot creation time of a small store, to compare with W7 on the big one.
  const small = await factory.create(join(dir, 's'), cfg.smallSnapshotKeys);
  try {
    const { keyOf } = keyLayout(cfg.smallSnapshotKeys, Math.min(cfg.smallSnapshotKeys, cfg.listKeys));
    await small.bulkLoad(cfg.smallSnapshotKeys, keyOf, benchValues());
    await snapshotRuns(small, 'snapshotSmall', Math.max(3, cfg.runs), rec);
  } finally {
    await small.close();
  }
}

async function loadJob(name: EngineName, dir: string, cfg: BenchConfig, rec: Recorder): Promise<void> {
  const factory = ENGINES[name];
  const engine = await factory.create(dir, cfg.keys);
  try {
    const { opsPerSec, method } = await timed(`${name} W3`, () => profiled(`${name}-w3`, () => w3(engine, cfg)));
    rec.add('w3', opsPerSec);
    rec.note('w3.method', method);
    await readWorkloads(name, engine, cfg, rec);
    for (const [key, value] of Object.entries((await engine.spaceDetails?.()) ?? {})) rec.add(`space.${key}`, value);
  } finally {
    await timed(`${name} close`, () => engine.close());
  }
  rec.add('diskBytes', await allocatedBytes(factory.dataPath(dir)));
  rec.recordPeakRss('rss.load');
}

async function reopenJob(name: EngineName, dir: string, cfg: BenchConfig, rec: Recorder): Promise<void> {
  const { keyOf } = keyLayout(cfg.keys, cfg.listKeys);
  const t0 = performance.now();
  const engine = await profiled(`${name}-reopen`, () => ENGINES[name].open(dir));
  try {
    const getter = engine.getters[0];
    if (getter === undefined) throw new Error(`${name}: no getter`);
    if ((await getter.get(keyOf(cfg.keys - 1)))?.length !== VALUE_BYTES) throw new Error(`${name}: the last key is missing after reopen`);
    const ms = performance.now() - t0;
    rec.add('reopen.ms', ms);
    stepDone(`${name} open + first get`, ms);
    // Random gets in the reopened store, each way of reading in turn (their figures, and the peak
    // RSS): a store that reads values from the disk shows it here, not in the load job's W4.
    for (const g of engine.getters) rec.add(`w4reopen.${g.name}`, await timed(`${name} W4 after reopen (${g.name})`, () => w4(g, cfg, cfg.seconds, 7)));
  } finally {
    await engine.close();
  }
  rec.recordPeakRss('rss.reopen');
}

async function gcJob(dir: string, cfg: BenchConfig, rec: Recorder): Promise<void> {
  rec.note('gc', describeGcLoad(cfg.gcOps));
  for (let r = 0; r < cfg.runs; r++) {
    for (const autoGc of [false, true]) {
      const run = await gcLoadRun(join(dir, `gc-${r}-${String(autoGc)}.img`), cfg.gcOps, autoGc);
      const tag = autoGc ? 'on' : 'off';
      rec.add(`gc.${tag}.opsPerSec`, run.opsPerSec);
      rec.add(`gc.${tag}.worstMs`, run.worst);
      rec.add(`gc.${tag}.p99Ms`, run.p99);
      rec.add(`gc.${tag}.segmentsFreed`, run.gcCycles);
    }
  }
}

async function statefsdJob(dir: string, cfg: BenchConfig, rec: Recorder): Promise<void> {
  for (const p of await statefsdLoad(dir, DAEMON_CLIENTS, cfg.daemonSeconds)) {
    for (const [kind, s] of [['put', p.put], ['get', p.get]] as const) {
      rec.add(`statefsd.c${p.clients}.${kind}.opsPerSec`, s.opsPerSec);
      rec.add(`statefsd.c${p.clients}.${kind}.p50Ms`, s.p50);
      rec.add(`statefsd.c${p.clients}.${kind}.p99Ms`, s.p99);
    }
  }
}

async function redisJob(dir: string, cfg: BenchConfig, rec: Recorder): Promise<void> {
  const version = redisServerVersion();
  if (version === undefined) throw new Error('redis-server is not on PATH');
  rec.note('redis.version', version);
  rec.note('redis.config', REDIS_CONFIG);
  const clients = REDIS_CLIENTS;
  const { put, get } = await redisLoad(dir, clients, cfg.daemonSeconds);
  for (const [kind, s] of [['put', put], ['get', get]] as const) {
    rec.add(`redis.c${clients}.${kind}.opsPerSec`, s.opsPerSec);
    rec.add(`redis.c${clients}.${kind}.p50Ms`, s.p50);
    rec.add(`redis.c${clients}.${kind}.p99Ms`, s.p99);
  }
}

function parseArgs(argv: readonly string[]): { job: Job; engine: EngineName; dir: string; out: string } {
  const [jobArg, engineArg, dir, out] = argv;
  const job = JOBS.find((j) => j === jobArg);
  const engine = ENGINE_NAMES.find((e) => e === engineArg);
  if (job === undefined || engine === undefined || dir === undefined || out === undefined) {
    throw new Error(`usage: worker.js <${JOBS.join('|')}> <${ENGINE_NAMES.join('|')}> <dir> <result.json>`);
  }
  return { job, engine, dir, out };
}

// Stopped by the orchestrator's timeout: exit through 'exit' handlers, which stop child servers.
process.on('SIGTERM', () => process.exit(143));
const { job, engine, dir, out } = parseArgs(process.argv.slice(2));
const cfg = loadConfig();
const rec = new Recorder();
await mkdir(dir, { recursive: true });
switch (job) {
  case 'write':
    await writeJob(engine, dir, cfg, rec);
    break;
  case 'load':
    await loadJob(engine, dir, cfg, rec);
    break;
  case 'reopen':
    await reopenJob(engine, dir, cfg, rec);
    break;
  case 'raw':
    rawJob(dir, cfg, rec);
    break;
  case 'gc':
    await gcJob(dir, cfg, rec);
    break;
  case 'statefsd':
    await statefsdJob(dir, cfg, rec);
    break;
  case 'redis':
    await redisJob(dir, cfg, rec);
    break;
}
await rec.save(out);
