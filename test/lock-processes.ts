import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { parseLock, type LockOwner } from '../src/device/lock-owner.js';

/** The pid of a process that has exited (reused only after the kernel wraps around). */
export const deadPid = (): number => Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);

/** A live process other than this one, and the lock text it would write (it computes it itself). */
export async function withOtherProcess(fn: (owner: LockOwner) => Promise<void>): Promise<void> {
  const lockOwnerJs = fileURLToPath(new URL('../src/device/lock-owner.js', import.meta.url));
  const script = `import { formatLock, thisProcess } from ${JSON.stringify(lockOwnerJs)}; process.stdout.write(formatLock(thisProcess())); setTimeout(() => {}, 60_000);`;
  const other = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const [chunk] = (await once(other.stdout, 'data')) as [Buffer];
    const owner = parseLock(chunk.toString('utf8'));
    assert.ok(owner !== undefined && owner.pid === other.pid, chunk.toString('utf8'));
    await fn(owner);
  } finally {
    other.kill('SIGKILL');
    await once(other, 'exit');
  }
}
