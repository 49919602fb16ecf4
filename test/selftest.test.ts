import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startDaemon } from '../src/server/daemon/daemon.js';
import { savePolicy } from '../src/server/policy/policy-file.js';
import { emptyPolicy, hashToken, newToken, type Right } from '../src/server/policy/policy.js';
import { MiB, withTempDir } from './helpers.js';
import { guardResources } from './hygiene.js';

guardResources();

const STATEFS = fileURLToPath(new URL('../src/cli/statefs.js', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The built CLI as a child process (async: the daemon runs in this process). */
function runCli(args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [STATEFS, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    child.on('error', reject);
    child.on('close', (code) => {
      resolve({ code, stdout, stderr });
    });
  });
}

async function selftestAs(rights: Right[]): Promise<Run> {
  return withTempDir(async (dir) => {
    const policy = emptyPolicy();
    const token = newToken();
    policy.subjects.set('tester', { tokenSha256: hashToken(token), rights, grants: [] });
    const policyPath = join(dir, 'policy.json');
    await savePolicy(policyPath, policy);
    const socket = join(dir, 'sock');
    const daemon = await startDaemon({ imagePath: join(dir, 'img'), socketPath: socket, policyPath, auditPath: join(dir, 'audit.log'), createSize: 32 * MiB });
    try {
      return await runCli(['selftest', '--connect', socket, '--token', token]);
    } finally {
      await daemon.close();
    }
  });
}

test('selftest: passes against a live daemon, including the reopen', async () => {
  const run = await selftestAs(['read', 'write', 'snapshot', 'mount', 'gc', 'admin']);
  assert.equal(run.code, 0, run.stdout + run.stderr);
  const lines = run.stdout.trim().split('\n');
  assert.ok(lines.includes('SELFTEST: statefs v3 snapshot ok'), run.stdout);
  assert.ok(lines.includes('SELFTEST: statefs v3 compact ok'), run.stdout);
  assert.ok(!run.stdout.includes('FAIL'), run.stdout);
});

test('selftest: a subject without the gc right fails', async () => {
  const run = await selftestAs(['read', 'write', 'snapshot', 'mount', 'admin']);
  assert.equal(run.code, 1, run.stdout + run.stderr);
  assert.match(run.stdout, /^FAIL: /m);
  assert.ok(!run.stdout.includes('SELFTEST:'), run.stdout);
});
