import type { Command } from 'commander';
import { defineAction } from '../action.js';
import { requiredOperand, requiredStringOption, wantsJson } from '../command-input.js';
import { writeJson } from '../output.js';
import { withStore } from '../store-session.js';

export function addSnapRmCommand(program: Command): void {
  const cmd = program
    .command('snap-rm')
    .description('delete a snapshot (EBUSY while it is mounted)')
    .argument('<subject>', 'subject name')
    .argument('<name>', 'snapshot name')
    .requiredOption('--image <path>', 'image file')
    .option('--json', 'print a JSON object');
  defineAction(cmd, async () => {
    const subject = requiredOperand(cmd, 0);
    const name = requiredOperand(cmd, 1);
    await withStore(requiredStringOption(cmd, 'image'), 'write', (store) => store.deleteSnap(subject, name));
    if (wantsJson(cmd)) writeJson({ ok: true });
  });
}
