import type { Command } from 'commander';
import { defineAction } from '../action.js';
import { requiredOperand, wantsJson } from '../command-input.js';
import { writeJson } from '../output.js';
import { addSessionOptions, withSession } from '../store-session.js';

export function addUmountCommand(program: Command): void {
  const cmd = program
    .command('umount')
    .description("remove a mount from caller's namespace")
    .argument('<caller>', 'subject that has the mount')
    .argument('<mountPath>', 'the mount path: /mnt/<label>')
    .option('--json', 'print a JSON object');
  addSessionOptions(cmd);
  defineAction(cmd, async () => {
    const caller = requiredOperand(cmd, 0);
    const mountPath = requiredOperand(cmd, 1);
    await withSession(cmd, 'write', (store) => store.umount(caller, mountPath));
    if (wantsJson(cmd)) writeJson({ ok: true });
  });
}
