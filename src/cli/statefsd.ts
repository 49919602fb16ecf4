#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { EXIT_USAGE } from './exit-codes.js';
import { ignoreBrokenPipe } from './output.js';
import { hintAfterError } from './help-hint.js';
import { addDaemonOptions, serve, type DaemonArgs } from './serve.js';
import { packageVersion } from './version.js';

function parseArgs(argv: string[]): DaemonArgs {
  const program = addDaemonOptions(new Command('statefsd').description('serve one StateFS image on a Unix socket').version(packageVersion()))
    .exitOverride()
    .configureOutput({
      outputError: (message, write) => {
        write(`statefsd: ${message.replace(/^error: /, '')}`);
      },
    });
  hintAfterError(program, 'statefsd');
  program.parse(argv);
  return program.opts<DaemonArgs>();
}

async function main(): Promise<void> {
  let args: DaemonArgs;
  try {
    args = parseArgs(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? 0 : EXIT_USAGE;
      return;
    }
    throw err;
  }
  await serve(args);
}

ignoreBrokenPipe();
await main();
