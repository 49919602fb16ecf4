import type { Command } from 'commander';
import { defineAction } from '../action.js';
import { requiredOperand, wantsJson } from '../command-input.js';
import { writeJson, writeLines } from '../output.js';
import { addSessionOptions, withSession } from '../store-session.js';

export function addVerifyCommand(program: Command): void {
  const cmd = program
    .command('verify')
    .description("re-read a snapshot's records and check its content digest (EINTEGRITY on a mismatch)")
    .argument('<subject>', 'subject name')
    .argument('<name>', 'snapshot name')
    .option('--json', 'print a JSON object');
  addSessionOptions(cmd);
  defineAction(cmd, async () => {
    const subject = requiredOperand(cmd, 0);
    const name = requiredOperand(cmd, 1);
    const digest = await withSession(cmd, 'read', (store) => store.verifySnapshot(subject, name));
    if (wantsJson(cmd)) writeJson({ ok: true, digest });
    else writeLines([`ok ${digest}`]);
  });
}
