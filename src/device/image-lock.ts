import { createHash, randomBytes } from 'node:crypto';
import { link, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { StatefsError } from '../errors.js';
import { errnoOf, ioError } from './io-error.js';
import { formatLock, judgeLockOwner, parseLock, thisProcess, type LockOwner } from './lock-owner.js';

// One process owns an image: `<image>.lock` names it (lock-owner.ts). A lock whose owner is gone
// is stale and taken over. Openers that judged the same stale lock take turns through takeover
// files named after that lock (`takeOverStaleLock`), so only one removes it, and none removes a
// lock taken since (statefs-v3.md 5.3).

/** A lock file held by a process that writes no pid into it within this long was left by a crash between the two (earlier versions create, then write). */
const LOCK_WRITE_GRACE_MS = 5_000;

/** How long an opener waits for another opener's takeover of a stale lock before `EBUSY`. */
const TAKEOVER_WAIT_MS = 2_000;
const TAKEOVER_POLL_MS = 10;
/** Takeover files of one stale lock tried before giving up (each one more means its holder died). */
const TAKEOVER_TURNS = 64;

const UNWRITABLE = new Set(['EACCES', 'EROFS', 'EPERM']);

/**
 * Take `<image>.lock` for the caller (as a writable open does) and return whether it is held and
 * its release: fsck holds it for a whole check, so no owner can start and move the log under it.
 * `EBUSY` names a live holder. `held` is false only for an image in a directory this process may
 * not write: it is checked without the lock, and must not be written (a repair takes the lock itself).
 */
export async function lockImage(imagePath: string, op: string, advice: string): Promise<{ held: boolean; release: () => Promise<void> }> {
  const lockPath = `${imagePath}.lock`;
  // An image in a directory this process cannot write (a read-only mount of a backup) cannot be
  // locked: it is checked without the lock, refused only while a live owner holds one.
  if (!(await acquireLock(lockPath, imagePath, op, advice, true))) return { held: false, release: () => Promise.resolve() };
  return { held: true, release: () => releaseLock(lockPath) };
}

/** Remove a lock file (the image's or the takeover's) if it is still this process's: one another process holds by now is left to it. */
export async function releaseLock(lockPath: string): Promise<void> {
  const seen = await readLock(lockPath);
  if (seen?.text === formatLock(thisProcess())) await unlink(lockPath).catch(() => undefined);
}

/** Returns false, with `unwritableOk`, when the lock file cannot be created in a directory it may not write. */
export async function acquireLock(lockPath: string, imagePath: string, op: string, advice = '', unwritableOk = false): Promise<boolean> {
  const deadline = performance.now() + TAKEOVER_WAIT_MS;
  for (let tries = 0; tries < TAKEOVER_TURNS; ) {
    let unwritable = false;
    try {
      if (await createOwned(lockPath)) return true;
    } catch (err) {
      if (err instanceof StatefsError) throw err;
      const errno = errnoOf(err);
      // The lock goes beside the image: ENOENT means the image's directory is missing (for fsck too).
      if (errno === 'ENOENT') throw StatefsError.ENOENT(`directory ${dirname(imagePath)} of image ${imagePath}`, { op, cause: err });
      // fsck: a path through a file, no image (the same answer as for a missing image).
      if (unwritableOk && errno === 'ENOTDIR') throw StatefsError.ENOENT(`image ${imagePath}`, { op });
      unwritable = unwritableOk && errno !== undefined && UNWRITABLE.has(errno);
      if (!unwritable) throw ioError('lock', err);
    }
    const seen = await readLock(lockPath);
    if (seen === undefined) {
      if (unwritable) return false; // no lock, and none can be taken: checked without one
      tries++;
      continue; // released meanwhile: try again
    }
    if (seen.owner !== undefined) {
      const verdict = judgeLockOwner(seen.owner);
      if (verdict.holder === 'alive') throw StatefsError.EBUSY(`image ${basename(imagePath)} is locked by process ${seen.owner.pid}${advice}`, { op });
      if (verdict.holder === 'unknown') {
        throw StatefsError.EBUSY(
          `image ${basename(imagePath)} is locked by process ${seen.owner.pid} ${verdict.where}, which this process cannot check: ` +
            `remove ${lockPath} only if no process there has the image open${advice}`,
          { op },
        );
      }
    }
    // No pid yet in a lock just created: its creator (an earlier version) is between the create and the write.
    if (seen.text === undefined || !stale(seen)) break;
    if (unwritable) return false;
    // Stale: the owner died without unlocking (kill -9), or the host restarted since. Take it over.
    const taken = await takeOverStaleLock(lockPath, seen);
    if (taken === 'unwritable') {
      if (unwritableOk) return false;
      throw StatefsError.EBUSY(`image ${basename(imagePath)} has a stale lock that this process may not remove: remove ${lockPath}${advice}`, { op });
    }
    if (typeof taken === 'object') {
      // Another opener is taking the same stale lock over: wait for it (it takes milliseconds).
      if (performance.now() >= deadline) {
        throw StatefsError.EBUSY(`image ${basename(imagePath)} is being locked by another process (if none is, remove ${taken.busy})${advice}`, { op });
      }
      await sleep(TAKEOVER_POLL_MS);
    } else {
      tries++;
    }
  }
  throw StatefsError.EBUSY(`image ${basename(imagePath)} is being locked by another process${advice}`, { op });
}

export interface SeenLock {
  /** The file's text; undefined when it cannot be read (another user's lock). */
  text: string | undefined;
  owner: LockOwner | undefined;
  ageMs: number;
  /** Which file this is: its inode, modification time and text, hashed. */
  identity: string;
}

/** The lock file as it is now (undefined: there is none). */
export async function readLock(lockPath: string): Promise<SeenLock | undefined> {
  let text: string | undefined;
  try {
    text = await readFile(lockPath, 'utf8');
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
  }
  const st = await stat(lockPath).catch(() => undefined);
  if (st === undefined && text === undefined) return undefined;
  const identity = createHash('sha256').update(`${String(st?.ino)} ${String(st?.mtimeMs)} ${text ?? ''}`).digest('hex').slice(0, 16);
  return { text, owner: text === undefined ? undefined : parseLock(text), ageMs: st === undefined ? 0 : Date.now() - st.mtimeMs, identity };
}

/** A lock file whose owner is gone, or that has named none for longer than its creator needs to write one. */
function stale(seen: SeenLock): boolean {
  if (seen.owner !== undefined) return judgeLockOwner(seen.owner).holder === 'gone';
  return seen.text !== undefined && seen.ageMs >= LOCK_WRITE_GRACE_MS;
}

/** Where a file may be linked in place: a failure other than these means the file system has no hard links. */
const LINK_ANSWERS = new Set(['EEXIST', 'ENOENT', 'EACCES', 'EROFS', 'ENOSPC', 'EDQUOT', 'EIO']);

/**
 * Create `path` exclusively holding this process's owner, false if it exists. The text is written
 * to a file of its own first and linked in place, so the file is never seen empty (on a file
 * system without hard links it is created and then written). Other errors are thrown as they came.
 */
async function createOwned(path: string): Promise<boolean> {
  const text = formatLock(thisProcess());
  const draft = `${path}.new-${String(process.pid)}-${randomBytes(4).toString('hex')}`;
  const fh = await open(draft, 'wx', 0o600);
  try {
    try {
      await fh.writeFile(text);
    } finally {
      await fh.close();
    }
    try {
      await link(draft, path);
      return true;
    } catch (err) {
      const errno = errnoOf(err);
      if (errno === 'EEXIST') return false;
      if (errno !== undefined && LINK_ANSWERS.has(errno)) throw err;
    }
  } finally {
    await unlink(draft).catch(() => undefined);
  }
  return createThenWrite(path, text);
}

async function createThenWrite(path: string, text: string): Promise<boolean> {
  let fh;
  try {
    fh = await open(path, 'wx', 0o600);
  } catch (err) {
    if (errnoOf(err) === 'EEXIST') return false;
    throw err;
  }
  try {
    await fh.writeFile(text);
    await fh.close();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await unlink(path).catch(() => undefined);
    throw err;
  }
  return true;
}

/**
 * Remove the stale lock `judged`, and only that one. Openers that judged it stale take turns:
 * turn n is the file `<lock>.takeover-<identity>-<n>` (the judged lock's identity), created
 * exclusively with its taker's owner in it. The taker reads the lock again, removes it only if it
 * is still the file judged, and then removes the turns' files. Turn n + 1 is taken only once the
 * taker of turn n is gone, so two takers never act on one lock at once, and no file is removed
 * while a live process may still act on it. `busy`: another opener has the turn now.
 */
export async function takeOverStaleLock(lockPath: string, judged: SeenLock): Promise<'removed' | 'changed' | 'unwritable' | { busy: string }> {
  const judgedText = judged.text;
  if (judgedText === undefined) return 'changed'; // unreadable: never judged stale
  const turnFile = (turn: number): string => `${lockPath}.takeover-${judged.identity}-${String(turn)}`;
  for (let turn = 1; turn <= TAKEOVER_TURNS; turn++) {
    let mine: boolean;
    try {
      mine = await createOwned(turnFile(turn));
    } catch (err) {
      if (err instanceof StatefsError) throw err;
      const errno = errnoOf(err);
      if (errno !== undefined && UNWRITABLE.has(errno)) return 'unwritable';
      throw ioError('lock', err);
    }
    if (mine) {
      try {
        const now = await readLock(lockPath);
        return now?.identity === judged.identity ? await removeIfUnchanged(lockPath, judgedText) : 'changed';
      } finally {
        // The judged lock is gone (or this process may not remove it): no opener needs its turns.
        for (let t = 1; t <= turn; t++) await unlink(turnFile(t)).catch(() => undefined);
      }
    }
    const taker = await readLock(turnFile(turn));
    if (taker === undefined) return 'changed'; // the turns were removed: the judged lock is gone
    if (!stale(taker)) return { busy: turnFile(turn) };
    // Its taker died in its turn: the next one.
  }
  return { busy: turnFile(TAKEOVER_TURNS) };
}

/**
 * Remove the file at `path` if its text is still `judged`. It is moved aside first and its text
 * checked there; a file that is not the one judged is put back (unless a new one has taken the
 * place meanwhile). Under a takeover turn this meets only the judged lock; the check guards
 * against openers of earlier versions, which take no turns.
 */
async function removeIfUnchanged(path: string, judged: string): Promise<'removed' | 'changed' | 'unwritable'> {
  const aside = `${path}.stale-${String(process.pid)}-${randomBytes(4).toString('hex')}`;
  try {
    await rename(path, aside);
  } catch (err) {
    const errno = errnoOf(err);
    return errno !== undefined && UNWRITABLE.has(errno) ? 'unwritable' : 'changed';
  }
  const moved = await readFile(aside, 'utf8').catch(() => undefined);
  if (moved !== judged) {
    await link(aside, path).catch(() => undefined);
    await unlink(aside).catch(() => undefined);
    return 'changed';
  }
  await unlink(aside).catch(() => undefined);
  return 'removed';
}
