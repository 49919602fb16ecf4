import assert from 'node:assert/strict';
import { readdirSync, readlinkSync } from 'node:fs';
import { after, before } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';

/** How long closed sockets, pipes and files may take to leave /proc/self/fd after a suite. */
const SETTLE_MS = 3_000;

/** Open descriptors of this process: fd number → what it points at (socket, pipe, file path). */
export function openFds(): Map<number, string> {
  const out = new Map<number, string>();
  for (const name of readdirSync('/proc/self/fd')) {
    try {
      out.set(Number(name), readlinkSync(`/proc/self/fd/${name}`));
    } catch {
      // the directory handle readdirSync used is already closed again
    }
  }
  return out;
}

function leaked(baseline: ReadonlyMap<number, string>): string[] {
  const now = openFds();
  return [...now].filter(([fd, target]) => baseline.get(fd) !== target).map(([fd, target]) => `${fd} -> ${target}`);
}

/**
 * Registers file-level hooks that hold a test file to the reliability suite's resource rules
 * (issue 9, item 8): after its last test every descriptor opened during the file is closed again,
 * no promise rejection went unhandled and no deprecation warning was emitted. Call it once at the
 * top of a test file.
 *
 * `warmUp` runs before the baseline is taken, for lazily opened process-wide descriptors that stay
 * open by design (the first child process opens libuv's SIGCHLD pipe, for one).
 */
export function guardResources(warmUp: () => Promise<void> = () => Promise.resolve()): void {
  const rejections: unknown[] = [];
  const deprecations: string[] = [];
  const onRejection = (reason: unknown): void => {
    rejections.push(reason);
  };
  const onWarning = (warning: Error): void => {
    if (warning.name === 'DeprecationWarning') deprecations.push(warning.message);
  };
  let baseline = new Map<number, string>();
  before(async () => {
    await warmUp();
    baseline = openFds();
    process.on('unhandledRejection', onRejection);
    process.on('warning', onWarning);
  });
  after(async () => {
    let left = leaked(baseline);
    for (const deadline = Date.now() + SETTLE_MS; left.length > 0 && Date.now() < deadline; left = leaked(baseline)) await delay(50);
    process.off('unhandledRejection', onRejection);
    process.off('warning', onWarning);
    assert.deepEqual(left, [], `descriptors opened by this file and never closed (baseline ${baseline.size})`);
    assert.deepEqual(rejections, [], 'unhandled promise rejections');
    assert.deepEqual(deprecations, [], 'deprecation warnings');
  });
}
