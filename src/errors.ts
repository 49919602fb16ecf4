/**
 * The error contract (spec section 7). Every failure that crosses the public API or the wire is a
 * `StatefsError` with a stable string `code`, a stable wire number `errno`, the operation, and the
 * subject / key / name involved. Errors are made only through the factories at the bottom of this
 * file, so call sites read `throw StatefsError.EROFS(...)`. The table is mirrored in
 * `docs/storage/errors.md`; a test checks the two agree.
 */

/** Wire numbers. Never renumbered; new codes are appended. */
export const ERROR_CODES = {
  ENOENT: 1,
  EPERM: 2,
  EROFS: 3,
  ENOTDIR: 4,
  EISDIR: 5,
  EEXIST: 6,
  ENOSPC: 7,
  EFBIG: 8,
  EINTEGRITY: 9,
  EBUSY: 10,
  EINVAL: 11,
  ENOTSUP: 12,
  EIO: 13,
  ENAMETOOLONG: 14,
  EXDEV: 15,
  EAGAIN: 16,
  EDQUOTA: 17,
  EBADF: 18,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** Where an error happened; every field is optional because not every operation has each. */
export interface ErrorContext {
  op?: string;
  subject?: string;
  key?: string;
  name?: string;
  /** Byte offset in the image, for integrity and framing errors. */
  offset?: number;
  cause?: unknown;
}

export class StatefsError extends Error {
  override readonly name = 'StatefsError';
  readonly code: ErrorCode;
  readonly errno: number;
  readonly op: string | undefined;
  readonly subject: string | undefined;
  readonly key: string | undefined;
  readonly target: string | undefined;
  readonly offset: number | undefined;

  constructor(code: ErrorCode, message: string, ctx: ErrorContext = {}) {
    super(`${code}: ${message}`, ctx.cause === undefined ? undefined : { cause: ctx.cause });
    this.code = code;
    this.errno = ERROR_CODES[code];
    this.op = ctx.op;
    this.subject = ctx.subject;
    this.key = ctx.key;
    this.target = ctx.name;
    this.offset = ctx.offset;
  }

  static ENOENT(what: string, ctx?: ErrorContext): StatefsError {
    return new StatefsError('ENOENT', `${what} does not exist`, ctx);
  }
  static EPERM(what: string, ctx?: ErrorContext): StatefsError {
    return new StatefsError('EPERM', `denied: ${what}`, ctx);
  }
  static EROFS(what: string, ctx?: ErrorContext): StatefsError {
    return new StatefsError('EROFS', `read-only: ${what}`, ctx);
  }
  static ENOTDIR(key: string, parent: string, ctx?: ErrorContext): StatefsError {
    return new StatefsError('ENOTDIR', `${parent} holds a value, so ${key} cannot be under it`, { key, ...ctx });
  }
  static EISDIR(key: string, ctx?: ErrorContext): StatefsError {
    return new StatefsError('EISDIR', `${key} has children`, { key, ...ctx });
  }
  static EEXIST(what: string, ctx?: ErrorContext): StatefsError {
    return new StatefsError('EEXIST', `${what} already exists`, ctx);
  }
  static ENOSPC(what: string, ctx?: ErrorContext): StatefsError {
    return new StatefsError('ENOSPC', `no space: ${what}`, ctx);
  }
  static EFBIG(what: string, ctx?: ErrorContext): StatefsError {
    return new StatefsError('EFBIG', `too big: ${what}`, ctx);
  }
  static EINTEGRITY(what: string, ctx?: ErrorContext): StatefsError {
    const at = ctx?.offset === undefined ? '' : ` at byte offset ${ctx.offset}`;
    return new StatefsError('EINTEGRITY', `${what}${at}`, ctx);
  }
  static EBUSY(what: string, ctx?: ErrorContext): StatefsError {
    return new StatefsError('EBUSY', `busy: ${what}`, ctx);
  }
  static EINVAL(what: string, ctx?: ErrorContext): StatefsError {
    return new StatefsError('EINVAL', `invalid: ${what}`, ctx);
  }
  static ENOTSUP(what: string, ctx?: ErrorContext): StatefsError {
    return new StatefsError('ENOTSUP', `not supported: ${what}`, ctx);
  }
  static EIO(what: string, ctx?: ErrorContext): StatefsError {
    return new StatefsError('EIO', `I/O error: ${what}`, ctx);
  }
  static ENAMETOOLONG(what: string, ctx?: ErrorContext): StatefsError {
    return new StatefsError('ENAMETOOLONG', `too long: ${what}`, ctx);
  }
  static EXDEV(what: string, ctx?: ErrorContext): StatefsError {
    return new StatefsError('EXDEV', `cross-subject: ${what}`, ctx);
  }
  static EAGAIN(what: string, ctx?: ErrorContext): StatefsError {
    return new StatefsError('EAGAIN', `limit reached: ${what}`, ctx);
  }
  static EDQUOTA(what: string, ctx?: ErrorContext): StatefsError {
    return new StatefsError('EDQUOTA', `over quota: ${what}`, ctx);
  }
  static EBADF(what: string, ctx?: ErrorContext): StatefsError {
    return new StatefsError('EBADF', `${what} is closed or finished`, ctx);
  }
}

export function isStatefsError(err: unknown): err is StatefsError {
  return err instanceof StatefsError;
}
