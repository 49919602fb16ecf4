import assert from 'node:assert/strict';
import { test } from 'node:test';
import { join } from 'node:path';
import { runJob } from '../bench/lib/jobs.js';
import { withTempDir } from './helpers.js';

// The StateFS side of `npm run bench` on a tiny store, so the harness keeps working as the
// engine changes. It checks that each job yields its figures, not how fast they are (speed is
// measured by `npm run bench` only). The peers are not installed in CI, and are not run here.
const tiny = { ...process.env, BENCH_KEYS: '2000', BENCH_RUNS: '1', BENCH_SECONDS: '0.05', BENCH_GETS: '500' };

test('bench harness: the write, load and reopen jobs of StateFS yield every figure', async () => {
  await withTempDir(async (dir) => {
    const write = await runJob('write', 'statefs', join(dir, 'write'), tiny);
    assert.equal(write.error, undefined);
    const big = join(dir, 'big');
    const load = await runJob('load', 'statefs', big, tiny);
    assert.equal(load.error, undefined);
    const reopen = await runJob('reopen', 'statefs', big, tiny);
    assert.equal(reopen.error, undefined);
    const figures = { ...write.result?.figures, ...load.result?.figures, ...reopen.result?.figures };
    for (const name of ['w1', 'w1.raw', 'w2', 'snapshotSmall.first.ms', 'snapshotSmall.ms', 'w3', 'w4.get', 'w6.ms', 'w7.first.ms', 'w7.ms', 'diskBytes', 'rss.load', 'reopen.ms', 'rss.reopen', 'w4reopen.get', 'w4reopen.getSync', 'w4reopen.getInto']) {
      const values = figures[name];
      assert.ok(values !== undefined && values.length > 0 && values.every((v) => Number.isFinite(v) && v > 0), `${name}: ${JSON.stringify(values)}`);
    }
    assert.match(load.result?.notes['w3.method'] ?? '', /sync\(\)/);
  });
});
