import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { withTempDir } from '../helpers.js';
import { readFigures, recordFigures } from './counters.js';

test('counter files: one per call, summed per suite; files without a mode count, others are skipped', async () => {
  await withTempDir(async (dir) => {
    const saved = process.env.STATEFS_RELIABILITY_DIR;
    process.env.STATEFS_RELIABILITY_DIR = dir;
    try {
      recordFigures('crash-states', { crashStates: 10, violations: 0 });
      recordFigures('crash-states', { crashStates: 5, violations: 1 });
      recordFigures('bit-flips', { bitFlips: 3 });
    } finally {
      if (saved === undefined) delete process.env.STATEFS_RELIABILITY_DIR;
      else process.env.STATEFS_RELIABILITY_DIR = saved;
    }
    await writeFile(join(dir, 'daemon-kill.json'), JSON.stringify({ suite: 'daemon-kill', seed: 1, figures: { killCycles: 100, note: 'x' } }));
    await writeFile(join(dir, 'broken.json'), '{"suite": 1');
    await writeFile(join(dir, 'run.log'), 'not json');
    const sums = readFigures(dir);
    assert.deepEqual(sums.get('crash-states')?.figures, { crashStates: 15, violations: 1 });
    assert.deepEqual(sums.get('bit-flips')?.figures, { bitFlips: 3 });
    assert.deepEqual(sums.get('daemon-kill')?.figures, { killCycles: 100 });
    assert.equal(sums.size, 3);
  });
});
