import type { Command } from 'commander';
import { defineAction } from '../action.js';
import { requiredOperand, wantsJson } from '../command-input.js';
import { writeJson } from '../output.js';
import { addSessionOptions, withSession, type StoreLike } from '../store-session.js';

/** A `<subject> <name>` command that changes one snapshot (or restores from it) and prints nothing but --json. */
function addSnapshotChange(program: Command, name: string, description: string, change: (store: StoreLike, subject: string, snap: string) => Promise<void>): void {
  const cmd = program
    .command(name)
    .description(description)
    .argument('<subject>', 'subject name')
    .argument('<name>', 'snapshot name')
    .option('--json', 'print a JSON object');
  addSessionOptions(cmd);
  defineAction(cmd, async () => {
    const subject = requiredOperand(cmd, 0);
    const snap = requiredOperand(cmd, 1);
    await withSession(cmd, 'write', (store) => change(store, subject, snap));
    if (wantsJson(cmd)) writeJson({ ok: true });
  });
}

export function addRestoreCommand(program: Command): void {
  addSnapshotChange(program, 'restore', "make a subject's live state equal to a snapshot, in one commit", (store, subject, snap) => store.restoreSnap(subject, snap));
}

export function addSnapRmCommand(program: Command): void {
  addSnapshotChange(program, 'snap-rm', 'delete a snapshot (EBUSY while it is mounted)', (store, subject, snap) => store.deleteSnap(subject, snap));
}
