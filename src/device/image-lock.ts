import { createHash, randomBytes } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { link, lstat, open, rename, stat, unlink } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { basename, dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { StatefsError } from '../errors.js';
import { errnoOf, ioError } from './io-error.js';
import { formatLock, judgeLockOwner, parseLock, thisProcess, type LockOwner, type LockVerdict } from './lock-owner.js';

// One process owns an image: `<image>.lock` names it (lock-owner.ts), and while it holds the lock
// it listens on a Unix socket the lock names, so a process of the same kernel in another PID
// namespace can tell whether it is alive. A lock whose owner is gone is stale and taken over.
// Openers that judged the same stale lock take turns through files named after that lock
// (`takeOverStaleLock`), so only one removes it, and none removes a lock taken since
// (statefs-v3.md 5.3).

/**
 * A lock file that names no owner within this long was left by a crash between its create and
 * its write (earlier versions create, then write; so does this one where files cannot be linked).
 */
const LOCK_WRITE_GRACE_MS = 5_000;

/** How long an opener waits for another opener's takeover of a stale lock before `EBUSY`. */
const TAKEOVER_WAIT_MS = 2_000;
const TAKEOVER_POLL_MS = 10;
/** Turns of one stale lock tried before giving up (each one more means its taker died in it). */
const TAKEOVER_TURNS = 64;
/** Locks found and gone again (released, taken over) before an opener gives up. */
const LOCK_TRIES = 8;

const UNWRITABLE = new Set(['EACCES', 'EROFS', 'EPERM']);
/** The sticky bit of a directory's mode (`S_ISVTX`, which Node's `fs.constants` leaves out). */
const STICKY = 0o1000;

/** A lock this process holds. */
export interface HeldLock {
  /** Remove the lock if it is still this one (a lock another process holds by now is left to it), then stop answering on its socket. */
  release(): Promise<void>;
}

/**
 * Take `<image>.lock` for the caller (as a writable open does) and return whether it is held and
 * its release: fsck holds it for a whole check, so no owner can start and move the log under it.
 * `EBUSY` names a live holder. `held` is false only for a lock this process may not take (an
 * image in a directory it may not write, or beside a stale lock it may not remove): the image is
 * checked without the lock, and must not be written (a repair takes the lock itself).
 */
export async function lockImage(imagePath: string, op: string, advice: string): Promise<{ held: boolean; release: () => Promise<void> }> {
  // An image in a directory this process cannot write (a read-only mount of a backup) cannot be
  // locked: it is checked without the lock, refused only while a live owner holds one.
  const lock = await acquireLock(`${imagePath}.lock`, imagePath, op, advice, true);
  if (lock === undefined) return { held: false, release: () => Promise.resolve() };
  return { held: true, release: () => lock.release() };
}

/**
 * Undefined only with `unwritableOk`, for a lock this process may not take: the lock file cannot
 * be created in a directory it may not write, or a stale one there cannot be removed.
 */
export async function acquireLock(lockPath: string, imagePath: string, op: string, advice = '', unwritableOk = false): Promise<HeldLock | undefined> {
  const listener = await listenForJudges(lockPath);
  const text = formatLock(listener === undefined ? thisProcess() : { ...thisProcess(), socket: listener.named });
  let held = false;
  try {
    held = await takeLock(lockPath, text, imagePath, op, advice, unwritableOk);
    if (!held) return undefined;
    return {
      release: async () => {
        try {
          const seen = await readLock(lockPath);
          if (seen?.text === text) await unlink(lockPath).catch(() => undefined);
        } finally {
          await listener?.close();
        }
      },
    };
  } finally {
    if (!held) await listener?.close();
  }
}

async function takeLock(lockPath: string, text: string, imagePath: string, op: string, advice: string, unwritableOk: boolean): Promise<boolean> {
  const deadline = performance.now() + TAKEOVER_WAIT_MS;
  for (let tries = 0; tries < LOCK_TRIES; ) {
    let refused: unknown;
    try {
      if (await createOwned(lockPath, text)) return true;
    } catch (err) {
      const errno = errnoOf(err);
      // The lock goes beside the image: ENOENT means the image's directory is missing (for fsck too).
      if (errno === 'ENOENT') throw StatefsError.ENOENT(`directory ${dirname(imagePath)} of image ${imagePath}`, { op, cause: err });
      // fsck: a path through a file, no image (the same answer as for a missing image).
      if (unwritableOk && errno === 'ENOTDIR') throw StatefsError.ENOENT(`image ${imagePath}`, { op });
      if (errno === undefined || !UNWRITABLE.has(errno)) throw lockError(lockPath, err);
      refused = err; // a directory this process may not write: a holder is still named below
    }
    const seen = await readLock(lockPath);
    if (seen === undefined) {
      if (refused !== undefined) {
        if (unwritableOk) return false; // no lock, and none can be taken: checked without one
        throw lockError(lockPath, refused);
      }
      tries++;
      continue; // released meanwhile: try again
    }
    if (seen.owner !== undefined) {
      const verdict = await judge(seen.owner, seen.uid, lockPath);
      if (verdict.holder === 'alive') {
        const where = verdict.where === undefined ? '' : ` ${verdict.where}, which answers on its socket`;
        throw StatefsError.EBUSY(`image ${basename(imagePath)} is locked by process ${seen.owner.pid}${where}${advice}`, { op });
      }
      if (verdict.holder === 'unknown') {
        throw StatefsError.EBUSY(
          `image ${basename(imagePath)} is locked by process ${seen.owner.pid} ${verdict.where}, which this process cannot check: ` +
            `remove ${lockPath} only if no process there has the image open${advice}`,
          { op },
        );
      }
    } else if (seen.text === undefined || seen.ageMs < LOCK_WRITE_GRACE_MS) {
      break; // another user's lock this process cannot read, or one whose creator is between its create and its write
    }
    // Stale: the owner died without unlocking (kill -9), or the host restarted since. Take it over.
    const taken = refused === undefined && (await mayRemove(lockPath, seen.uid)) ? await takeOverStaleLock(lockPath, seen, text) : 'unwritable';
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

/**
 * Whether this process may remove a lock file of user `lockUid` beside the image: in a sticky
 * directory (`/tmp`-like) only its owner, the directory's or root may. Asked before a takeover
 * takes a turn, so one that could only fail leaves nothing behind.
 */
async function mayRemove(lockPath: string, lockUid: number): Promise<boolean> {
  const uid = process.getuid?.();
  if (uid === undefined || uid === 0 || uid === lockUid) return true;
  const dir = await stat(dirname(lockPath)).catch(() => undefined);
  return dir === undefined || (dir.mode & STICKY) === 0 || dir.uid === uid;
}

/** A lock file that could not be created, named as the lock (not the draft the error may name). */
function lockError(lockPath: string, err: unknown): StatefsError {
  const errno = errnoOf(err);
  if (errno === 'ENOSPC') return ioError('lock', err);
  return StatefsError.EIO(`cannot create ${lockPath}: ${errno ?? (err instanceof Error ? err.message : String(err))}`, { op: 'lock', cause: err });
}

export interface SeenLock {
  /** The file's text; undefined when it cannot be read (another user's lock, not a regular file). */
  text: string | undefined;
  owner: LockOwner | undefined;
  ageMs: number;
  /** The file's owner: a socket the lock names must be this user's too. */
  uid: number;
  /** Which file this is: its inode, modification time and text, hashed. */
  identity: string;
}

/**
 * The lock (or turn) file as it is now (undefined: there is none). Opened without following a
 * link and without waiting (a FIFO planted there must not hang the opener); only a regular
 * file's text is read.
 */
export async function readLock(lockPath: string): Promise<SeenLock | undefined> {
  let fh;
  try {
    fh = await open(lockPath, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    const st = await lstat(lockPath).catch(() => undefined);
    return st === undefined ? undefined : seenLock(undefined, st);
  }
  try {
    const st = await fh.stat();
    // A read that fails (EIO, ESTALE) leaves the file seen but unread: never judged stale.
    const text = st.isFile() ? await fh.readFile('utf8').catch(() => undefined) : undefined;
    return seenLock(text, st);
  } catch {
    const st = await lstat(lockPath).catch(() => undefined);
    return st === undefined ? undefined : seenLock(undefined, st);
  } finally {
    await fh.close().catch(() => undefined);
  }
}

function seenLock(text: string | undefined, st: Stats): SeenLock {
  const identity = createHash('sha256').update(`${String(st.ino)} ${String(st.mtimeMs)} ${text ?? ''}`).digest('hex').slice(0, 16);
  return { text, owner: text === undefined ? undefined : parseLock(text), ageMs: Date.now() - st.mtimeMs, uid: st.uid, identity };
}

/** The verdict on a lock's (or turn's) owner; one in another PID namespace of this kernel is asked on its socket. */
async function judge(owner: LockOwner, uid: number, path: string): Promise<LockVerdict> {
  const verdict = judgeLockOwner(owner);
  if (verdict.holder !== 'unknown' || verdict.socket === undefined) return verdict;
  const answer = await askOwner(path, verdict.socket, uid);
  if (answer === 'answered') return { holder: 'alive', where: verdict.where };
  if (answer === 'refused') return { holder: 'gone' };
  return verdict;
}

/** A lock or a turn whose owner is gone, or that has named none for longer than its creator needs to write one. */
async function stale(seen: SeenLock, path: string): Promise<boolean> {
  if (seen.owner !== undefined) return (await judge(seen.owner, seen.uid, path)).holder === 'gone';
  return seen.text !== undefined && seen.ageMs >= LOCK_WRITE_GRACE_MS;
}

/** Where a file may be linked in place: a failure other than these means the file system has no hard links. */
const LINK_ANSWERS = new Set(['EEXIST', 'ENOENT', 'EACCES', 'EROFS', 'ENOSPC', 'EDQUOT', 'EIO', 'ENAMETOOLONG']);

/**
 * Create `path` exclusively holding `text`, false if it exists. The text is written to a draft
 * (a fixed-length name beside it) first and linked in place, so the file is never seen empty;
 * where the file system has no hard links it is created and then written. Errors are thrown as
 * they came.
 */
async function createOwned(path: string, text: string): Promise<boolean> {
  const draft = join(dirname(path), `.statefs-draft-${randomBytes(8).toString('hex')}`);
  const fh = await open(draft, 'wx', 0o644);
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

/**
 * `createOwned` without hard links. The file is empty until written: an opener that judged it
 * left by a crash in that time (5 s) may have replaced it, so it is held only if it is still
 * the file written.
 */
async function createThenWrite(path: string, text: string): Promise<boolean> {
  let fh;
  try {
    fh = await open(path, 'wx', 0o644);
  } catch (err) {
    if (errnoOf(err) === 'EEXIST') return false;
    throw err;
  }
  try {
    await fh.writeFile(text);
    const [mine, there] = await Promise.all([fh.stat(), stat(path).catch(() => undefined)]);
    await fh.close();
    return there?.ino === mine.ino && there.dev === mine.dev;
  } catch (err) {
    // Removed only while it is still the file this process created.
    const [mine, there] = await Promise.all([fh.stat().catch(() => undefined), stat(path).catch(() => undefined)]);
    await fh.close().catch(() => undefined);
    if (mine !== undefined && there?.ino === mine.ino && there.dev === mine.dev) await unlink(path).catch(() => undefined);
    throw err;
  }
}

/**
 * Remove the stale lock `judged`, and only that one. Openers that judged it stale take turns:
 * turn n is the file `.statefs-turn-<identity>-<n>` beside it (the judged lock's identity),
 * created exclusively with its taker's owner in it (`mine`: the text of the lock it is taking,
 * which names its socket). The taker reads the lock again and removes it only if it is still the
 * file judged. Turn n + 1 is taken only once the taker of turn n is gone, and turns are removed
 * only once the judged lock is: so two takers never act on one lock at once. `busy`: another
 * opener has the turn now.
 */
export async function takeOverStaleLock(lockPath: string, judged: SeenLock, mine = formatLock(thisProcess())): Promise<'removed' | 'changed' | 'unwritable' | { busy: string }> {
  const judgedText = judged.text;
  if (judgedText === undefined) return 'changed'; // a lock that cannot be read is never judged stale
  const turnFile = (turn: number): string => join(dirname(lockPath), `.statefs-turn-${judged.identity}-${String(turn)}`);
  for (let turn = 1; turn <= TAKEOVER_TURNS; turn++) {
    let taken: boolean;
    try {
      taken = await createOwned(turnFile(turn), mine);
    } catch (err) {
      const errno = errnoOf(err);
      if (errno !== undefined && UNWRITABLE.has(errno)) return 'unwritable';
      throw lockError(lockPath, err);
    }
    if (taken) {
      let lockGone = false;
      try {
        const now = await readLock(lockPath);
        const result = now?.identity === judged.identity ? await removeIfUnchanged(lockPath, judgedText) : 'changed';
        lockGone = result === 'removed' || (await readLock(lockPath))?.identity !== judged.identity;
        if (result === 'removed') await removeOwnerSocket(lockPath, judged);
        return result;
      } finally {
        // While the judged lock is still there (this process could not remove it: a rename
        // refused, a read failed), the turn stays, judged as a lock is.
        if (lockGone) {
          // The takers of the turns before this one died in them: their sockets' files go too.
          for (let t = 1; t < turn; t++) await removeOwnerSocket(lockPath, await readLock(turnFile(t)));
          for (let t = 1; t <= turn; t++) await unlink(turnFile(t)).catch(() => undefined);
        }
      }
    }
    const taker = await readLock(turnFile(turn));
    if (taker === undefined) return 'changed'; // the turns were removed: the judged lock is gone
    if (!(await stale(taker, turnFile(turn)))) return { busy: turnFile(turn) };
    // Its taker died in its turn: the next one.
  }
  return { busy: turnFile(TAKEOVER_TURNS) };
}

/**
 * Remove the file at `path` if its text is still `judged`. It is moved aside first and its text
 * checked there; a file that is not the one judged is put back. Under a turn this meets only the
 * judged lock; the check guards against openers of earlier versions, which take no turns (one of
 * them creating a lock while another's is aside would make the put-back fail, and that lock lost).
 */
async function removeIfUnchanged(path: string, judged: string): Promise<'removed' | 'changed' | 'unwritable'> {
  const aside = join(dirname(path), `.statefs-aside-${randomBytes(8).toString('hex')}`);
  try {
    await rename(path, aside);
  } catch (err) {
    const errno = errnoOf(err);
    return errno !== undefined && UNWRITABLE.has(errno) ? 'unwritable' : 'changed';
  }
  const moved = (await readLock(aside))?.text;
  if (moved !== judged) {
    await link(aside, path).catch(() => undefined);
    await unlink(aside).catch(() => undefined);
    return 'changed';
  }
  await unlink(aside).catch(() => undefined);
  return 'removed';
}

// The owner's socket. A lock names it by its file name in the lock's directory (containers may
// mount that directory at different paths) and by its device and inode. It exists from before the
// lock is created until after it is removed, so a process of this kernel that connects to it
// while the lock is there reaches its owner, unless the owner is gone: then the kernel refuses
// the connection. A refusal counts only from the very socket the owner made (its device and
// inode, its owner the lock's): another mount of the directory may show another inode, and a
// file put at that name by someone else proves nothing.

/** `sun_path` holds 108 bytes with its NUL: a socket at a longer path can be neither made nor reached. */
const MAX_SOCKET_PATH = 107;
const SOCKET_NAMED = /^(\.statefs-owner-\d+-[0-9a-f]{16}\.sock) (\d+:\d+)$/;

/**
 * Listen on a new socket beside the lock; undefined where none can be made (a long path, a
 * directory this process may not write, a file system without sockets). `named` is what the
 * lock says of it.
 */
async function listenForJudges(lockPath: string): Promise<{ named: string; close: () => Promise<void> } | undefined> {
  const name = `.statefs-owner-${String(process.pid)}-${randomBytes(8).toString('hex')}.sock`;
  const path = join(dirname(lockPath), name);
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) return undefined;
  const server = createServer((conn) => conn.destroy());
  // A failed accept (the process at its file limit) is the judge's to notice, not this process's to die of.
  server.on('error', () => undefined);
  let st;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    st = await lstat(path, { bigint: true });
  } catch {
    server.close();
    await unlink(path).catch(() => undefined);
    return undefined;
  }
  server.unref(); // an embedded store's lock must not keep its process running
  return {
    named: `${name} ${String(st.dev)}:${String(st.ino)}`,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      });
      await unlink(path).catch(() => undefined); // libuv removes it at close; this is in case it did not
    },
  };
}

