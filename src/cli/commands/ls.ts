import type { Command } from 'commander';
import type { ListOptions } from '../../engine/store-types.js';
import { defineAction } from '../action.js';
import { numberOption, operand, requiredOperand, stringOption, wantsJson } from '../command-input.js';
import { writeJson, writeLines } from '../output.js';
import { parseCount } from '../parse-number.js';
import { addSessionOptions, withSession } from '../store-session.js';

export function addLsCommand(program: Command): void {
  const cmd = program
    .command('ls')
    .description('list keys, one per line, bytewise ascending (--json also gives the next-page cursor)')
    .argument('<subject>', 'subject name')
    .argument('[prefix]', 'only keys starting with this (default /state/)')
    .option('--limit <n>', 'at most n keys (default 1000)', parseCount)
    .option('--after <key>', 'start after this key (the next of a previous page)')
    .option('--json', 'print the page as a JSON object');
  addSessionOptions(cmd);
  defineAction(cmd, async () => {
    const subject = requiredOperand(cmd, 0);
    const prefix = operand(cmd, 1);
    const limit = numberOption(cmd, 'limit');
    const after = stringOption(cmd, 'after');
    const options: ListOptions = { ...(limit === undefined ? {} : { limit }), ...(after === undefined ? {} : { after }) };
    const page = await withSession(cmd, 'read', (store) => store.list(subject, prefix, options));
    if (wantsJson(cmd)) writeJson(page);
    else writeLines(page.keys);
  });
}
