import type { Command } from 'commander';
import { defineAction } from '../action.js';
import { requiredOperand, wantsJson } from '../command-input.js';
import { writeJson } from '../output.js';
import { addSessionOptions, withSession } from '../store-session.js';

export function addDelCommand(program: Command): void {
  const cmd = program
    .command('del')
    .description('delete a key')
    .argument('<subject>', 'subject name')
    .argument('<key>', 'key path under /state/')
    .option('--json', 'print a JSON object');
  addSessionOptions(cmd);
  defineAction(cmd, async () => {
    const subject = requiredOperand(cmd, 0);
    const key = requiredOperand(cmd, 1);
    await withSession(cmd, 'write', (store) => store.delete(subject, key));
    if (wantsJson(cmd)) writeJson({ ok: true });
  });
}
