import { CommanderError, type Command } from 'commander';
import { wantsJson } from './command-input.js';
import { reportFailure } from './output.js';

/**
 * Run `body` as the command's action. Store failures are reported here, where `--json` is
 * known; usage errors raised with `cmd.error()` pass through to the entry point (exit 64).
 */
export function defineAction(cmd: Command, body: () => Promise<void>): void {
  cmd.action(async () => {
    try {
      await body();
    } catch (err) {
      if (err instanceof CommanderError) throw err;
      reportFailure(err, wantsJson(cmd));
    }
  });
}
