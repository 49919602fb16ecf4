import { StatefsError } from '../../errors.js';

/**
 * Operation codes: the op byte of a frame is the index in this list plus one. Append only; never
 * reorder or renumber (docs/storage/protocol.md has the table). Op byte 0 is reserved for
 * connection-level error responses that answer no particular request.
 */
export const OP_NAMES = [
  'HELLO', // 1
  'PUT', // 2
  'GET', // 3
  'DELETE', // 4
  'LIST', // 5
  'SYNC', // 6
  'TXN', // 7
  'SNAPSHOT', // 8
  'LIST_SNAPS', // 9
  'DELETE_SNAP', // 10
  'RESTORE_SNAP', // 11
  'DIFF_SNAPS', // 12
  'VERIFY_SNAP', // 13
  'MOUNT', // 14
  'UMOUNT', // 15
  'LIST_MOUNTS', // 16
  'GC_NOW', // 17
  'GC_PLAN', // 18
  'STAT', // 19
  'REOPEN', // 20
  'TXN_BEGIN', // 21
  'TXN_PUT', // 22
  'TXN_DELETE', // 23
  'TXN_GET', // 24
  'TXN_COMMIT', // 25
  'TXN_ABORT', // 26
  'PUT_MANY', // 27
] as const;

export type OpName = (typeof OP_NAMES)[number];

export const NO_OP = 0;

export function opByte(name: OpName): number {
  return OP_NAMES.indexOf(name) + 1;
}

/** The op of a byte; an unknown op is ENOTSUP. */
export function opName(byte: number): OpName {
  const name = OP_NAMES[byte - 1];
  if (byte < 1 || name === undefined) throw StatefsError.ENOTSUP(`op ${byte}`, { op: 'decode' });
  return name;
}
