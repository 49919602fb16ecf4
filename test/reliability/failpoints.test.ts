import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FAILPOINT_NAMES, parseFailpoints, type FailpointName } from '../../src/engine/failpoints.js';
import { Store } from '../../src/engine/store.js';
import { MiB, rng, withTempDir } from '../helpers.js';
import { recordFigures, reliabilityMode } from './counters.js';
import { Violations, checkRecovery, overlayDevice } from './crash-image.js';
import { generateWithGc, perKey, seedFrom } from './workload.js';
import { guardResources } from '../hygiene.js';

// Outside dist/test/: the test runner takes every file under a `test` folder for a test file.
const CHILD = fileURLToPath(new URL('../../scripts/failpoint-child.js', import.meta.url));

/** Hits to choose from for each failpoint (how often the workload passes it, roughly). */
const HITS: Record<FailpointName, number> = {
  'journal.before-flush': 100,
  'journal.before-ack': 100,
  'txn.before-commit': 10,
  'snapshot.create': 3,
  'gc.relocate': 1,
  'superblock.switch': 4,
};

interface ChildResult {
  acked: number;
  signal: NodeJS.Signals | null;
  code: number | null;
  lines: string[];
  stderr: string;
}

async function runChild(image: string, seed: number, count: number, failpoints: string): Promise<ChildResult> {
  const child = spawn(process.execPath, [CHILD, image, String(seed), String(count)], {
    env: { ...process.env, STATEFS_FAILPOINTS: failpoints },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
  const lines = out.split('\n').filter((l) => l.length > 0);
  const acked = lines.filter((l) => l.startsWith('ack ')).length;
  return { acked, signal, code, lines, stderr };
}


guardResources();

test('failpoints: the variable is parsed once, and a bad one is EINVAL', () => {
  assert.deepEqual([...parseFailpoints('journal.before-flush, gc.relocate:error@3').entries()], [
    ['journal.before-flush', { action: 'crash', hit: 1, seen: 0 }],
    ['gc.relocate', { action: 'error', hit: 3, seen: 0 }],
  ]);
  for (const bad of ['nope', 'journal.before-flush:explode', 'gc.relocate@0']) assert.throws(() => parseFailpoints(bad), { code: 'EINVAL' });
});

test('failpoints: kill -9 at every named failpoint, then recover: acknowledged operations present, transactions whole, snapshots intact, fsck clean', async () => {
  const thorough = reliabilityMode() === 'thorough';
  const seed = seedFrom(20261206);
  const rand = rng(seed);
  const count = 120;
  const perPoint = thorough ? 8 : 1;
  // Run k uses the workload of seed + k, so repeated runs of a point see other histories.
  const workloads = Array.from({ length: perPoint }, (_, k) => generateWithGc(seed + k, count));
  console.log(`failpoints: seed ${seed} (STATEFS_SEED; run k uses seed + k), ${workloads[0]?.ops.length ?? 0} operations per run, ${perPoint} run(s) per failpoint and action, ${thorough ? 'thorough' : 'fast'} mode`);
  const violations = new Violations();
  let kills = 0;
  let errors = 0;
  const ackedAtKill: number[] = [];
  await withTempDir(async (dir) => {
    for (const name of FAILPOINT_NAMES) {
      for (const action of ['crash', 'error'] as const) {
        for (let k = 0; k < perPoint; k++) {
          const workload = workloads[k];
          if (workload === undefined) throw new Error('no workload');
          const { ops, states } = workload;
          const hit = 1 + Math.floor(rand() * HITS[name]);
          const spec = `${name}:${action}@${hit}`;
          const image = join(dir, `${name}-${action}-${k}.img`);
          const created = await Store.create(image, { size: 8 * MiB });
          await created.close();
          const r = await runChild(image, seed + k, count, spec);
          const label = `seed ${seed + k} ${spec} (after ${r.acked} acknowledged operations)`;
          if (action === 'crash') {
            if (r.signal !== 'SIGKILL') {
              violations.add(label, `the child was not killed at the failpoint (exit ${r.code ?? r.signal ?? '?'}: ${r.lines.at(-1) ?? ''} ${r.stderr.slice(0, 300)})`);
              continue;
            }
            kills++;
            ackedAtKill.push(r.acked);
          } else {
            if (r.code !== 0 || !r.lines.some((l) => l.startsWith('error EIO'))) {
              violations.add(label, `the failpoint error did not reach the caller as EIO (exit ${r.code ?? r.signal ?? '?'}: ${r.lines.at(-1) ?? ''} ${r.stderr.slice(0, 300)})`);
              continue;
            }
            errors++;
          }
          // Operations are sequential: all up to r.acked - 1 acknowledged, r.acked in flight.
          const before = states[r.acked];
          const after = states[Math.min(r.acked + 1, ops.length)];
          const op = ops[r.acked];
          if (before === undefined || after === undefined) throw new Error('model out of range');
          const bytes = new Uint8Array(await readFile(image));
          const wrong = await checkRecovery(overlayDevice(bytes, []), before, after, op !== undefined && perKey(op), { fsck: true, writeAfter: true });
          if (wrong !== undefined) violations.add(label, wrong);
        }
      }
    }
  });
  console.log(`failpoints: operations acknowledged before each kill: ${ackedAtKill.join(' ')}`);
  console.log(`failpoints: ${kills} kill cycles, ${errors} failpoint errors, ${violations.count} violations`);
  recordFigures('failpoints', { killCycles: kills, injectedFaults: errors, violations: violations.count });
  assert.equal(violations.count, 0, violations.summary);
  assert.equal(kills, FAILPOINT_NAMES.length * perPoint);
});
