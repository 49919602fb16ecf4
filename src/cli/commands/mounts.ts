import type { Command } from 'commander';
import { defineAction } from '../action.js';
import { requiredOperand, requiredStringOption, wantsJson } from '../command-input.js';
import { writeJson, writeLines } from '../output.js';
import { withStore } from '../store-session.js';

export function addMountsCommand(program: Command): void {
  const cmd = program
    .command('mounts')
    .description("list caller's mounts, sorted by path: path, owner and snapshot name")
    .argument('<caller>', 'subject whose mounts to list')
    .requiredOption('--image <path>', 'image file')
    .option('--json', 'print a JSON array');
  defineAction(cmd, async () => {
    const caller = requiredOperand(cmd, 0);
    const mounts = await withStore(requiredStringOption(cmd, 'image'), 'read', (store) => store.listMounts(caller));
    if (wantsJson(cmd)) writeJson(mounts);
    else writeLines(mounts.map((m) => `${m.path} ${m.owner} ${m.name}`));
  });
}
