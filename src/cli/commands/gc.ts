import { Option, type Command } from 'commander';
import type { GcOptions, GcResult } from '../../engine/compactor.js';
import { defineAction } from '../action.js';
import { flag, numberOption, wantsJson } from '../command-input.js';
import { formatBytes } from '../format-bytes.js';
import { writeJson, writeLines } from '../output.js';
import { parseSize } from '../parse-number.js';
import { addSessionOptions, withSession, type StoreLike } from '../store-session.js';

/** `--until-clean` stops here even if cycles still free space (each cycle's moves can make new garbage). */
const MAX_CYCLES = 1000;

/** What `--until-clean` did: the cycles' sums, the last cycle's remaining garbage, and every marker. */
interface CleanResult extends GcResult {
  cycles: number;
  markers: string[];
}

export function addGcCommand(program: Command): void {
  const cmd = program
    .command('gc')
    .description('reclaim garbage: run one bounded compaction cycle (prints the progress markers the store emits)')
    .option('--max-bytes <size>', 'segment bytes one cycle may process: bytes or 512K, 8MiB... (default 8MiB)', parseSize)
    .addOption(new Option('--until-clean', `repeat cycles until one frees nothing (at most ${MAX_CYCLES})`).conflicts('plan'))
    .option('--plan', 'only show what the next cycle would do, and what each snapshot pins (opens read-only)')
    .option('--json', 'print a JSON object');
  addSessionOptions(cmd);
  defineAction(cmd, async () => {
    const maxBytes = numberOption(cmd, 'maxBytes');
    const options: GcOptions = maxBytes === undefined ? {} : { maxBytes };
    const json = wantsJson(cmd);

    if (flag(cmd, 'plan')) {
      const plan = await withSession(cmd, 'read', (store) => store.gcPlan(options));
      if (json) writeJson(plan);
      else {
        writeLines([
          `would free ${formatBytes(plan.freedBytes)}`,
          `would move ${formatBytes(plan.movedBytes)}`,
          `would scan ${formatBytes(plan.scannedBytes)}`,
          `remaining reclaimable garbage ${formatBytes(plan.remainingGarbageBytes)}`,
          `segments to empty: ${plan.segments.length === 0 ? 'none' : plan.segments.join(' ')}`,
          ...plan.pinnedBySnapshots.map((p) => `pinned by ${p.subject}/${p.name}: ${formatBytes(p.exclusiveBytes)}`),
        ]);
      }
      return;
    }

    const markers: string[] = [];
    // Background cycles are off: the markers and results are those of this command's cycles alone.
    // Progress lines go out as they come (JSON gathers them). Over --connect the markers are the
    // daemon's, on its own stdout, and the daemon's background cycles go on as they will.
    const onMarker = (text: string): void => {
      markers.push(text);
      if (!json) writeLines([text]);
    };
    const run = <T>(cycles: (store: StoreLike) => Promise<T>): Promise<T> => withSession(cmd, 'write', cycles, { autoGc: false, onMarker });

    if (flag(cmd, 'untilClean')) {
      const { total, capped } = await run((store) => runUntilClean(store, options, markers));
      if (json) writeJson(total);
      else writeLines([`cycles ${total.cycles}${capped ? ` (stopped at the cap; garbage may remain: run again)` : ''}`, ...resultLines(total)]);
    } else {
      const result = await run((store) => store.gcNow(options));
      if (json) writeJson(result);
      else writeLines(resultLines(result));
    }
  });
}

/** Cycles until one frees nothing, or the cap: their sums, the last one's remaining garbage, and whether the cap stopped them. */
async function runUntilClean(store: StoreLike, options: GcOptions, markers: string[]): Promise<{ total: CleanResult; capped: boolean }> {
  const total: CleanResult = { cycles: 0, freedBytes: 0, movedBytes: 0, scannedBytes: 0, remainingGarbageBytes: 0, segmentsFreed: 0, markers };
  while (total.cycles < MAX_CYCLES) {
    const cycle = await store.gcNow(options);
    total.cycles++;
    total.freedBytes += cycle.freedBytes;
    total.movedBytes += cycle.movedBytes;
    total.scannedBytes += cycle.scannedBytes;
    total.segmentsFreed += cycle.segmentsFreed;
    total.remainingGarbageBytes = cycle.remainingGarbageBytes;
    if (cycle.freedBytes === 0) return { total, capped: false };
  }
  return { total, capped: true };
}

function resultLines(r: GcResult): string[] {
  return [
    `freed ${formatBytes(r.freedBytes)}`,
    `moved ${formatBytes(r.movedBytes)}`,
    `scanned ${formatBytes(r.scannedBytes)}`,
    `remaining reclaimable garbage ${formatBytes(r.remainingGarbageBytes)}`,
    `segments freed ${r.segmentsFreed}`,
  ];
}
