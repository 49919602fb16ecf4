import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { chownSync, existsSync, lstatSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { formatLock, judgeLockOwner, parseLock, thisProcess, type LockOwner } from '../src/device/lock-owner.js';
import { fsck } from '../src/engine/fsck.js';
import { Store } from '../src/engine/store.js';
import { StatefsError } from '../src/errors.js';
import { guardResources } from './hygiene.js';
import { MiB, text, withTempDir } from './helpers.js';
import { deadPid, withOtherProcess } from './lock-processes.js';

guardResources();

// A pid names a process only within one PID namespace of one running kernel. Before the lock
// named more than the pid, a process in another container sharing the image's directory saw
// the owner's pid as dead, took the lock over and wrote the image beside its owner.

const onLinux = { skip: existsSync('/proc/self/ns/pid') ? false : 'needs /proc (Linux)' };
const code = (c: string) => (err: unknown) => err instanceof StatefsError && err.code === c;
const busyWith = (...parts: string[]) => (err: unknown) => code('EBUSY')(err) && err instanceof Error && parts.every((p) => err.message.includes(p));

async function image(path: string): Promise<void> {
  const s = await Store.create(path, { size: 8 * MiB });
  await s.put('app', '/state/k', 'v');
  await s.close();
}

/** A store open on a new image `a.img` in `dir`, with its lock's text and the owner it names. */
async function openOwned(dir: string): Promise<{ path: string; s: Store; written: string; owner: LockOwner }> {
  const path = join(dir, 'a.img');
  await image(path);
  const s = await Store.open(path);
  const written = readFileSync(`${path}.lock`, 'utf8');
  const owner = parseLock(written);
  assert.ok(owner !== undefined);
  return { path, s, written, owner };
}

/** An image whose lock names `owner`: a writable open is `EBUSY` with `message`, and the lock is left as it was. */
async function assertLockKept(dir: string, owner: LockOwner, ...message: string[]): Promise<string> {
  const path = join(dir, 'a.img');
  await image(path);
  const lock = formatLock(owner);
  writeFileSync(`${path}.lock`, lock);
  await assert.rejects(Store.open(path), busyWith(...message));
  assert.equal(readFileSync(`${path}.lock`, 'utf8'), lock, 'the lock was left alone');
  return path;
}

test('a writable open names its owner in the lock (pid, host, boot, PID namespace, start time), and close removes it', onLinux, async () => {
  await withTempDir(async (dir) => {
    const { path, s, written, owner } = await openOwned(dir);
    assert.equal(owner.pid, process.pid);
    assert.equal(owner.host, hostname());
    assert.match(owner.boot ?? '', /^[0-9a-f-]{36}$/);
    if (existsSync('/etc/machine-id')) {
      const id = readFileSync('/etc/machine-id', 'utf8').trim();
      assert.equal(owner.machine, createHash('sha256').update(`statefs lock ${id}`).digest('hex').slice(0, 32));
      assert.ok(!written.includes(id), 'the machine id itself is not written');
    }
    assert.match(owner.pidNamespace ?? '', /^pid:\[\d+\]$/);
    // Field 22 of /proc/<pid>/stat, counted independently: after the last ')' (the command name may hold spaces).
    const stat = readFileSync(`/proc/${String(process.pid)}/stat`, 'utf8');
    assert.equal(owner.start, stat.slice(stat.lastIndexOf(')') + 1).trim().split(/\s+/)[19]);
    assert.equal(written.split('\n')[0], String(process.pid), 'the first line is the pid alone, as earlier versions read it');
    assert.deepEqual(judgeLockOwner(owner), { holder: 'alive' });
    await s.close();
    assert.equal(existsSync(`${path}.lock`), false);
  });
});

test('a lock from another host is EBUSY naming that host and the lock file, even when its pid is not alive here', async () => {
  await withTempDir(async (dir) => {
    const owner = { ...thisProcess(), pid: deadPid(), host: 'other-host', machine: 'f'.repeat(32), boot: '00000000-0000-0000-0000-000000000000' };
    const path = await assertLockKept(dir, owner, 'on host other-host', `remove ${join(dir, 'a.img')}.lock only if`);
    await assert.rejects(fsck(path), code('EBUSY'));
    assert.equal(readFileSync(`${path}.lock`, 'utf8'), formatLock(owner), 'fsck left the lock alone');
    // A read-only open takes no lock and still reads.
    const ro = await Store.open(path, { readOnly: true });
    assert.equal(text(await ro.get('app', '/state/k')), 'v');
    await ro.close();
  });
});

test('a lock from another PID namespace of this host (another container) is EBUSY even when its pid is not alive here', onLinux, async () => {
  await withTempDir(async (dir) => {
    await assertLockKept(dir, { ...thisProcess(), pid: deadPid(), pidNamespace: 'pid:[1]' }, 'in another PID namespace of this host (pid:[1]');
  });
});

/** A socket file name as a lock owner makes one, for a pid that is not alive here. */
const socketName = (): string => `.statefs-owner-${String(deadPid())}-${randomBytes(8).toString('hex')}.sock`;
/** What a lock says of the socket file at `dir/name`: its name, device and inode. */
const socketNamed = (dir: string, name: string): string => {
  const st = lstatSync(join(dir, name), { bigint: true });
  return `${name} ${String(st.dev)}:${String(st.ino)}`;
};
const otherNamespace = (socket: string): LockOwner => ({ ...thisProcess(), pid: deadPid(), pidNamespace: 'pid:[1]', socket });

/** A process that listens on `path` and is killed: the socket file stays, and the kernel refuses connections to it. */
async function deadListener(path: string): Promise<void> {
  const script = `require('node:net').createServer().listen(${JSON.stringify(path)}, () => process.stdout.write('ready'));`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await firstOutput(child);
  child.kill('SIGKILL');
  await once(child, 'exit');
}

/** The first output of `child`; fails (not hangs) if it exits first. */
async function firstOutput(child: ChildProcessByStdio<null, Readable, null>): Promise<string> {
  const exited = once(child, 'exit').then(([code, signal]) => {
    throw new Error(`exited (${String(code ?? signal)}) before any output`);
  });
  const [chunk] = (await Promise.race([once(child.stdout, 'data'), exited])) as [Buffer];
  return chunk.toString('utf8');
}

test('a writable open listens on a socket its lock names (name, device and inode), and close removes both', onLinux, async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'a.img');
    await image(path);
    const s = await Store.open(path);
    const [name = '', id] = parseLock(readFileSync(`${path}.lock`, 'utf8'))?.socket?.split(' ') ?? [];
    assert.match(name, /^\.statefs-owner-\d+-[0-9a-f]{16}\.sock$/);
    assert.equal(`${name} ${String(id)}`, socketNamed(dir, name));
    assert.ok(lstatSync(join(dir, name)).isSocket());
    await s.close();
    assert.deepEqual(readdirSync(dir), ['a.img']);
  });
});

