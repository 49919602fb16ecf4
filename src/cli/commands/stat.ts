import type { Command } from 'commander';
import type { SnapshotPin, StoreStat, SubjectStat } from '../../engine/store-types.js';
import { checkSubject } from '../../engine/names.js';
import { defineAction } from '../action.js';
import { operand, wantsJson } from '../command-input.js';
import { formatBytes } from '../format-bytes.js';
import { writeJson, writeLines } from '../output.js';
import { addSessionOptions, withSession } from '../store-session.js';

export function addStatCommand(program: Command): void {
  const cmd = program
    .command('stat')
    .description('show space accounting for the image, or for one subject: live, garbage (gc reclaims it once it lies outside the log written since the last checkpoint; gc --plan says what it frees now), and what snapshots pin')
    .argument('[subject]', 'only this subject')
    .option('--json', 'print the accounting as a JSON object');
  addSessionOptions(cmd);
  defineAction(cmd, async () => {
    const subject = operand(cmd, 0);
    if (subject !== undefined) checkSubject(subject, 'stat');
    const stat = await withSession(cmd, 'read', (store) => store.stat());
    if (subject === undefined) {
      if (wantsJson(cmd)) writeJson(stat);
      else writeLines(imageLines(stat));
      return;
    }
    // The same StoreStat shape, with only that subject's entry and snapshots.
    const shown: StoreStat = { ...stat, subjects: [subjectStat(stat, subject)], snapshots: stat.snapshots.filter((p) => p.subject === subject) };
    if (wantsJson(cmd)) writeJson(shown);
    else writeLines([...shown.subjects.map(subjectLine), ...shown.snapshots.map((p) => `  ${pinLine(p)}`)]);
  });
}

/** A subject with no keys is not in the stat; report it as empty rather than missing. */
function subjectStat(stat: StoreStat, subject: string): SubjectStat {
  return stat.subjects.find((s) => s.subject === subject) ?? { subject, keys: 0, liveBytes: 0, snapshotOnlyBytes: 0, usedBytes: 0, snapshots: 0 };
}

/** `app: 2 keys, 1.5 KiB live`, and for a subject with snapshots `, 12 KiB snapshot-only, 2 snapshots`. */
function subjectLine(s: SubjectStat): string {
  const line = `${s.subject}: ${s.keys} ${s.keys === 1 ? 'key' : 'keys'}, ${formatBytes(s.liveBytes)} live`;
  if (s.snapshots === 0 && s.snapshotOnlyBytes === 0) return line;
  return `${line}, ${formatBytes(s.snapshotOnlyBytes)} snapshot-only, ${s.snapshots} ${s.snapshots === 1 ? 'snapshot' : 'snapshots'}`;
}

/** What deleting the snapshot would make reclaimable. */
function pinLine(p: SnapshotPin): string {
  return `snapshot ${p.subject}/${p.name} pins ${formatBytes(p.exclusiveBytes)}`;
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
    `snapshots: ${stat.snapshots.length}`,
    ...stat.snapshots.map((p) => `  ${pinLine(p)}`),
  ];
}
