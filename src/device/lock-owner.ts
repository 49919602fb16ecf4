import { createHash } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';

/**
 * Who holds `<image>.lock`, and whether that holder is gone. A pid alone names a process only
 * within one PID namespace of one running kernel: a process in another container, on another
 * host sharing the directory, or from before a restart has a pid that means nothing here. So the
 * lock also names the host, the machine, the kernel's boot, the PID namespace and the process's
 * start time, and a lock is judged stale only when this process can tell that its holder is gone.
 */
export interface LockOwner {
  pid: number;
  host?: string;
  /**
   * `/etc/machine-id`, hashed with this program's name (systemd asks that the id itself not be
   * shown): the same across restarts of one machine, where the system keeps one.
   */
  machine?: string;
  /** `/proc/sys/kernel/random/boot_id`: one per running kernel, new at every restart. */
  boot?: string;
  /** `/proc/self/ns/pid` (e.g. `pid:[4026531836]`): pids are compared only within one. */
  pidNamespace?: string;
  /** Field 22 of `/proc/<pid>/stat`, in clock ticks since boot: tells a reused pid apart. */
  start?: string;
  /**
   * A Unix socket the holder listens on while it holds the lock: its file name in the lock's
   * directory, then `<device>:<inode>`. A process of the same kernel in another PID namespace,
   * which cannot check the pid, connects to it (image-lock.ts).
   */
  socket?: string;
}

/** `unknown`: `socket` is the holder's socket when it runs under this kernel, so connecting to it tells. */
export type LockVerdict = { holder: 'alive'; where?: string } | { holder: 'gone' } | { holder: 'unknown'; where: string; socket?: string };

/** The lines after the pid: each field of `LockOwner` and its name in the file. */
const FIELDS: readonly (readonly [Exclude<keyof LockOwner, 'pid'>, string])[] = [
  ['host', 'host'],
  ['machine', 'machine'],
  ['boot', 'boot'],
  ['pidNamespace', 'pidns'],
  ['start', 'start'],
  ['socket', 'socket'],
];

/** The text of a lock file: the pid on the first line (all earlier versions wrote only that), then `name value` lines. */
export function formatLock(owner: LockOwner): string {
  const lines = [String(owner.pid)];
  for (const [field, name] of FIELDS) {
    const value = owner[field];
    if (value !== undefined) lines.push(`${name} ${value}`);
  }
  return `${lines.join('\n')}\n`;
}

/** The holder a lock file names; undefined when its first line is not a pid (a lock still being written). */
export function parseLock(text: string): LockOwner | undefined {
  const [first = '', ...rest] = text.split('\n');
  const pid = Number(first.trim());
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  const owner: LockOwner = { pid };
  for (const line of rest) {
    const space = line.indexOf(' ');
    const name = line.slice(0, space);
    const value = line.slice(space + 1).trim();
    if (space <= 0 || value === '') continue;
    const field = FIELDS.find(([, known]) => known === name)?.[0];
    if (field !== undefined) owner[field] = value;
  }
  return owner;
}

let self: LockOwner | undefined;

/** This process, as its locks name it (read once: none of it changes while the process runs). */
export function thisProcess(): LockOwner {
  if (self !== undefined) return self;
  const owner: LockOwner = { pid: process.pid, host: hostname() };
  const machine = readText('/etc/machine-id');
  if (machine !== undefined) owner.machine = createHash('sha256').update(`statefs lock ${machine}`).digest('hex').slice(0, 32);
  const boot = readText('/proc/sys/kernel/random/boot_id');
  if (boot !== undefined) owner.boot = boot;
  const pidNamespace = readLink('/proc/self/ns/pid');
  if (pidNamespace !== undefined) owner.pidNamespace = pidNamespace;
  // Start times only from a /proc of this process's own PID namespace: in one mounted for
  // another (`unshare --pid` without a new /proc), /proc/<pid> is another process than the pid
  // `process.kill` reaches. Without a start time here, none is compared.
  const start = startTime('self');
  if (start !== undefined && procIsOwnNamespace()) owner.start = start;
  self = owner;
  return owner;
}

/**
 * Whether the holder a lock names is alive, gone (the lock is stale), or beyond what this
 * process can check (another machine, another PID namespace of this one, or a kernel it cannot
 * tell from its own): such a lock is treated as held, and only a person who knows that its
 * holder is gone may remove it.
 */
export function judgeLockOwner(owner: LockOwner, here: LockOwner = thisProcess()): LockVerdict {
  if (owner.boot === undefined || owner.boot !== here.boot) {
    if (owner.boot !== undefined && here.boot !== undefined) {
      // Written under another running kernel: this machine before a restart (no process of that
      // boot runs), or another machine. Host names repeat (cloned machines, containers given a
      // fixed one) and boot ids differ between machines, so only the same machine id and host
      // name say it is this machine.
      if (owner.machine !== undefined && owner.machine === here.machine && owner.host === here.host) return { holder: 'gone' };
      return { holder: 'unknown', where: `on host ${owner.host ?? '(unnamed)'} under another running kernel (another machine, or this one before a restart)` };
    }
    // A boot id in the lock that this process cannot compare (it reads none): another machine
    // of the same name would look like this one.
    if (owner.boot !== undefined) return { holder: 'unknown', where: `on host ${owner.host ?? '(unnamed)'} (this process reads no boot id to compare)` };
    // A lock without a boot id (an earlier version's, a system without /proc): by the host name,
    // then the pid.
    if (owner.host !== undefined && owner.host !== here.host) return { holder: 'unknown', where: `on host ${owner.host}` };
  } else if (owner.pidNamespace === undefined || owner.pidNamespace !== here.pidNamespace) {
    // The same running kernel: pids compare only within one PID namespace.
    const where = `in another PID namespace of this host (${owner.pidNamespace ?? 'not named'}, a container)`;
    return owner.socket === undefined ? { holder: 'unknown', where } : { holder: 'unknown', where, socket: owner.socket };
  }
  if (!isAlive(owner.pid)) return { holder: 'gone' };
  // Alive, but perhaps another process given the same pid since the holder died.
  if (owner.start !== undefined && here.start !== undefined) {
    const start = startTime(String(owner.pid));
    if (start !== undefined && start !== owner.start) return { holder: 'gone' };
  }
  return { holder: 'alive' };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return typeof err === 'object' && err !== null && 'code' in err && err.code === 'EPERM';
  }
}

/** Field 22 of `/proc/<pid>/stat`; the fields are counted after the command name, which may hold spaces and parentheses. */
function startTime(pid: string): string | undefined {
  const stat = readText(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const start = fields[19]; // fields[0] is field 3, the state
  return start !== undefined && /^\d+$/.test(start) ? start : undefined;
}

/**
 * Whether the mounted /proc is of this process's PID namespace: `NSpid` in its status lists the
 * process's pid in each namespace from the one /proc was mounted for down to its own, so it is
 * one pid, this process's own, exactly then.
 */
function procIsOwnNamespace(): boolean {
  const nsPid = /^NSpid:\s*(.*)$/m.exec(readText('/proc/self/status') ?? '')?.[1]?.trim().split(/\s+/);
  return nsPid?.length === 1 && Number(nsPid[0]) === process.pid;
}

function readText(path: string): string | undefined {
  try {
    const text = readFileSync(path, 'utf8').trim();
    return text === '' ? undefined : text;
  } catch {
    return undefined;
  }
}

function readLink(path: string): string | undefined {
  try {
    return readlinkSync(path);
  } catch {
    return undefined;
  }
}
