import { StatefsError } from '../errors.js';
import { KEY_ROOT, fromBinary } from './names.js';

/** What the tree rules need to know about one subject's keys (binary strings). */
export interface KeyView {
  has(bin: string): boolean;
  hasChildren(bin: string): boolean;
  /**
   * A cheap, one-sided `hasChildren`: true only if `bin` certainly has children. Views that can
   * answer it without a search (the store's directory counts) offer it; the rules then skip the
   * walk over a new key's ancestors when its parent is already a directory.
   */
  isKnownDirectory?(bin: string): boolean;
}

/**
 * Tree rules (spec section 2) for writing `bin`: no ancestor may hold a value (`ENOTDIR`) and the
 * key may not have children (`EISDIR`).
 */
export function checkPutAllowed(view: KeyView, bin: string, subject: string, key: string, op: string): void {
  // A parent with children is a directory, and in keys that keep these rules no directory or
  // ancestor of one holds a value: nothing above `bin` needs looking at.
  const lastSlash = bin.lastIndexOf('/');
  if (lastSlash < KEY_ROOT.length || view.isKnownDirectory?.(bin.slice(0, lastSlash)) !== true) {
    for (let slash = bin.indexOf('/', KEY_ROOT.length); slash !== -1; slash = bin.indexOf('/', slash + 1)) {
      const parent = bin.slice(0, slash);
      if (view.has(parent)) throw StatefsError.ENOTDIR(key, fromBinary(parent), { op, subject });
    }
  }
  if (view.hasChildren(bin)) throw StatefsError.EISDIR(key, { op, subject });
}

/** A delete needs a value to remove (`ENOENT`); a key with only children is `EISDIR`. */
export function checkDeleteAllowed(view: KeyView, bin: string, subject: string, key: string, op: string): void {
  if (view.has(bin)) return;
  if (view.hasChildren(bin)) throw StatefsError.EISDIR(key, { op, subject });
  throw StatefsError.ENOENT(`key ${key}`, { op, subject, key });
}
