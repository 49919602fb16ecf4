import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MiB, memoryImage, rng } from '../helpers.js';
import { recordFigures, reliabilityMode } from './counters.js';
import { Violations, boundaries, checkRecovery, inFlight, overlayDevice, tracedRun, type Placed } from './crash-image.js';
import { generate, perKey, seedFrom } from './workload.js';
import { guardResources } from '../hygiene.js';

/** Bytes a device may persist or lose as a unit (a sector). */
const SECTOR = 512;

/** The writes of one flush window cut at sector boundaries: the units a device may persist out of order. */
function sectors(writes: readonly Placed[]): Placed[] {
  const out: Placed[] = [];
  for (const w of writes) {
    for (let at = w.offset; at < w.offset + w.data.length; ) {
      const end = Math.min(w.offset + w.data.length, (Math.floor(at / SECTOR) + 1) * SECTOR);
      out.push({ offset: at, data: w.data.subarray(at - w.offset, end - w.offset) });
      at = end;
    }
  }
  return out;
}


guardResources();

test('reordering: a later write (or sector) of a flush window persists without an earlier one', async () => {
  const thorough = reliabilityMode() === 'thorough';
  const seed = seedFrom(20261205);
  const count = thorough ? 1000 : 250;
  const maxWindows = thorough ? 2000 : 120;
  const maxPairs = thorough ? 200 : 24;
  console.log(`reorder: seed ${seed} (STATEFS_SEED), ${count} operations, ${SECTOR}-byte sectors, ${thorough ? 'thorough' : 'fast'} mode`);
  const { ops, states } = generate(seed, count);
  const base = await memoryImage(8 * MiB);
  const { device, ackAt } = await tracedRun(base, ops);
  const rand = rng(seed);
  // Windows with at least two units, just before their flush: the last unsynced state of each.
  const windows: { at: number; durable: Uint8Array; units: Placed[]; writes: number }[] = [];
  for (const b of boundaries(base, device.trace)) {
    if (device.trace[b.at]?.kind !== 'flush' || b.unsynced.length === 0) continue;
    const units = sectors(b.unsynced);
    if (units.length >= 2) windows.push({ at: b.at, durable: b.durable.slice(), units, writes: b.unsynced.length });
  }
  // A sample of windows, spread over the whole run.
  const step = Math.max(1, windows.length / maxWindows);
  const sampled = windows.filter((_, i) => Math.floor(i % step) === 0).slice(0, maxWindows);
  const violations = new Violations();
  let checked = 0;
  let j = 0;
  for (const w of sampled) {
    j = inFlight(ackAt, w.at, j);
    const before = states[j];
    const after = states[Math.min(j + 1, ops.length)];
    const op = ops[j];
    if (before === undefined || after === undefined) throw new Error('model out of range');
    const pairs: [number, number][] = [];
    for (let later = 1; later < w.units.length; later++) for (let earlier = 0; earlier < later; earlier++) pairs.push([earlier, later]);
    const chosen: [number, number][] = pairs.length <= maxPairs ? pairs : Array.from({ length: maxPairs }, () => pairs[Math.floor(rand() * pairs.length)] ?? [0, 1]);
    for (const [earlier, later] of chosen) {
      // Everything up to the later unit reaches the disk except the earlier one.
      const kept = w.units.slice(0, later + 1).filter((_, i) => i !== earlier);
      const wrong = await checkRecovery(overlayDevice(w.durable, kept), before, after, op !== undefined && perKey(op), { fsck: checked % 5 === 0, writeAfter: checked % 2 === 0 });
      if (wrong !== undefined) violations.add(`seed ${seed} event ${w.at} (${w.writes} writes, ${w.units.length} sectors) op ${j} (${op?.kind ?? 'none'}) sector ${later} without ${earlier}`, wrong);
      checked++;
    }
  }
  console.log(`reorder: ${windows.length} flush windows with 2+ sectors, ${sampled.length} sampled, ${checked} reorderings checked, ${violations.count} violations`);
  recordFigures('reorder', { reorderings: checked, violations: violations.count });
  assert.ok(checked > 0);
  assert.equal(violations.count, 0, violations.summary);
});
