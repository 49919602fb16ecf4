import type { Command } from 'commander';
import { StatefsError } from '../../errors.js';
import { defineAction } from '../action.js';
import { requiredOperand, wantsJson } from '../command-input.js';
import { writeJson } from '../output.js';
import { addSessionOptions, withSession } from '../store-session.js';

export function addGetCommand(program: Command): void {
  const cmd = program
    .command('get')
    .description('print the value of a key: raw bytes, or base64 in --json')
    .argument('<subject>', 'subject name')
    .argument('<key>', 'key path under /state/')
    .option('--json', 'print a JSON object');
  addSessionOptions(cmd);
  defineAction(cmd, async () => {
    const subject = requiredOperand(cmd, 0);
    const key = requiredOperand(cmd, 1);
    const value = await withSession(cmd, 'read', (store) => store.get(subject, key));
    if (value === undefined) throw StatefsError.ENOENT(`key ${key}`, { op: 'get', subject, key });
    if (wantsJson(cmd)) writeJson({ key, valueBase64: Buffer.from(value).toString('base64') });
    else process.stdout.write(value);
  });
}