/** The socket a lock names, if named as this module names one (a lock's text must not point elsewhere). */
function ownerSocket(lockPath: string, named: string): { path: string; id: string } | undefined {
  const m = SOCKET_NAMED.exec(named);
  const [, name, id] = m ?? [];
  return name === undefined || id === undefined ? undefined : { path: join(dirname(lockPath), name), id };
}

/** Whether the owner answers on the socket its lock names: `refused` only from that very socket, when the kernel says none listens there. */
async function askOwner(lockPath: string, named: string, lockUid: number): Promise<'answered' | 'refused' | 'unknown'> {
  const socket = ownerSocket(lockPath, named);
  if (socket === undefined || Buffer.byteLength(socket.path) > MAX_SOCKET_PATH) return 'unknown';
  const st = await lstat(socket.path, { bigint: true }).catch(() => undefined);
  if (st === undefined || !st.isSocket() || `${String(st.dev)}:${String(st.ino)}` !== socket.id || Number(st.uid) !== lockUid) return 'unknown';
  return ask(socket.path);
}

function ask(socket: string): Promise<'answered' | 'refused' | 'unknown'> {
  return new Promise((resolve) => {
    const conn = connect(socket);
    const settle = (answer: 'answered' | 'refused' | 'unknown'): void => {
      conn.destroy();
      resolve(answer);
    };
    conn.setTimeout(1_000, () => {
      settle('unknown');
    });
    conn.once('connect', () => {
      settle('answered');
    });
    conn.once('error', (err) => {
      settle(errnoOf(err) === 'ECONNREFUSED' ? 'refused' : 'unknown');
    });
  });
}

/** Remove the socket file the owner of a taken-over lock (or of a turn) left when it died: only the very socket it names. */
async function removeOwnerSocket(lockPath: string, judged: SeenLock | undefined): Promise<void> {
  const socket = judged?.owner?.socket === undefined ? undefined : ownerSocket(lockPath, judged.owner.socket);
  if (socket === undefined) return;
  const st = await lstat(socket.path, { bigint: true }).catch(() => undefined);
  if (st?.isSocket() === true && `${String(st.dev)}:${String(st.ino)}` === socket.id) await unlink(socket.path).catch(() => undefined);
}
