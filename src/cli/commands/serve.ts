import type { Command } from 'commander';
import { addDaemonOptions, serve, type DaemonArgs } from '../serve.js';

/** `statefs serve`: the daemon, as `statefsd` runs it (same options, logs, signals and exit codes). */
export function addServeCommand(program: Command): void {
  const cmd = program.command('serve').description('run the daemon on an image (statefsd with the same options): Unix socket, policy, audit log');
  addDaemonOptions(cmd);
  cmd.action(async () => {
    await serve(cmd.opts<DaemonArgs>());
  });
}
