#!/usr/bin/env node
import { EXIT_UNAVAILABLE } from './exit-codes.js';

process.stderr.write('statefsd: the daemon is not built yet (issue 7); use the library or the statefs CLI\n');
process.exitCode = EXIT_UNAVAILABLE;
