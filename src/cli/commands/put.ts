import type { Command } from 'commander';
import { defineAction } from '../action.js';
import { operand, requiredOperand, stringOption, wantsJson } from '../command-input.js';
import { EXIT_USAGE } from '../exit-codes.js';
import { writeJson } from '../output.js';
import { MAX_VALUE_BYTES } from '../../engine/names.js';
import { readValueFile } from '../read-value.js';
import { addSessionOptions, withSession } from '../store-session.js';

export function addPutCommand(program: Command): void {
  const cmd = program
    .command('put')
    .description('store a value under a key (from the argument, or --file)')
    .argument('<subject>', 'subject name')
    .argument('<key>', 'key path under /state/')
    .argument('[value]', 'the value as text')
    .option('--file <path>', 'read the value from a file, or stdin for -')
    .option('--json', 'print a JSON object');
  addSessionOptions(cmd);
  defineAction(cmd, async () => {
    const subject = requiredOperand(cmd, 0);
    const key = requiredOperand(cmd, 1);
    const text = operand(cmd, 2);
    const file = stringOption(cmd, 'file');
    if ((text === undefined) === (file === undefined)) {
      const why = text === undefined ? 'give the value as an argument or with --file' : 'give the value either as an argument or with --file, not both';
      cmd.error(why, { exitCode: EXIT_USAGE, code: 'statefs.usage' });
    }
    // Read the input before opening the image, so a slow stdin does not hold the lock.
    const value = text ?? (await readValueFile(file ?? '-', 'put', MAX_VALUE_BYTES));
    await withSession(cmd, 'write', (store) => store.put(subject, key, value));
    if (wantsJson(cmd)) writeJson({ ok: true });
  });
}
