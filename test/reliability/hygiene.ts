import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { after, before } from 'node:test';

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/**
 * Resource hygiene for a reliability test file: after its tests, the process holds as many open
 * file descriptors as before them, and no promise rejection went unhandled and no deprecation
 * warning was emitted meanwhile. Call once at the top level of the file.
 */
export function checkHygiene(): void {
  const rejections: unknown[] = [];
  const deprecations: string[] = [];
  const onRejection = (reason: unknown): void => {
    rejections.push(reason);
  };
  const onWarning = (w: Error): void => {
    if (w.name === 'DeprecationWarning') deprecations.push(w.message);
  };
  let baseline = 0;
  before(() => {
    baseline = openFds();
    process.on('unhandledRejection', onRejection);
    process.on('warning', onWarning);
  });
  after(() => {
    process.off('unhandledRejection', onRejection);
    process.off('warning', onWarning);
    assert.equal(openFds(), baseline, 'open file descriptors are back to the baseline');
    assert.deepEqual(rejections, [], 'no unhandled rejections');
    assert.deepEqual(deprecations, [], 'no deprecation warnings');
  });
}
