import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { test } from 'node:test';
import { inspect } from 'node:util';
import { fileURLToPath } from 'node:url';
import { readLock, takeOverStaleLock, type SeenLock } from '../src/device/image-lock.js';
import { formatLock, parseLock } from '../src/device/lock-owner.js';
import { Store } from '../src/engine/store.js';
import { StatefsError } from '../src/errors.js';
import { guardResources } from './hygiene.js';
import { MiB, text, withTempDir } from './helpers.js';
import { deadPid, withOtherProcess } from './lock-processes.js';

guardResources();

const asRoot = { skip: process.getuid?.() !== 0 ? 'needs root to open as another user' : false };

// Taking over a stale lock used to move the lock aside, check its text and link it back if it was
// not the one judged. With three openers at once, the third created its lock while the second had
// the first's aside; the link back failed and the first's lock was deleted: two processes wrote
// the image (two holders in about half the rounds of the race below). Takers of one stale lock
// now take turns through files named after it, and read the lock again in their turn.

const busyWith = (...parts: string[]) => (err: unknown) => err instanceof StatefsError && err.code === 'EBUSY' && parts.every((p) => err.message.includes(p));
const longAgo = (path: string): void => {
  const old = new Date(Date.now() - 60_000);
  utimesSync(path, old, old);
};

async function image(path: string): Promise<void> {
  const s = await Store.create(path, { size: 8 * MiB });
  await s.put('app', '/state/k', 'v');
  await s.close();
}

/** The lock file as an opener judges it now, and the file of turn `turn` of a takeover of it. */
async function judgedLock(lock: string, turn = 1): Promise<{ judged: SeenLock; turnFile: string }> {
  const judged = await readLock(lock);
  assert.ok(judged !== undefined);
  return { judged, turnFile: join(dirname(lock), `.statefs-turn-${judged.identity}-${String(turn)}`) };
}

type Opener = ChildProcessByStdio<Writable, Readable, null>;

/**
 * `count` processes, each ready to lock the image at `path` on a line on its stdin, and each then
 * printing `held` or the error's code and keeping what it took until killed.
 */
function startOpeners(path: string, count: number): { openers: Opener[]; answers: (() => Promise<string>)[] } {
  const imageLockJs = fileURLToPath(new URL('../src/device/image-lock.js', import.meta.url));
  const script = [
    `import { lockImage } from ${JSON.stringify(imageLockJs)};`,
    `import { createInterface } from 'node:readline';`,
    `createInterface({ input: process.stdin }).once('line', () => lockImage(${JSON.stringify(path)}, 'open', '').then(`,
    `  () => process.stdout.write('held\\n'), (err) => process.stdout.write(String(err.code) + '\\n')));`,
    `process.stdout.write('ready\\n');`,
  ].join('\n');
  const openers: Opener[] = [];
  const answers: (() => Promise<string>)[] = [];
  for (let i = 0; i < count; i++) {
    const opener = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
    openers.push(opener);
    const lines = createInterface({ input: opener.stdout })[Symbol.asyncIterator]();
    answers.push(async () => String((await lines.next()).value));
  }
  return { openers, answers };
}

async function stopAll(openers: Opener[]): Promise<void> {
  for (const opener of openers) {
    if (opener.exitCode !== null || opener.signalCode !== null) continue;
    opener.kill('SIGKILL');
    await once(opener, 'exit');
  }
}

test('openers racing for a stale lock: exactly one holds the image, every other one is EBUSY', async () => {
  const leftBy = ['a killed owner', 'an earlier version\'s creator killed before it wrote its pid', 'a killed owner, and a taker killed in its turn'];
  for (let round = 0; round < 9; round++) {
    const stale = leftBy[round % leftBy.length] ?? '';
    await withTempDir(async (dir) => {
      const path = join(dir, 'a.img');
      const lock = `${path}.lock`;
      if (stale === leftBy[1]) {
        writeFileSync(lock, '');
        longAgo(lock);
      } else {
        writeFileSync(lock, `${String(deadPid())}\n`);
      }
      if (stale === leftBy[2]) writeFileSync((await judgedLock(lock)).turnFile, `${String(deadPid())}\n`);
      const { openers, answers } = startOpeners(path, 4);
      try {
        for (const answer of answers) assert.equal(await answer(), 'ready');
        for (const opener of openers) opener.stdin.write('go\n');
        const results = await Promise.all(answers.map((answer) => answer()));
        const holders = openers.filter((_, i) => results[i] === 'held');
        assert.equal(holders.length, 1, `round ${String(round)} (${stale}): ${results.join(' ')}`);
        assert.deepEqual(results.filter((r) => r !== 'held'), ['EBUSY', 'EBUSY', 'EBUSY']);
        const owner = parseLock(readFileSync(lock, 'utf8'));
        assert.equal(owner?.pid, holders[0]?.pid, 'the lock names the one holder');
        assert.deepEqual(readdirSync(dir), [owner?.socket?.split(' ')[0], 'a.img.lock'], 'beside the lock only its owner\'s socket: no turn, draft or lock moved aside is left');
      } finally {
        await stopAll(openers);
      }
    });
  }
});

test('two opens in one process beside a stale lock: one holds the image, the other is EBUSY', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'a.img');
    await image(path);
    writeFileSync(`${path}.lock`, `${String(deadPid())}\n`);
    const results = await Promise.allSettled([Store.open(path), Store.open(path)]);
    const opened = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const refused = results.flatMap((r): unknown[] => (r.status === 'rejected' ? [r.reason] : []));
    assert.equal(opened.length, 1);
    assert.equal(refused.length, 1);
    assert.ok(busyWith(`locked by process ${String(process.pid)}`)(refused[0]), inspect(refused[0]));
    await opened[0]?.close();
    assert.deepEqual(readdirSync(dir), ['a.img']);
  });
});

