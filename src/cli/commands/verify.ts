import type { Command } from 'commander';
import { defineAction } from '../action.js';
import { requiredOperand, requiredStringOption, wantsJson } from '../command-input.js';
import { writeJson, writeLines } from '../output.js';
import { withStore } from '../store-session.js';

export function addVerifyCommand(program: Command): void {
  const cmd = program
    .command('verify')
    .description("re-read a snapshot's records and check its content digest (EINTEGRITY on a mismatch)")
    .argument('<subject>', 'subject name')
    .argument('<name>', 'snapshot name')
    .requiredOption('--image <path>', 'image file')
    .option('--json', 'print a JSON object');
  defineAction(cmd, async () => {
    const subject = requiredOperand(cmd, 0);
    const name = requiredOperand(cmd, 1);
    const digest = await withStore(requiredStringOption(cmd, 'image'), 'read', (store) => store.verifySnapshot(subject, name));
    if (wantsJson(cmd)) writeJson({ ok: true, digest });
    else writeLines([`ok ${digest}`]);
  });
}
