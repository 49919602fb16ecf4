import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { connect } from '../src/client/client.js';
import { startDaemon } from '../src/server/daemon/daemon.js';
import { savePolicy } from '../src/server/policy/policy-file.js';
import { emptyPolicy, hashToken, newToken, type Right } from '../src/server/policy/policy.js';
import { processGone, runStatefs, sleep, startStatefsd, STATEFSD, type CliRun } from './daemon-process.js';
import { MiB, withTempDir } from './helpers.js';
import { guardResources } from './hygiene.js';

guardResources();

/** The selftest against a daemon in this process, through its socket (or, `overTcp`, `--connect 127.0.0.1:<port>`). */
async function selftestAs(rights: Right[], extraArgs: string[] = [], overTcp = false): Promise<CliRun> {
  return withTempDir(async (dir) => {
    const policy = emptyPolicy();
    const token = newToken();
    policy.subjects.set('tester', { tokenSha256: hashToken(token), rights, grants: [] });
    const policyPath = join(dir, 'policy.json');
    await savePolicy(policyPath, policy);
    const socket = join(dir, 'sock');
    const listen = overTcp ? { listen: { host: '127.0.0.1', port: 0 } } : {};
    const daemon = await startDaemon({ imagePath: join(dir, 'img'), socketPath: socket, policyPath, auditPath: join(dir, 'audit.log'), createSize: 32 * MiB, ...listen });
    try {
      const target = overTcp ? `127.0.0.1:${String(daemon.tcpPort)}` : socket;
      return await runStatefs(['selftest', '--connect', target, '--token', token, ...extraArgs]);
    } finally {
      await daemon.close();
    }
  });
}

test('selftest: passes against a live daemon, including the reopen', async () => {
  const run = await selftestAs(['read', 'write', 'snapshot', 'mount', 'gc', 'admin']);
  assert.equal(run.status, 0, run.stdout + run.stderr);
  const lines = run.stdout.trim().split('\n');
  assert.ok(lines.includes('SELFTEST: statefs v3 snapshot ok'), run.stdout);
  assert.ok(lines.includes('SELFTEST: statefs v3 compact ok'), run.stdout);
  assert.ok(!run.stdout.includes('FAIL'), run.stdout);
});

test('selftest --connect host:port runs over the loopback TCP listener', async () => {
  const run = await selftestAs(['read', 'write', 'snapshot', 'mount', 'gc', 'admin'], [], true);
  assert.equal(run.status, 0, run.stdout + run.stderr);
  assert.ok(run.stdout.includes('SELFTEST: statefs v3 compact ok'), run.stdout);
});

test('selftest: a subject without the gc right fails', async () => {
  const run = await selftestAs(['read', 'write', 'snapshot', 'mount', 'admin']);
  assert.equal(run.status, 1, run.stdout + run.stderr);
  assert.match(run.stdout, /^FAIL: /m);
  assert.ok(!run.stdout.includes('SELFTEST:'), run.stdout);
});

const ALL_BUT_ADMIN: Right[] = ['read', 'write', 'snapshot', 'mount', 'gc'];

test('selftest --restart-cmd: a command that fails is a FAIL line and exit 1', async () => {
  const run = await selftestAs(ALL_BUT_ADMIN, ['--restart-cmd', 'echo restart refused >&2; exit 3']);
  assert.equal(run.status, 1, run.stdout + run.stderr);
  assert.equal(run.stdout, 'FAIL: restart command exited with status 3\n');
  assert.match(run.stderr, /restart refused/);
});

test('selftest --restart-cmd: a command that leaves the daemon running is a FAIL, not a pass', async () => {
  const run = await selftestAs(ALL_BUT_ADMIN, ['--restart-cmd', 'true', '--restart-timeout', '1']);
  assert.equal(run.status, 1, run.stdout + run.stderr);
  assert.match(run.stdout, /^FAIL: the restart command left the daemon running: /);
  assert.ok(!run.stdout.includes('SELFTEST:'), run.stdout);
});

const RESTART_SCRIPT = fileURLToPath(new URL('../../test/fixtures/restart-statefsd.sh', import.meta.url));
const shellQuote = (s: string): string => `'${s.replaceAll("'", "'\\''")}'`;

/** SIGTERM to a daemon this test did not spawn itself (the restart did): wait until it is gone, SIGKILL after 20 s. */
async function stopPid(pid: number): Promise<void> {
  if (processGone(pid)) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 20_000;
  while (!processGone(pid)) {
    if (Date.now() > deadline) {
      process.kill(pid, 'SIGKILL');
      assert.fail(`statefsd ${pid} did not exit within 20 s of SIGTERM`);
    }
    await sleep(50);
  }
}

test('selftest --restart-cmd: passes across a real restart of a statefsd child process', async () => {
  await withTempDir(async (dir) => {
    const token = newToken();
    const policy = emptyPolicy();
    policy.subjects.set('tester', { tokenSha256: hashToken(token), rights: ALL_BUT_ADMIN, grants: [] });
    const policyPath = join(dir, 'policy.json');
    await savePolicy(policyPath, policy);
    const image = join(dir, 'img');
    const socket = join(dir, 'sock');
    const daemonArgs = ['--image', image, '--socket', socket, '--policy', policyPath, '--audit', join(dir, 'audit.log')];
    const first = await startStatefsd([...daemonArgs, '--create-size', '32MiB']);
    const pidFile = join(dir, 'statefsd.pid');
    const logFile = join(dir, 'restarted.log');
    await writeFile(pidFile, `${first.pid}\n`);
    // The restart stops the daemon by its pid file and starts a new one on the same image, socket
    // and policy (test/fixtures/restart-statefsd.sh).
    const restartCmd = ['sh', RESTART_SCRIPT, pidFile, logFile, process.execPath, STATEFSD, ...daemonArgs].map(shellQuote).join(' ');
    let second: number | undefined;
    try {
      const run = await runStatefs(['selftest', '--connect', socket, '--token', token, '--restart-cmd', restartCmd]);
      second = Number((await readFile(pidFile, 'utf8')).trim());
      const log = await readFile(logFile, 'utf8').catch(() => '');
      assert.equal(run.status, 0, `${run.stdout}${run.stderr}${log}`);
      assert.equal(run.stdout, 'SELFTEST: statefs v3 snapshot ok\nSELFTEST: statefs v3 compact ok\n');

      // The first daemon drained and exited 0 on SIGTERM; a new process holds the image.
      assert.equal(await first.stop(), 0, first.stderr());
      assert.ok(Number.isSafeInteger(second) && second !== first.pid, `new pid ${second}`);
      assert.ok(!processGone(second), 'the new daemon runs');
      assert.equal((await readFile(`${image}.lock`, 'utf8')).split('\n')[0], String(second), 'the image lock names the new daemon');
      const listening = log
        .split('\n')
        .filter((line) => line.includes('listening on'))
        .map((line) => JSON.parse(line) as { pid?: unknown });
      assert.deepEqual(
        listening.map((l) => l.pid),
        [second],
        log,
      );
      // It served the second half: the selftest's snapshot and mount, removed by its cleanup
      // after the restart, are gone; the image is the same one (the churn keys too are deleted).
      const client = await connect({ socket, token });
      try {
        assert.deepEqual(await client.listSnaps('tester'), []);
        assert.deepEqual(await client.listMounts('tester'), []);
        assert.deepEqual((await client.list('tester', '/state/')).keys, []);
      } finally {
        await client.close();
      }
    } finally {
      if (second !== undefined && Number.isSafeInteger(second)) await stopPid(second);
      await first.stop();
    }
  });
});
