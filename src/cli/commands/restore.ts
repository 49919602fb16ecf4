import type { Command } from 'commander';
import { defineAction } from '../action.js';
import { requiredOperand, requiredStringOption, wantsJson } from '../command-input.js';
import { writeJson } from '../output.js';
import { withStore } from '../store-session.js';

export function addRestoreCommand(program: Command): void {
  const cmd = program
    .command('restore')
    .description("make a subject's live state equal to a snapshot, in one commit")
    .argument('<subject>', 'subject name')
    .argument('<name>', 'snapshot name')
    .requiredOption('--image <path>', 'image file')
    .option('--json', 'print a JSON object');
  defineAction(cmd, async () => {
    const subject = requiredOperand(cmd, 0);
    const name = requiredOperand(cmd, 1);
    await withStore(requiredStringOption(cmd, 'image'), 'write', (store) => store.restoreSnap(subject, name));
    if (wantsJson(cmd)) writeJson({ ok: true });
  });
}
