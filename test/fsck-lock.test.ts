import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Store } from '../src/engine/store.js';
import { fsck } from '../src/engine/fsck.js';
import { MemoryDevice } from '../src/device/memory-device.js';
import { readLock, takeOverStaleLock } from '../src/device/image-lock.js';
import { readdirSync } from 'node:fs';
import { StatefsError } from '../src/errors.js';
import { guardResources } from './hygiene.js';
import { MiB, memoryImage, withTempDir } from './helpers.js';
import { deadPid } from './lock-processes.js';
import { record, u32, u64 } from './record-encoder.js';

guardResources();

// Review of c1a1600 (fsck holds the image's lock): the lock must never be left behind, never
// removed by one who does not own it, never shared by two holders, and a repair never writes
// without it.

const code = (c: string) => (err: unknown) => err instanceof StatefsError && err.code === c;
/** The pid line of a lock file (the lines after it name the host, boot and namespace: lock-owner.ts). */
const lockText = (lock: string): string => (existsSync(lock) ? (readFileSync(lock, 'utf8').split('\n')[0] ?? '') : 'none');
const asRoot = { skip: process.getuid?.() !== 0 ? 'needs root to run a check as another user' : false };

async function image(path: string): Promise<void> {
  const s = await Store.create(path, { size: 8 * MiB });
  await s.put('app', '/state/k', 'v');
  await s.close();
}

test('fsck does not remove a lock that is no longer its own when it ends', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'a.img');
    const lock = `${path}.lock`;
    await image(path);
    const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)'], { stdio: 'ignore' });
    try {
      // Another process holds the lock by the end of the check (here put there by hand; a
      // takeover race or a lock judged stale while it was being written does the same).
      const report = await fsck(path, {
        onProgress: (_f, phase) => {
          if (phase === 'values') writeFileSync(lock, `${String(other.pid)}\n`);
        },
      });
      assert.equal(report.exitCode, 0);
      assert.equal(lockText(lock), String(other.pid), 'fsck removed a lock it did not own');
    } finally {
      other.kill('SIGKILL');
      await once(other, 'exit');
    }
  });
});

test('a lock file still being written (empty, just created) is not taken over; an old empty one is', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'a.img');
    const lock = `${path}.lock`;
    await image(path);
    writeFileSync(lock, ''); // another opener between its O_EXCL create and its pid write
    await assert.rejects(Store.open(path), code('EBUSY'));
    await assert.rejects(fsck(path), code('EBUSY'));
    assert.equal(lockText(lock), '', 'the lock being created was left alone');
    const old = new Date(Date.now() - 60_000);
    utimesSync(lock, old, old); // its creator died between the create and the write
    const s = await Store.open(path);
    assert.equal(lockText(lock), String(process.pid));
    await s.close();
    assert.equal(existsSync(lock), false);
  });
});

test('two openers that judged the same stale lock: the second leaves the lock the first has taken since', async () => {
  await withTempDir(async (dir) => {
    const lock = join(dir, 'a.img.lock');
    const dead = `${deadPid()}\n`;
    writeFileSync(lock, dead);
    // Both read the dead pid; the first removes it and takes the lock...
    const judged = await readLock(lock);
    assert.ok(judged !== undefined);
    assert.equal(await takeOverStaleLock(lock, judged), 'removed');
    writeFileSync(lock, `${String(process.pid)}\n`, { flag: 'wx' });
    // ...and the second, acting on what it read before, must not remove the first one's lock.
    assert.equal(await takeOverStaleLock(lock, judged), 'changed');
    assert.equal(lockText(lock), String(process.pid));
    assert.deepEqual(readdirSync(dir), ['a.img.lock']);
  });
});

test('fsck of an image in a directory that does not exist: ENOENT, as for a missing image', async () => {
  await withTempDir(async (dir) => {
    await assert.rejects(fsck(join(dir, 'nodir', 'a.img')), code('ENOENT'));
    await assert.rejects(fsck(join(dir, 'a.img')), code('ENOENT'));
    assert.equal(existsSync(join(dir, 'a.img.lock')), false);
  });
});

/** Runs fsck as nobody on `path`; prints `exitCode repaired` or the error code. */
function fsckAsNobody(path: string, repair: boolean): string {
  const fsckJs = fileURLToPath(new URL('../src/engine/fsck.js', import.meta.url));
  const script = `import { fsck } from ${JSON.stringify(fsckJs)}; fsck(${JSON.stringify(path)}, { repair: ${String(repair)} }).then((r) => console.log(r.exitCode, r.repaired), (e) => console.log(e.code));`;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { uid: 65534, gid: 65534, encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  return run.stdout.trim();
}

test('fsck of an image in a directory it cannot write, beside a stale lock (its pid is dead): checked', asRoot, async () => {
  await withTempDir(async (dir) => {
    const ro = join(dir, 'ro');
    mkdirSync(ro);
    const path = join(ro, 'a.img');
    await image(path);
    writeFileSync(`${path}.lock`, `${deadPid()}\n`, { mode: 0o644 }); // its owner was killed
    chmodSync(dir, 0o755);
    chmodSync(ro, 0o555);
    chmodSync(path, 0o444);
    assert.equal(fsckAsNobody(path, false), '0 false');
  });
});

test('fsck --repair of an image in a directory it cannot write is refused, not run without the lock', asRoot, async () => {
  await withTempDir(async (dir) => {
    const ro = join(dir, 'ro');
    mkdirSync(ro);
    const path = join(ro, 'a.img');
    // An orphaned transaction at the log's end: repairable (an ABORT is appended).
    const img = await memoryImage(8 * MiB);
    const s = await Store.openDevice(new MemoryDevice(img), { autoGc: false });
    await s.put('app', '/state/a', 'alpha');
    const tail = (await s.stat()).usedBytes;
    await s.close();
    const body = Buffer.concat([
      record(0x10, Buffer.from('app'), Buffer.concat([u64(1000), u32(1)])),
      record(0x11, Buffer.from('app\0/state/orphan', 'latin1'), Buffer.concat([u64(1000), Buffer.from([1]), Buffer.from([0, 0, 1, 0]), Buffer.from('x')])),
    ]);
    img.set(Buffer.concat([body, record(0x14, Buffer.alloc(0), Buffer.concat([u64(1), u32(tail)]))]), 4096 + tail);
    writeFileSync(path, img);
    chmodSync(dir, 0o755);
    chmodSync(ro, 0o555);
    chmodSync(path, 0o666); // the image is writable, its directory is not: no lock can be taken
    assert.equal(fsckAsNobody(path, false), '1 false');
    // An owner may start at any moment (nothing locks it out): the repair must not write.
    assert.equal(fsckAsNobody(path, true), 'EIO');
    assert.equal((await fsck(path)).exitCode, 1, 'nothing was written');
  });
});
