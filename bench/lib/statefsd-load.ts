// statefsd in a child process, as in production, and N clients over its Unix socket doing
// durable puts, then gets. Issue 7; `bench/daemon-clients.ts` prints it alone.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { connect, type Client } from '../../src/client/client.js';
import { savePolicy } from '../../src/server/policy/policy-file.js';
import { emptyPolicy, hashToken, newToken } from '../../src/server/policy/policy.js';
import { fail, putThenGet, retry } from './client-load.js';
import { benchValues } from './keys.js';
import { STATEFSD_JS } from './paths.js';
import type { LatencySummary } from './stats.js';

export interface DaemonPhase {
  clients: number;
  put: LatencySummary;
  get: LatencySummary;
}

/** Run the phases for each client count in `counts` against one daemon on an image in `dir`. */
export async function statefsdLoad(dir: string, counts: readonly number[], seconds: number): Promise<DaemonPhase[]> {
  const token = newToken();
  const policy = emptyPolicy();
  policy.subjects.set('bench', { tokenSha256: hashToken(token), rights: ['read', 'write'], grants: [] });
  await savePolicy(join(dir, 'policy.json'), policy);
  const socket = join(dir, 'sock');
  const args = [STATEFSD_JS, '--image', join(dir, 'img'), '--create-size', '256MiB', '--socket', socket, '--policy', join(dir, 'policy.json'), '--audit', join(dir, 'audit.log')];
  const daemon = spawn(process.execPath, args, { stdio: 'ignore' });
  const exited = new Promise((resolve) => daemon.on('exit', resolve));
  const stop = (): void => {
    daemon.kill('SIGTERM');
  };
  process.once('exit', stop); // if this process is stopped mid-run
  const value = benchValues()(0);
  const phases: DaemonPhase[] = [];
  try {
    for (const n of counts) {
      const clients: Client[] = await Promise.all(Array.from({ length: n }, () => retry(100, 50, () => connect({ socket, token }))));
      const client = (c: number): Client => clients[c] ?? clients[0] ?? fail('no client');
      try {
        const { put, get } = await putThenGet(
          n,
          seconds,
          (c, key) => client(c).put('bench', key, value),
          (c, key) => client(c).get('bench', key),
        );
        phases.push({ clients: n, put, get });
      } finally {
        await Promise.all(clients.map((c) => c.close()));
      }
    }
  } finally {
    process.off('exit', stop);
    stop();
    await exited;
  }
  return phases;
}
