import type { Request } from '../protocol/messages.js';
import type { OpName } from '../protocol/ops.js';
import type { Right } from '../policy/policy.js';

/** The right each op needs (HELLO needs none: it is authentication itself). */
const OP_RIGHTS: Readonly<Record<Exclude<OpName, 'HELLO'>, Right>> = {
  GET: 'read',
  LIST: 'read',
  LIST_SNAPS: 'read',
  DIFF_SNAPS: 'read',
  VERIFY_SNAP: 'read',
  LIST_MOUNTS: 'read',
  STAT: 'read',
  PUT: 'write',
  DELETE: 'write',
  TXN: 'write',
  SYNC: 'write',
  SNAPSHOT: 'snapshot',
  DELETE_SNAP: 'snapshot',
  RESTORE_SNAP: 'snapshot',
  MOUNT: 'mount',
  UMOUNT: 'mount',
  GC_NOW: 'gc',
  GC_PLAN: 'gc',
  REOPEN: 'admin',
  TXN_BEGIN: 'write',
  TXN_PUT: 'write',
  TXN_DELETE: 'write',
  TXN_GET: 'read',
  TXN_COMMIT: 'write',
  TXN_ABORT: 'write',
  PUT_MANY: 'write',
};

/** What a request needs: a right, and the subjects it targets (each checked with `allows`). */
export interface Need {
  right: Right;
  targets: string[];
}

export function needOf(req: Exclude<Request, { op: 'HELLO' }>): Need {
  const right = OP_RIGHTS[req.op];
  switch (req.op) {
    case 'MOUNT':
      return { right, targets: [req.caller, req.owner] };
    case 'UMOUNT':
    case 'LIST_MOUNTS':
      return { right, targets: [req.caller] };
    case 'SYNC':
    case 'STAT':
    case 'GC_NOW':
    case 'GC_PLAN':
    case 'REOPEN':
      return { right, targets: [] };
    default:
      return { right, targets: [req.subject] };
  }
}

/** The audit target of a request: its subject (or owner / path), if any. */
export function targetOf(req: Exclude<Request, { op: 'HELLO' }>): string | undefined {
  switch (req.op) {
    case 'MOUNT':
      return `${req.owner}/${req.name}@${req.path}`;
    case 'UMOUNT':
      return `${req.caller}@${req.path}`;
    case 'LIST_MOUNTS':
      return req.caller;
    case 'SNAPSHOT':
    case 'DELETE_SNAP':
    case 'RESTORE_SNAP':
    case 'VERIFY_SNAP':
      return `${req.subject}/${req.name}`;
    case 'SYNC':
    case 'STAT':
    case 'GC_NOW':
    case 'GC_PLAN':
    case 'REOPEN':
      return undefined;
    default:
      return req.subject;
  }
}
