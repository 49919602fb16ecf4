import type { Command } from 'commander';
import type { StoreStat, SubjectStat } from '../../engine/store.js';
import { checkSubject } from '../../engine/names.js';
import { defineAction } from '../action.js';
import { operand, requiredStringOption, wantsJson } from '../command-input.js';
import { formatBytes } from '../format-bytes.js';
import { writeJson, writeLines } from '../output.js';
import { withStore } from '../store-session.js';

export function addStatCommand(program: Command): void {
  const cmd = program
    .command('stat')
    .description('show space accounting for the image, or for one subject')
    .argument('[subject]', 'only this subject')
    .requiredOption('--image <path>', 'image file')
    .option('--json', 'print the accounting as a JSON object');
  defineAction(cmd, async () => {
    const subject = operand(cmd, 0);
    if (subject !== undefined) checkSubject(subject, 'stat');
    const stat = await withStore(requiredStringOption(cmd, 'image'), 'read', (store) => store.stat());
    const shown = subject === undefined ? stat : { ...stat, subjects: [subjectStat(stat, subject)] };
    if (wantsJson(cmd)) writeJson(shown);
    else if (subject === undefined) writeLines(imageLines(stat));
    else writeLines(shown.subjects.map(subjectLine));
  });
}

/** A subject with no keys is not in the stat; report it as empty rather than missing. */
function subjectStat(stat: StoreStat, subject: string): SubjectStat {
  return stat.subjects.find((s) => s.subject === subject) ?? { subject, keys: 0, liveBytes: 0, snapshotOnlyBytes: 0, snapshots: 0 };
}

function subjectLine(s: SubjectStat): string {
  return `${s.subject}: ${s.keys} ${s.keys === 1 ? 'key' : 'keys'}, ${formatBytes(s.liveBytes)} live`;
}

function imageLines(stat: StoreStat): string[] {
  return [
    `capacity: ${formatBytes(stat.capacity)}`,
    `segments: ${stat.segments} of ${formatBytes(stat.segmentSize)} (${stat.segmentsUsed} used, ${stat.segmentsFree} free)`,
    `used: ${formatBytes(stat.usedBytes)} (${formatBytes(stat.liveBytes)} live, ${formatBytes(stat.garbageBytes)} garbage)`,
    `free: ${formatBytes(stat.freeBytes)}`,
    `subjects: ${stat.subjects.length}`,
    // Indented so a subject named like a heading above cannot be mistaken for it.
    ...stat.subjects.map((s) => `  ${subjectLine(s)}`),
  ];
}