test('a lock from another PID namespace of this kernel whose owner\'s socket refuses connections (its container was killed) is stale: taken over, its socket file removed', onLinux, async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'a.img');
    await image(path);
    const socket = socketName();
    await deadListener(join(dir, socket));
    writeFileSync(`${path}.lock`, formatLock({ ...otherNamespace(socketNamed(dir, socket)), pid: 1 }));
    const s = await Store.open(path);
    const mine = parseLock(readFileSync(`${path}.lock`, 'utf8'));
    assert.equal(mine?.pid, process.pid);
    assert.equal(existsSync(join(dir, socket)), false, 'the dead owner\'s socket file was removed');
    assert.deepEqual(readdirSync(dir), [mine.socket?.split(' ')[0], 'a.img', 'a.img.lock']);
    await s.close();
    assert.deepEqual(readdirSync(dir), ['a.img'], 'close removes the lock and its socket');
  });
});

test('a lock from another PID namespace of this kernel is EBUSY while its owner answers on its socket (a live store), naming where', onLinux, async () => {
  await withTempDir(async (dir) => {
    const { path, s, written: own, owner } = await openOwned(dir);
    writeFileSync(`${path}.lock`, formatLock({ ...owner, pidNamespace: 'pid:[1]' })); // as another container sees it
    await assert.rejects(Store.open(path), busyWith(`is locked by process ${String(process.pid)} in another PID namespace of this host (pid:[1]`, 'which answers on its socket'));
    writeFileSync(`${path}.lock`, own);
    await s.close();
    assert.deepEqual(readdirSync(dir), ['a.img']);
  });
});

