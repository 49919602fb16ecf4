import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

// A full GC on demand, so heap figures compare live data rather than garbage not yet collected.
setFlagsFromString('--expose-gc');
const gc: unknown = runInNewContext('gc');

function isGc(x: unknown): x is () => void {
  return typeof x === 'function';
}

/** heapUsed after a full garbage collection. */
export function heapAfterGc(): number {
  if (!isGc(gc)) throw new Error('could not expose gc');
  gc();
  return process.memoryUsage().heapUsed;
}
