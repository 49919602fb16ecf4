// Durable puts and gets over the daemon's Unix socket with 1, 16 and 64 clients (issue 7):
// ops/s, p50 and p99 latency. The daemon runs in a child process, as in production.
// Run: npm run build && node dist/bench/daemon-clients.js   (STATEFS_BENCH_SECONDS per phase, default 3)
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { connect, type Client } from '../src/client/client.js';
import { savePolicy } from '../src/server/policy/policy-file.js';
import { emptyPolicy, hashToken, newToken } from '../src/server/policy/policy.js';

const seconds = Number(process.env.STATEFS_BENCH_SECONDS ?? 3);
const STATEFSD = fileURLToPath(new URL('../src/cli/statefsd.js', import.meta.url));
const value = new Uint8Array(100).fill(5);

async function connectRetry(socket: string, token: string): Promise<Client> {
  for (let i = 0; ; i++) {
    try {
      return await connect({ socket, token });
    } catch (err) {
      if (i > 100) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

function pct(sorted: number[], p: number): string {
  return (sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0).toFixed(2);
}

async function phase(clients: Client[], kind: 'put' | 'get'): Promise<string> {
  const latencies: number[] = [];
  const end = performance.now() + seconds * 1000;
  const t0 = performance.now();
  await Promise.all(
    clients.map(async (c, ci) => {
      for (let i = 0; performance.now() < end; i++) {
        const key = `/state/c${ci}/k${i % 1000}`;
        const s = performance.now();
        if (kind === 'put') await c.put('bench', key, value);
        else await c.get('bench', key);
        latencies.push(performance.now() - s);
      }
    }),
  );
  const elapsed = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  return `${kind}s: ${(latencies.length / elapsed).toFixed(0)} ops/s, p50 ${pct(latencies, 0.5)} ms, p99 ${pct(latencies, 0.99)} ms`;
}

const dir = await mkdtemp(join(tmpdir(), 'statefs-daemon-bench-'));
const token = newToken();
const policy = emptyPolicy();
policy.subjects.set('bench', { tokenSha256: hashToken(token), rights: ['read', 'write'], grants: [] });
await savePolicy(join(dir, 'policy.json'), policy);
const socket = join(dir, 'sock');
const daemon = spawn(process.execPath, [...(process.env.STATEFS_DAEMON_PROF === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${process.env.STATEFS_DAEMON_PROF}`]), STATEFSD, '--image', join(dir, 'img'), '--create-size', '256MiB', '--socket', socket, '--policy', join(dir, 'policy.json'), '--audit', join(dir, 'audit.log')], { stdio: 'ignore' });
try {
  for (const n of [1, 16, 64]) {
    const clients = await Promise.all(Array.from({ length: n }, () => connectRetry(socket, token)));
    console.log(`${String(n).padStart(2)} clients: ${await phase(clients, 'put')}; ${await phase(clients, 'get')}`);
    await Promise.all(clients.map((c) => c.close()));
  }
} finally {
  daemon.kill('SIGTERM');
  await new Promise((resolve) => daemon.on('exit', resolve));
  await rm(dir, { recursive: true, force: true });
}
