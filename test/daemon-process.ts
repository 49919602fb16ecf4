import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/*
 * The built statefsd and statefs as child processes, for end-to-end tests. Every spawn is
 * asynchronous: a test may also run a daemon or a store in its own process.
 */

export const STATEFSD = fileURLToPath(new URL('../src/cli/statefsd.js', import.meta.url));
export const STATEFS = fileURLToPath(new URL('../src/cli/statefs.js', import.meta.url));

const START_MS = 20_000;
const STOP_MS = 20_000;

export interface DaemonProcess {
  readonly pid: number;
  readonly child: ChildProcess;
  /** Everything the daemon wrote to stderr so far (its JSON log lines). */
  stderr(): string;
  /** SIGTERM, then the exit status (`null` when a signal ended it). */
  stop(): Promise<number | null>;
}

/**
 * Start `statefsd <args>` and wait until it logs that it listens. `prefix` runs it through
 * another command first, e.g. `['sh', '-c', 'ulimit -f 2048 && exec "$0" "$@"']`.
 */
export async function startStatefsd(args: readonly string[], prefix: readonly string[] = []): Promise<DaemonProcess> {
  const [command, ...rest] = [...prefix, process.execPath, STATEFSD, ...args];
  if (command === undefined) throw new Error('no command');
  const child = spawn(command, rest, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      resolve(code);
    });
  });
  const deadline = Date.now() + START_MS;
  while (!stderr.includes('"msg":"listening on')) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`statefsd exited before listening: ${stderr}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`statefsd did not listen within ${START_MS} ms: ${stderr}`);
    }
    await sleep(20);
  }
  const pid = child.pid;
  if (pid === undefined) throw new Error('statefsd has no pid');
  return {
    pid,
    child,
    stderr: () => stderr,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_MS);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

export interface CliRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** `statefs <args>` (STATEFS_TOKEN removed from the environment, then `extraEnv` added); `prefix` as for startStatefsd. */
export async function runStatefs(args: readonly string[], prefix: readonly string[] = [], extraEnv: Record<string, string> = {}): Promise<CliRun> {
  const env = { ...process.env };
  delete env.STATEFS_TOKEN;
  Object.assign(env, extraEnv);
  const [command, ...rest] = [...prefix, process.execPath, STATEFS, ...args];
  if (command === undefined) throw new Error('no command');
  const child = spawn(command, rest, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
  const status = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  return { status, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
}

/** A process that is gone: no such pid, or a zombie (it exited; no one has reaped it yet). */
export function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false; // no /proc here, or it exited just now: the caller asks again
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => {
    setTimeout(resolve, ms);
  });
}