test('a takeover another live process is making: the stale lock is left to it, and an opener is EBUSY naming its turn file', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'a.img');
    const lock = `${path}.lock`;
    await image(path);
    const stale = `${String(deadPid())}\n`;
    writeFileSync(lock, stale);
    const { judged, turnFile } = await judgedLock(lock);
    await withOtherProcess(async (other) => {
      writeFileSync(turnFile, formatLock(other));
      assert.deepEqual(await takeOverStaleLock(lock, judged), { busy: turnFile });
      await assert.rejects(Store.open(path), busyWith('being locked by another process', `remove ${turnFile}`));
      assert.equal(readFileSync(lock, 'utf8'), stale, 'the stale lock was left to the takeover');
      assert.equal(readFileSync(turnFile, 'utf8'), formatLock(other), 'and so was its turn');
    });
  });
});

test('a turn whose taker died in it: the next opener takes the next turn, takes the lock over and removes both turns', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'a.img');
    const lock = `${path}.lock`;
    await image(path);
    writeFileSync(lock, `${String(deadPid())}\n`);
    const { turnFile } = await judgedLock(lock);
    writeFileSync(turnFile, `${String(deadPid())}\n`);
    const s = await Store.open(path);
    assert.equal(parseLock(readFileSync(lock, 'utf8'))?.pid, process.pid);
    assert.equal(existsSync(turnFile), false);
    assert.equal(text(await s.get('app', '/state/k')), 'v');
    await s.close();
    assert.deepEqual(readdirSync(dir), ['a.img']);
  });
});

test('a lock without a pid judged stale, then replaced by a new opener\'s (still without its pid): the new one is left', async () => {
  await withTempDir(async (dir) => {
    const lock = join(dir, 'a.img.lock');
    writeFileSync(lock, '');
    longAgo(lock); // its creator (an earlier version) died between the create and the write: stale
    const { judged } = await judgedLock(lock);
    // The lock is taken over and a new opener creates its own, not yet written: the same text.
    writeFileSync(lock, '');
    assert.equal(await takeOverStaleLock(lock, judged), 'changed');
    assert.equal(existsSync(lock), true, 'the new opener\'s lock was left');
    assert.deepEqual(readdirSync(dir), ['a.img.lock']);
  });
});

/** An image at `dir/shared/a.img`, which any user may write, in a directory of mode `mode`; its path. */
async function imageInDirectoryOfMode(dir: string, mode: number, stale?: string): Promise<string> {
  const shared = join(dir, 'shared');
  mkdirSync(shared);
  const path = join(shared, 'a.img');
  await image(path);
  if (stale !== undefined) writeFileSync(`${path}.lock`, stale, { mode: 0o644 }); // root's
  chmodSync(dir, 0o755);
  chmodSync(shared, mode);
  chmodSync(path, 0o666);
  return path;
}

/** `Store.open` of `path`, then close, as user nobody: `opened`, or the error's code and message. */
function openAsNobody(path: string): string {
  const storeJs = fileURLToPath(new URL('../src/engine/store.js', import.meta.url));
  const script = `import { Store } from ${JSON.stringify(storeJs)}; Store.open(${JSON.stringify(path)}).then((s) => s.close().then(() => console.log('opened')), (e) => console.log(e.code, e.message));`;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { uid: 65534, gid: 65534, encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  return run.stdout;
}

test('a stale lock this process may not remove (another user\'s, in a sticky directory): EBUSY naming the file to remove', asRoot, async () => {
  await withTempDir(async (dir) => {
    const stale = `${String(deadPid())}\n`; // its owner killed
    const path = await imageInDirectoryOfMode(dir, 0o1777, stale);
    assert.match(openAsNobody(path), /^EBUSY .*stale lock that this process may not remove: remove .*a\.img\.lock/);
    assert.equal(readFileSync(`${path}.lock`, 'utf8'), stale);
    // It took no turn (it could only have failed), and left no draft or socket.
    assert.deepEqual(readdirSync(dirname(path)), ['a.img', 'a.img.lock']);
    const s = await Store.open(path); // root may remove it
    await s.close();
    assert.deepEqual(readdirSync(dirname(path)), ['a.img']);
  });
});

test('a writable open in a directory it may not write: EBUSY naming a live holder, EIO naming the lock file when there is none', asRoot, async () => {
  await withTempDir(async (dir) => {
    const path = await imageInDirectoryOfMode(dir, 0o555);
    assert.match(openAsNobody(path), new RegExp(`^EIO .*cannot create ${path}\\.lock: EACCES`));
    const s = await Store.open(path); // root may write there
    assert.match(openAsNobody(path), new RegExp(`^EBUSY .*image a\\.img is locked by process ${String(process.pid)}`));
    await s.close();
    assert.deepEqual(readdirSync(dirname(path)), ['a.img']);
  });
});

test('a FIFO or a link at the lock\'s path is neither read through nor waited on: EBUSY, and left alone', { timeout: 20_000 }, async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'a.img');
    await image(path);
    const lock = `${path}.lock`;
    assert.equal(spawnSync('mkfifo', [lock]).status, 0);
    await assert.rejects(Store.open(path), busyWith('being locked by another process'));
    assert.ok(lstatSync(lock).isFIFO());
    rmSync(lock);
    const elsewhere = join(dir, 'stale-lock-elsewhere');
    writeFileSync(elsewhere, `${String(deadPid())}\n`);
    symlinkSync(elsewhere, lock);
    await assert.rejects(Store.open(path), busyWith('being locked by another process'));
    assert.ok(lstatSync(lock).isSymbolicLink());
    assert.ok(existsSync(elsewhere));
  });
});
