import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { socketAnswers } from '../src/server/daemon/daemon.js';
import { processGone, runStatefs, sleep } from './daemon-process.js';
import { withTempDir } from './helpers.js';
import { guardResources } from './hygiene.js';

/*
 * scripts/quickstart.mjs, what `npm start` runs after the build, in a temporary working
 * directory (it keeps its image, policy and socket under ./.statefs/).
 */

const QUICKSTART = fileURLToPath(new URL('../../scripts/quickstart.mjs', import.meta.url));
const BANNER = 'In another terminal:';
const WAIT_MS = 20_000;

guardResources();

interface Launcher {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Runs the quick start in `cwd`; `underShell`: as `npm start` does, under a parent that stays (a
 * shell standing in for npm), rather than as a child of this process.
 */
function launch(cwd: string, underShell = false): Launcher {
  const child = underShell
    ? spawn('/bin/sh', ['-c', '"$0" "$1"; exit $?', process.execPath, QUICKSTART], { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(process.execPath, [QUICKSTART], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString('utf8');
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('close', (code, signal) => {
      resolve({ code, signal });
    });
  });
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

/** Waits for the banner; fails if the launcher exits first or takes too long. */
async function untilBanner(l: Launcher): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!l.stdout().includes(BANNER)) {
    if (l.child.exitCode !== null || l.child.signalCode !== null) assert.fail(`the launcher exited before its banner: ${l.stderr()}`);
    if (Date.now() > deadline) assert.fail(`no banner within ${WAIT_MS} ms: ${l.stderr()}`);
    await sleep(20);
  }
}

/** The pid in the daemon's "listening on" log line. */
function daemonPid(l: Launcher): number {
  const m = /"pid":(\d+),"msg":"listening on /.exec(l.stderr());
  assert.ok(m?.[1] !== undefined, `no listening line in ${l.stderr()}`);
  return Number(m[1]);
}

/** The pids of `pid`'s children (Linux: /proc/<pid>/task/<pid>/children). */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${String(pid)}/task/${String(pid)}/children`, 'utf8').trim().split(' ').filter((p) => p !== '').map(Number);
  } catch {
    return [];
  }
}

/** `pid`'s children, their children, and so on. */
function descendantsOf(pid: number): number[] {
  return childrenOf(pid).flatMap((c) => [c, ...descendantsOf(c)]);
}

/**
 * Stops whatever a failed test left running: the daemon and every process under the launcher
 * first, since the launcher's stdout (and so its 'close') stays open while any of them runs.
 */
async function cleanUp(l: Launcher, pid: number | undefined): Promise<void> {
  const launcher = l.child.pid;
  const left = [...(pid === undefined ? [] : [pid]), ...(launcher === undefined ? [] : descendantsOf(launcher))];
  for (const p of left) if (!processGone(p)) process.kill(p, 'SIGKILL');
  if (l.child.exitCode === null && l.child.signalCode === null) l.child.kill('SIGKILL');
  await l.exited;
}

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test(`the banner comes once the daemon listens; a second start fails without it; ${signal} stops the daemon and the launcher exits 0`, async () => {
    await withTempDir(async (dir) => {
      const socket = join(dir, '.statefs', 'statefsd.sock');
      const first = launch(dir);
      let pid: number | undefined;
      try {
        await untilBanner(first);
        pid = daemonPid(first);
        assert.equal(await socketAnswers(socket), true, 'the daemon listens when the banner is out');

        const second = launch(dir);
        const failed = await second.exited;
        assert.deepEqual(failed, { code: 69, signal: null });
        assert.doesNotMatch(second.stdout(), new RegExp(BANNER));
        assert.match(second.stderr(), /statefsd did not start \(exit status 69\): cannot start: EBUSY: .*locked by process/);

        first.child.kill(signal);
        assert.deepEqual(await first.exited, { code: 0, signal: null });
        assert.equal(processGone(pid), true, 'the daemon is gone with the launcher');
        assert.equal(await socketAnswers(socket), false);
        const stat = await runStatefs(['stat', '--image', join(dir, '.statefs', 'state.img')]);
        assert.equal(stat.status, 0, `the image is no longer locked: ${stat.stderr}`);
      } finally {
        await cleanUp(first, pid);
      }
    });
  });
}

async function untilGone(pid: number, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!processGone(pid)) {
    if (Date.now() > deadline) assert.fail(`${what} (pid ${String(pid)}) still runs ${WAIT_MS} ms on`);
    await sleep(20);
  }
}

const linuxProc = { skip: existsSync(`/proc/${String(process.pid)}/task/${String(process.pid)}/children`) ? false : 'needs /proc/<pid>/task/<pid>/children' };

test('kill -9 of the launcher: the daemon sees its IPC channel close and closes the image (the lock goes), its writes kept (it lived on, holding the lock)', { timeout: 120_000 }, async () => {
  await withTempDir(async (dir) => {
    const image = join(dir, '.statefs', 'state.img');
    const socket = join(dir, '.statefs', 'statefsd.sock');
    const first = launch(dir);
    let pid: number | undefined;
    try {
      await untilBanner(first);
      pid = daemonPid(first);
      const put = await runStatefs(['put', '--connect', socket, 'admin', '/state/k', 'kept'], [], { STATEFS_TOKEN: (await readFile(join(dir, '.statefs', 'admin.token'), 'utf8')).trim() });
      assert.equal(put.status, 0, put.stderr);
      // Its 'exit', not 'close': the daemon holds the launcher's stdout (inherited) until it ends.
      const launcherExited = new Promise((resolve) => first.child.once('exit', resolve));
      first.child.kill('SIGKILL');
      await launcherExited;
      await untilGone(pid, 'the daemon');
      // A clean close removes the lock (a killed daemon would leave it behind, to be judged stale).
      assert.equal(existsSync(`${image}.lock`), false, 'the daemon closed the image');
      assert.equal(await socketAnswers(socket), false);
      const get = await runStatefs(['get', '--image', image, 'admin', '/state/k']);
      assert.deepEqual([get.status, get.stdout.trim()], [0, 'kept'], get.stderr);
    } finally {
      await cleanUp(first, pid);
    }
  });
});

test('kill -9 of the launcher while the daemon is still starting: the daemon stops once the image is open, and closes it', { ...linuxProc, timeout: 120_000 }, async () => {
  await withTempDir(async (dir) => {
    const image = join(dir, '.statefs', 'state.img');
    const first = launch(dir);
    let pid: number | undefined;
    try {
      const launcher = first.child.pid ?? assert.fail('no launcher pid');
      const deadline = Date.now() + WAIT_MS;
      // The moment the daemon process exists, long before it listens (no banner yet). (The
      // launcher runs `statefs policy add-subject` first, on a fresh folder.)
      const isDaemon = (p: number): boolean => {
        try {
          return readFileSync(`/proc/${String(p)}/cmdline`, 'utf8').includes('statefsd.js');
        } catch {
          return false;
        }
      };
      while ((pid = childrenOf(launcher).find(isDaemon)) === undefined) {
        if (Date.now() > deadline || first.child.exitCode !== null) assert.fail(`no daemon started: ${first.stderr()}`);
        await sleep(5);
      }
      const launcherExited = new Promise((resolve) => first.child.once('exit', resolve));
      first.child.kill('SIGKILL');
      await launcherExited;
      assert.doesNotMatch(first.stdout(), new RegExp(BANNER));
      await untilGone(pid, 'the daemon');
      assert.equal(existsSync(image), true, 'the daemon went on to open (and create) the image');
      assert.equal(existsSync(`${image}.lock`), false, 'and closed it');
      const stat = await runStatefs(['stat', '--image', image]);
      assert.equal(stat.status, 0, stat.stderr);
    } finally {
      await cleanUp(first, pid);
    }
  });
});

test('kill -9 of npm (the launcher\'s parent): the launcher sees itself orphaned, stops the daemon, and both exit', { ...linuxProc, timeout: 120_000 }, async () => {
  await withTempDir(async (dir) => {
    const image = join(dir, '.statefs', 'state.img');
    const npm = launch(dir, true);
    let pid: number | undefined;
    let launcher: number | undefined;
    try {
      await untilBanner(npm);
      pid = daemonPid(npm);
      launcher = childrenOf(npm.child.pid ?? assert.fail('no shell pid'))[0];
      assert.ok(launcher !== undefined, 'the launcher runs under the shell');
      npm.child.kill('SIGKILL');
      await untilGone(launcher, 'the launcher');
      await untilGone(pid, 'the daemon');
      assert.equal(existsSync(`${image}.lock`), false, 'the daemon closed the image');
    } finally {
      for (const p of [pid, launcher]) if (p !== undefined && !processGone(p)) process.kill(p, 'SIGKILL');
      await cleanUp(npm, pid);
    }
  });
});
