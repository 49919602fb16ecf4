import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MiB, memoryImage, rng } from '../helpers.js';
import { recordFigures, reliabilityMode } from './counters.js';
import { Violations, boundaries, checkRecovery, fsckRuns, inFlight, overlayDevice, torn, tracedRun } from './crash-image.js';
import { generate, perKey, seedFrom } from './workload.js';
import { checkHygiene } from './hygiene.js';


checkHygiene();

test('crash states at every write and flush boundary of a mixed workload', async () => {
  const thorough = reliabilityMode() === 'thorough';
  const count = Number(process.env.STATEFS_OPS ?? (thorough ? 1000 : 250));
  const seed = seedFrom(20261201);
  const fsckEvery = thorough ? 1 : 7;
  console.log(`crash-states: seed ${seed} (STATEFS_SEED), ${count} operations, ${thorough ? 'thorough' : 'fast'} mode`);
  const { ops, states } = generate(seed, count);
  const base = await memoryImage(8 * MiB);
  const { device, ackAt } = await tracedRun(base, ops);
  const rand = rng(seed ^ 0x5eed);
  const violations = new Violations();
  let checked = 0;
  let j = 0;
  for (const b of boundaries(base, device.trace)) {
    j = inFlight(ackAt, b.at, j);
    const before = states[j];
    const after = states[Math.min(j + 1, ops.length)];
    const op = ops[j];
    if (before === undefined || after === undefined) throw new Error('model out of range');
    const variants: [string, typeof b.unsynced][] = [['unsynced dropped', []]];
    const last = b.unsynced.at(-1);
    if (last !== undefined) {
      variants.push(['unsynced kept', b.unsynced], ['last write torn', [...b.unsynced.slice(0, -1), torn(last, rand)]]);
    }
    for (const [variant, writes] of variants) {
      const label = `seed ${seed} event ${b.at}/${device.trace.length} op ${j} (${op?.kind ?? 'none'}) ${variant}`;
      const wrong = await checkRecovery(overlayDevice(b.durable, writes), before, after, op !== undefined && perKey(op), { fsck: checked % fsckEvery === 0, writeAfter: checked % fsckEvery === 3 });
      if (wrong !== undefined) violations.add(label, wrong);
      checked++;
    }
  }
  console.log(
    `crash-states: ${device.trace.length} device events, ${checked} crash states checked (fsck on ${fsckRuns.checked}, ${fsckRuns.repaired} with repairable crash residue), ${violations.count} violations`,
  );
  recordFigures('crash-states', { crashStates: checked, fsckRuns: fsckRuns.checked, repairableResidue: fsckRuns.repaired, violations: violations.count });
  assert.ok(device.trace.length > ops.length, `only ${device.trace.length} device events`);
  assert.equal(violations.count, 0, violations.summary);
});
