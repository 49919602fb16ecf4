import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MiB, memoryImage, rng } from '../helpers.js';
import { recordFigures, reliabilityMode } from './counters.js';
import { Violations, boundaries, checkRecovery, fsckRuns, inFlight, overlayDevice, torn, tracedRun } from './crash-image.js';
import { generate, perKey, seedFrom } from './workload.js';
import { guardResources } from '../hygiene.js';


guardResources();

/** Every crash state of one seeded workload, checked against the model; adds to `violations`, returns the count. */
async function sweep(seed: number, count: number, thorough: boolean, violations: Violations): Promise<{ checked: number; events: number }> {
  const fsckEvery = thorough ? 1 : 7;
  const { ops, states } = generate(seed, count);
  const base = await memoryImage(8 * MiB);
  const { device, ackAt } = await tracedRun(base, ops);
  assert.ok(device.trace.length > ops.length, `only ${device.trace.length} device events`);
  const rand = rng(seed ^ 0x5eed);
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
      const wrong = await checkRecovery(overlayDevice(b.durable, writes), before, after, op !== undefined && perKey(op), {
        fsck: checked % fsckEvery === 0,
        writeAfter: checked % (thorough ? 2 : 7) === 1,
      });
      if (wrong !== undefined) violations.add(label, wrong);
      checked++;
    }
  }
  return { checked, events: device.trace.length };
}

test('crash states at every write and flush boundary of a mixed workload', async () => {
  const thorough = reliabilityMode() === 'thorough';
  const count = Number(process.env.STATEFS_OPS ?? (thorough ? 1000 : 250));
  const seed = seedFrom(20261201);
  const seeds = thorough ? [seed, seed + 1, seed + 2] : [seed];
  console.log(`crash-states: seed ${seed} (STATEFS_SEED; ${seeds.length} workload(s), seed + 0..${seeds.length - 1}), ${count} operations each, ${thorough ? 'thorough' : 'fast'} mode`);
  const violations = new Violations();
  let checked = 0;
  let events = 0;
  for (const s of seeds) {
    const r = await sweep(s, count, thorough, violations);
    checked += r.checked;
    events += r.events;
  }
  console.log(
    `crash-states: ${events} device events, ${checked} crash states checked (fsck on ${fsckRuns.checked}, ${fsckRuns.repaired} with repairable crash residue), ${violations.count} violations`,
  );
  recordFigures('crash-states', { crashStates: checked, fsckRuns: fsckRuns.checked, repairableResidue: fsckRuns.repaired, violations: violations.count });
  assert.equal(violations.count, 0, violations.summary);
});