test('a lock from another PID namespace of this kernel is EBUSY when its socket cannot tell: gone, not the very socket named, another user\'s, or a name no owner makes', onLinux, async () => {
  // A cleaner may remove a live owner's socket file: no file is not taken for a dead owner.
  await withTempDir(async (dir) => {
    await assertLockKept(dir, otherNamespace(`${socketName()} 1:2`), 'in another PID namespace of this host (pid:[1]');
  });
  // Refused, but from another socket than the one named (another mount of the directory shows
  // another inode; someone else may put a socket there).
  await withTempDir(async (dir) => {
    const socket = socketName();
    await deadListener(join(dir, socket));
    const [name = '', id = ''] = socketNamed(dir, socket).split(' ');
    await assertLockKept(dir, otherNamespace(`${name} ${id.replace(/\d+$/, (ino) => String(BigInt(ino) + 1n))}`), 'in another PID namespace of this host (pid:[1]');
    assert.ok(existsSync(join(dir, socket)), 'a socket not the one named is left alone');
  });
  // A link at the name to a socket nobody listens on, named by that socket's device and inode.
  await withTempDir(async (dir) => {
    const socket = socketName();
    await deadListener(join(dir, 'elsewhere.sock'));
    symlinkSync(join(dir, 'elsewhere.sock'), join(dir, socket));
    const [, id = ''] = socketNamed(dir, 'elsewhere.sock').split(' ');
    await assertLockKept(dir, otherNamespace(`${socket} ${id}`), 'in another PID namespace of this host (pid:[1]');
    assert.ok(lstatSync(join(dir, socket)).isSymbolicLink());
  });
  // A regular file (which refuses connections too) at the name, with its own device and inode.
  await withTempDir(async (dir) => {
    const socket = socketName();
    writeFileSync(join(dir, socket), '');
    await assertLockKept(dir, otherNamespace(socketNamed(dir, socket)), 'in another PID namespace of this host (pid:[1]');
    assert.ok(existsSync(join(dir, socket)));
  });
  if (process.getuid?.() === 0) {
    await withTempDir(async (dir) => {
      const socket = socketName();
      await deadListener(join(dir, socket));
      chownSync(join(dir, socket), 65534, 65534); // another user's socket beside root's lock
      await assertLockKept(dir, otherNamespace(socketNamed(dir, socket)), 'in another PID namespace of this host (pid:[1]');
    });
  }
  for (const name of ['a.img', '../a.sock', '.statefs-owner-1-00.sock']) {
    await withTempDir(async (dir) => {
      const path = await assertLockKept(dir, otherNamespace(`${name} 1:2`), 'in another PID namespace of this host (pid:[1]');
      assert.ok(existsSync(path), `a lock naming ${name} as its socket removed nothing`);
    });
  }
});

/** `unshare --pid` works here (root, and not refused by a container's seccomp profile). */
const canUnshare = existsSync('/usr/bin/unshare') && spawnSync('/usr/bin/unshare', ['--pid', '--fork', '--mount-proc', 'true']).status === 0;

test('a store held in another PID namespace (a container): EBUSY while its process lives; once that is killed, the next open takes the lock over', { skip: canUnshare ? false : 'needs unshare --pid (root)' }, async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'a.img');
    await image(path);
    const storeJs = fileURLToPath(new URL('../src/engine/store.js', import.meta.url));
    const script = `import { Store } from ${JSON.stringify(storeJs)}; const s = await Store.open(${JSON.stringify(path)}); await s.put('app', '/state/k', 'from the container'); process.stdout.write('ready'); setInterval(() => {}, 60_000);`;
    // --kill-child: the store's process dies with unshare, whatever happens below.
    const unshare = spawn('/usr/bin/unshare', ['--pid', '--kill-child', '--mount-proc', process.execPath, '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      assert.equal(await firstOutput(unshare), 'ready');
      const owner = parseLock(readFileSync(`${path}.lock`, 'utf8'));
      assert.ok(owner?.socket !== undefined && owner.pidNamespace !== thisProcess().pidNamespace, JSON.stringify(owner));
      await assert.rejects(Store.open(path), busyWith(`is locked by process ${String(owner.pid)} in another PID namespace`, 'which answers on its socket'));
      // kill -9 of the store's process (the namespace's first: the namespace ends with it).
      const holder = Number(readFileSync(`/proc/${String(unshare.pid)}/task/${String(unshare.pid)}/children`, 'utf8').trim());
      process.kill(holder, 'SIGKILL');
      await once(unshare, 'exit');
      const s = await Store.open(path);
      assert.equal(text(await s.get('app', '/state/k')), 'from the container');
      assert.equal(existsSync(join(dir, owner.socket.split(' ')[0] ?? '')), false);
      await s.close();
      assert.deepEqual(readdirSync(dir), ['a.img']);
    } finally {
      if (unshare.exitCode === null && unshare.signalCode === null) {
        unshare.kill('SIGKILL');
        await once(unshare, 'exit');
      }
    }
  });
});

test('a lock from another machine with the same host name (another boot and machine id) is EBUSY, even when its pid is not alive here', onLinux, async () => {
  await withTempDir(async (dir) => {
    await assertLockKept(dir, { ...thisProcess(), pid: deadPid(), machine: 'f'.repeat(32), boot: '00000000-0000-0000-0000-000000000000' }, `on host ${hostname()} under another running kernel`);
  });
});

test('close removes only the lock it wrote: one with its pid but another start time (another process) stays', onLinux, async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'a.img');
    await image(path);
    const s = await Store.open(path);
    const other = formatLock({ ...thisProcess(), start: `${thisProcess().start ?? ''}9` });
    writeFileSync(`${path}.lock`, other); // another opener's lock since (here put there by hand)
    await s.close();
    assert.equal(readFileSync(`${path}.lock`, 'utf8'), other);
  });
});

