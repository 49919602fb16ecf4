import { StatefsError } from '../errors.js';

/** The `code` of a Node system error (`ENOENT`, `EEXIST`, ...), if it has one. */
export function errnoOf(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') return err.code;
  return undefined;
}

/** A failed file operation as the error contract's `ENOSPC` (a full device) or `EIO` (anything else). */
export function ioError(op: string, err: unknown, offset?: number): StatefsError {
  const code = errnoOf(err);
  const message = err instanceof Error ? err.message : String(err);
  const ctx = { op, cause: err, ...(offset === undefined ? {} : { offset }) };
  return code === 'ENOSPC' ? StatefsError.ENOSPC(`device: ${message}`, ctx) : StatefsError.EIO(message, ctx);
}
