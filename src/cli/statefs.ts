#!/usr/bin/env node
import { CommanderError } from 'commander';
import { EXIT_USAGE } from './exit-codes.js';
import { ignoreBrokenPipe, reportFailure } from './output.js';
import { buildProgram } from './program.js';

ignoreBrokenPipe();
try {
  await buildProgram().parseAsync(process.argv);
} catch (err) {
  // Commander has already printed the message (and help); status 0 is --help.
  if (err instanceof CommanderError) process.exitCode = err.exitCode === 0 ? 0 : EXIT_USAGE;
  else reportFailure(err, false);
}
