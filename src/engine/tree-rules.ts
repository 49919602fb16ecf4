import { StatefsError } from '../errors.js';
import { KEY_ROOT, fromBinary, indexKey } from './names.js';

/** What the tree rules need to know about a set of keys. */
export interface KeyView {
  has(ik: string): boolean;
  hasChildren(ik: string): boolean;
}

/**
 * Tree rules (spec section 2) for writing `ik`: no ancestor may hold a value (`ENOTDIR`) and the
 * key may not have children (`EISDIR`).
 */
export function checkPutAllowed(view: KeyView, ik: string, subject: string, key: string, op: string): void {
  const base = indexKey(subject, '');
  for (let slash = ik.indexOf('/', base.length + KEY_ROOT.length); slash !== -1; slash = ik.indexOf('/', slash + 1)) {
    const parent = ik.slice(0, slash);
    if (view.has(parent)) throw StatefsError.ENOTDIR(key, fromBinary(parent.slice(base.length)), { op, subject });
  }
  if (view.hasChildren(ik)) throw StatefsError.EISDIR(key, { op, subject });
}

/** A delete needs a value to remove (`ENOENT`); a key with only children is `EISDIR`. */
export function checkDeleteAllowed(view: KeyView, ik: string, subject: string, key: string, op: string): void {
  if (view.has(ik)) return;
  if (view.hasChildren(ik)) throw StatefsError.EISDIR(key, { op, subject });
  throw StatefsError.ENOENT(`key ${key}`, { op, subject, key });
}
