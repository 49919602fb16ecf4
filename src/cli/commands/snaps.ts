import type { Command } from 'commander';
import type { SnapshotInfo } from '../../engine/store-types.js';
import { defineAction } from '../action.js';
import { flag, requiredOperand, wantsJson } from '../command-input.js';
import { formatBytes } from '../format-bytes.js';
import { writeJson, writeLines } from '../output.js';
import { addSessionOptions, withSession } from '../store-session.js';

/** Hex digits of the digest shown in the --details table. */
const DIGEST_PREFIX = 12;

export function addSnapsCommand(program: Command): void {
  const cmd = program
    .command('snaps')
    .description("list a subject's snapshots, bytewise ascending (--details: sizes and digests)")
    .argument('<subject>', 'subject name')
    .option('--details', 'a table of id, keys, bytes, exclusive bytes and digest prefix')
    .option('--json', 'print a JSON array (of names, or of objects with --details)');
  addSessionOptions(cmd);
  defineAction(cmd, async () => {
    const subject = requiredOperand(cmd, 0);
    if (flag(cmd, 'details')) {
      const snaps = await withSession(cmd, 'read', (store) => store.listSnaps(subject, { details: true }));
      if (wantsJson(cmd)) writeJson(snaps);
      else if (snaps.length > 0) writeLines(detailsTable(snaps));
    } else {
      const names = await withSession(cmd, 'read', (store) => store.listSnaps(subject));
      if (wantsJson(cmd)) writeJson(names);
      else writeLines(names);
    }
  });
}

/** A header and one row per snapshot, columns padded to line up; `-` for a digest not yet computed. */
function detailsTable(snaps: readonly SnapshotInfo[]): string[] {
  const rows = [
    ['NAME', 'ID', 'KEYS', 'BYTES', 'EXCLUSIVE', 'DIGEST'],
    ...snaps.map((s) => [s.name, String(s.id), String(s.keys), formatBytes(s.bytes), formatBytes(s.exclusiveBytes), s.digest?.slice(0, DIGEST_PREFIX) ?? '-']),
  ];
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? '').length))) ?? [];
  return rows.map((row) =>
    row
      .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd(),
  );
}
