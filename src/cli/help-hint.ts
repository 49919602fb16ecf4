import type { Command } from 'commander';

/**
 * After a usage error, one line pointing at the command's help instead of the whole page; every
 * command of the tree gets its own, e.g. `(see statefs policy add-subject --help)`. Call it once
 * the tree is complete: commands added later would copy the parent's hint.
 */
export function hintAfterError(cmd: Command, path: string): void {
  cmd.showHelpAfterError(`(see ${path} --help)`);
  for (const sub of cmd.commands) hintAfterError(sub, `${path} ${sub.name()}`);
}
