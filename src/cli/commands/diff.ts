import type { Command } from 'commander';
import { LIVE, type SnapshotDiff } from '../../engine/store-types.js';
import { defineAction } from '../action.js';
import { requiredOperand, wantsJson } from '../command-input.js';
import { writeJson, writeLines } from '../output.js';
import { addSessionOptions, withSession } from '../store-session.js';

export function addDiffCommand(program: Command): void {
  const cmd = program
    .command('diff')
    .description(`keys added (+), removed (-) and changed (~) from snapshot a to b; ${LIVE} names the live state`)
    .argument('<subject>', 'subject name')
    .argument('<a>', `snapshot name, or ${LIVE}`)
    .argument('<b>', `snapshot name, or ${LIVE}`)
    .option('--json', 'print the diff as a JSON object');
  addSessionOptions(cmd);
  defineAction(cmd, async () => {
    const subject = requiredOperand(cmd, 0);
    const a = requiredOperand(cmd, 1);
    const b = requiredOperand(cmd, 2);
    const diff = await withSession(cmd, 'read', (store) => store.diffSnaps(subject, a, b));
    if (wantsJson(cmd)) writeJson(diff);
    else writeLines(diffLines(diff));
  });
}

/** One line per key, `+` added, `-` removed, `~` changed, in bytewise key order. */
function diffLines(diff: SnapshotDiff): string[] {
  const marked: [string, string][] = [
    ...diff.added.map((k): [string, string] => ['+', k]),
    ...diff.removed.map((k): [string, string] => ['-', k]),
    ...diff.changed.map((k): [string, string] => ['~', k]),
  ];
  marked.sort(([, a], [, b]) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')));
  return marked.map(([mark, key]) => `${mark} ${key}`);
}