const withMachineId = { skip: existsSync('/proc/self/ns/pid') && thisProcess().machine !== undefined ? false : 'needs /proc and /etc/machine-id' };

test('a lock from before this host restarted is stale even when its pid is alive now, and taken over', withMachineId, async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'a.img');
    await image(path);
    await withOtherProcess(async (other) => {
      writeFileSync(`${path}.lock`, formatLock(other));
      await assert.rejects(Store.open(path), busyWith(`locked by process ${String(other.pid)}`));
      writeFileSync(`${path}.lock`, formatLock({ ...other, boot: '00000000-0000-0000-0000-000000000000' }));
      const s = await Store.open(path);
      assert.equal(parseLock(readFileSync(`${path}.lock`, 'utf8'))?.pid, process.pid);
      assert.equal(text(await s.get('app', '/state/k')), 'v');
      await s.close();
    });
  });
});

test('a lock whose pid another process has been given since (another start time) is stale; the same process still holds it', onLinux, async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'a.img');
    await image(path);
    await withOtherProcess(async (other) => {
      writeFileSync(`${path}.lock`, formatLock(other));
      await assert.rejects(Store.open(path), code('EBUSY'));
      await assert.rejects(fsck(path), code('EBUSY'));
      writeFileSync(`${path}.lock`, formatLock({ ...other, start: `${other.start ?? ''}1` }));
      assert.equal((await fsck(path)).exitCode, 0);
      assert.equal(existsSync(`${path}.lock`), false, 'fsck took the stale lock over and removed it after the check');
    });
  });
});

test('lock text: the pid line first, unknown or malformed lines ignored, a lock without a pid line is none yet', () => {
  const owner: LockOwner = { pid: 42, host: 'h', machine: 'm', boot: 'b', pidNamespace: 'pid:[7]', start: '99' };
  assert.equal(formatLock(owner), '42\nhost h\nmachine m\nboot b\npidns pid:[7]\nstart 99\n');
  assert.deepEqual(parseLock(formatLock(owner)), owner);
  assert.deepEqual(parseLock('42\n'), { pid: 42 }, 'a lock of an earlier version: the pid alone');
  assert.deepEqual(parseLock('42\ncolour blue\nhost\nhost  \nstart 5\n'), { pid: 42, start: '5' });
  assert.equal(parseLock(''), undefined);
  assert.equal(parseLock('host h\n'), undefined);
  assert.equal(parseLock('-3\n'), undefined);
  // Judged only as far as this process can see.
  const here: LockOwner = { pid: 1, host: 'h', machine: 'm', boot: 'b', pidNamespace: 'pid:[7]' };
  const dead = deadPid();
  assert.equal(judgeLockOwner({ ...owner, pid: dead, host: 'g' }, here).holder, 'gone', 'the same running kernel under another host name: by the pid');
  assert.equal(judgeLockOwner({ ...owner, boot: 'c' }, here).holder, 'gone', 'this machine before a restart');
  assert.equal(judgeLockOwner({ ...owner, boot: 'c', machine: 'n' }, here).holder, 'unknown', 'another machine of the same name');
  assert.equal(judgeLockOwner({ ...owner, boot: 'c', host: 'g' }, here).holder, 'unknown', 'another machine');
  assert.equal(judgeLockOwner({ pid: 42, boot: 'c' }, here).holder, 'unknown', 'another kernel, no machine id');
  assert.equal(judgeLockOwner({ pid: dead, host: 'g' }, { pid: 1, host: 'h' }).holder, 'unknown', 'no boot ids: another host name');
  assert.equal(judgeLockOwner({ ...owner, pidNamespace: 'pid:[8]' }, here).holder, 'unknown');
  // Without a start time of its own (a /proc of another namespace), none is compared.
  assert.equal(judgeLockOwner({ pid: process.pid, start: '1' }, { pid: 1 }).holder, 'alive');
  assert.equal(judgeLockOwner({ pid: process.pid, start: '1' }, thisProcess()).holder, thisProcess().start !== undefined ? 'gone' : 'alive');
  // Under the same running kernel, a lock naming no PID namespace, or this process naming none, cannot be judged by its pid.
  assert.equal(judgeLockOwner({ pid: dead, boot: 'b' }, here).holder, 'unknown');
  assert.equal(judgeLockOwner({ ...owner, pid: dead }, { pid: 1, host: 'h', machine: 'm', boot: 'b' }).holder, 'unknown');
  // A boot id this process cannot compare (it reads none): unknown, even under the same host name.
  assert.equal(judgeLockOwner({ ...owner, pid: dead }, { pid: 1, host: 'h' }).holder, 'unknown');
  assert.equal(judgeLockOwner({ pid: deadPid() }, here).holder, 'gone', 'an earlier version\'s lock: judged by its pid');
  assert.equal(judgeLockOwner({ pid: process.pid }, here).holder, 'alive');
});
