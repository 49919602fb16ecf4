import type { Command } from 'commander';
import { defineAction } from '../action.js';
import { requiredOperand, wantsJson } from '../command-input.js';
import { writeJson, writeLines } from '../output.js';
import { addSessionOptions, withSession } from '../store-session.js';

export function addMountsCommand(program: Command): void {
  const cmd = program
    .command('mounts')
    .description("list caller's mounts, sorted by path: path, owner and snapshot name")
    .argument('<caller>', 'subject whose mounts to list')
    .option('--json', 'print a JSON array');
  addSessionOptions(cmd);
  defineAction(cmd, async () => {
    const caller = requiredOperand(cmd, 0);
    const mounts = await withSession(cmd, 'read', (store) => store.listMounts(caller));
    if (wantsJson(cmd)) writeJson(mounts);
    else writeLines(mounts.map((m) => `${m.path} ${m.owner} ${m.name}`));
  });
}
