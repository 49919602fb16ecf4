import { StatefsError } from '../errors.js';

/**
 * Named failpoints for the reliability suite (docs/reliability.md). Armed only by the environment
 * variable `STATEFS_FAILPOINTS`, read once when this module loads:
 *
 *     STATEFS_FAILPOINTS=name[:action][@hit][,name[:action][@hit]...]
 *
 * `action` is `crash` (the default: the process sends itself SIGKILL, like `kill -9`, with no
 * cleanup) or `error` (the code at the point throws `EIO`); `hit` is which hit fires (1-based,
 * default 1). When the variable is unset a failpoint costs one comparison.
 */
export const FAILPOINT_NAMES = [
  /** Journal bytes written to the device, not yet flushed. */
  'journal.before-flush',
  /** A write round is durable, its writers not yet acknowledged. */
  'journal.before-ack',
  /** A transaction's PREPARE and PAYLOADs are durable, its COMMIT not yet appended. */
  'txn.before-commit',
  /** A SNAPSHOT record is durable, its marker and digest not yet written. */
  'snapshot.create',
  /** GC relocated one segment's values (durable) and is about to go on. */
  'gc.relocate',
  /** A checkpoint is durable, the superblock that points at it not yet written. */
  'superblock.switch',
] as const;

export type FailpointName = (typeof FAILPOINT_NAMES)[number];

export type FailpointAction = 'crash' | 'error';

interface Armed {
  action: FailpointAction;
  hit: number;
  seen: number;
}

/** Parse the variable's value; `EINVAL` for an unknown name, action or hit number. */
export function parseFailpoints(spec: string): Map<FailpointName, Armed> {
  const out = new Map<FailpointName, Armed>();
  for (const item of spec.split(',').map((s) => s.trim()).filter((s) => s.length > 0)) {
    const m = /^([a-z.-]+)(?::(crash|error))?(?:@(\d+))?$/.exec(item);
    const name = FAILPOINT_NAMES.find((n) => n === m?.[1]);
    const hit = Number(m?.[3] ?? '1');
    if (m === null || name === undefined || hit < 1) {
      throw StatefsError.EINVAL(`STATEFS_FAILPOINTS: bad failpoint ${JSON.stringify(item)} (names: ${FAILPOINT_NAMES.join(', ')})`, { op: 'failpoints' });
    }
    out.set(name, { action: m[2] === 'error' ? 'error' : 'crash', hit, seen: 0 });
  }
  return out;
}

const env = process.env.STATEFS_FAILPOINTS;
const armed: Map<FailpointName, Armed> | undefined = env === undefined || env === '' ? undefined : parseFailpoints(env);

/** Whether `name` is armed (lets a caller take a failpoint-only path, e.g. split a transaction). */
export function failpointArmed(name: FailpointName): boolean {
  return armed?.has(name) === true;
}

/** Mark the point `name`: crash or throw here if it is armed and this is the chosen hit. */
export function failpoint(name: FailpointName): void {
  const point = armed?.get(name);
  if (point === undefined) return;
  point.seen++;
  if (point.seen !== point.hit) return;
  if (point.action === 'error') throw StatefsError.EIO(`failpoint ${name} hit`, { op: 'failpoint' });
  process.stderr.write(`statefs: failpoint ${name} crash\n`);
  process.kill(process.pid, 'SIGKILL');
}
