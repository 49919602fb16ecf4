import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
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

function launch(cwd: string): Launcher {
  const child = spawn(process.execPath, [QUICKSTART], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
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

/** Stops whatever a failed test left running. */
async function cleanUp(l: Launcher, pid: number | undefined): Promise<void> {
  if (l.child.exitCode === null && l.child.signalCode === null) l.child.kill('SIGKILL');
  await l.exited;
  if (pid !== undefined && !processGone(pid)) process.kill(pid, 'SIGKILL');
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

test('kill -9 of the launcher: the daemon sees its channel close, drains, syncs and exits, and the image is unlocked (it lived on, holding the lock)', async () => {
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
      const deadline = Date.now() + WAIT_MS;
      while (!processGone(pid)) {
        if (Date.now() > deadline) assert.fail(`the daemon (pid ${String(pid)}) still runs ${WAIT_MS} ms after its launcher was killed`);
        await sleep(20);
      }
      // A clean close removes the lock (a killed daemon would leave it behind, to be judged stale).
      assert.equal(existsSync(`${image}.lock`), false, 'the daemon closed the image');
      assert.equal(await socketAnswers(socket), false);
      const get = await runStatefs(['get', '--image', image, 'admin', '/state/k']);
      assert.deepEqual([get.status, get.stdout.trim()], [0, 'kept'], get.stderr);
    } finally {
      // The daemon first: while it lives, the launcher's stdout stays open and cleanUp would wait.
      if (pid !== undefined && !processGone(pid)) process.kill(pid, 'SIGKILL');
      await cleanUp(first, pid);
    }
  });
});
