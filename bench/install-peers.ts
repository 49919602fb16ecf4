// `npm run bench` step: install bench/'s own dependencies (the peers) with `npm ci` from
// bench/package-lock.json, unless bench/node_modules already holds that lockfile's install.
import { spawnSync } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { BENCH_DIR } from './lib/paths.js';

async function mtime(path: string): Promise<number | undefined> {
  return stat(path).then(
    (s) => s.mtimeMs,
    () => undefined,
  );
}

const lock = await mtime(join(BENCH_DIR, 'package-lock.json'));
const manifest = await mtime(join(BENCH_DIR, 'package.json'));
const installed = await mtime(join(BENCH_DIR, 'node_modules', '.package-lock.json'));
if (installed !== undefined && lock !== undefined && manifest !== undefined && installed >= Math.max(lock, manifest)) {
  console.error('bench: peers already installed in bench/node_modules');
} else {
  console.error('bench: installing the peers into bench/node_modules (npm ci; better-sqlite3 may compile, ~2 min) ...');
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const r = spawnSync(npm, ['ci', '--no-audit', '--no-fund'], { cwd: BENCH_DIR, stdio: 'inherit' });
  if (r.status !== 0) {
    // The suite still runs: a peer that did not install is left out of the table, with a note.
    console.error(`bench: npm ci in bench/ failed (exit ${String(r.status)}); the peers that did not install will be skipped`);
  }
}
