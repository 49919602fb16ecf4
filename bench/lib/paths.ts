// Where the harness finds the repository, the peers' package and the results folder. This file
// compiles to dist/bench/lib/paths.js, three levels below the repository root.
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const BENCH_DIR = fileURLToPath(new URL('../../../bench/', import.meta.url));
export const BENCH_PACKAGE_JSON = fileURLToPath(new URL('../../../bench/package.json', import.meta.url));
export const RESULTS_DIR = fileURLToPath(new URL('../../../bench/results/', import.meta.url));
/** The compiled child-process entry of one engine × job. */
export const WORKER_JS = fileURLToPath(new URL('../worker.js', import.meta.url));
export const STATEFSD_JS = fileURLToPath(new URL('../../src/cli/statefsd.js', import.meta.url));
