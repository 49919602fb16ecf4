import { constants, fdatasyncSync, readSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { link, open, readFile, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { StatefsError } from '../errors.js';
import type { BlockDevice } from './device.js';
import { formatLock, judgeLockOwner, parseLock, thisProcess, type LockOwner } from './lock-owner.js';
import { checkRange } from './memory-device.js';

export interface FileDeviceOptions {
  /** Create a sparse image of this many bytes; fails with `EEXIST` if the path exists unless `force`. */
  create?: number;
  force?: boolean;
  readOnly?: boolean;
  /**
   * The caller holds the image's lock already (`lockImage`): a writable open neither takes it nor
   * removes it on close.
   */
  lockHeld?: boolean;
}

/**
 * A file-backed image (a sparse regular file of fixed size, or a block device). Durability is
 * `fdatasync`. One process owns an image: `<image>.lock` is created exclusively and names the
 * owner (pid, host, machine, boot, PID namespace, start time: lock-owner.ts); a lock whose owner
 * is gone is stale and taken over. A second opener gets `EBUSY`, as does one that cannot tell
 * whether the owner is gone (another machine or container). Read-only opens take no lock (what a
 * read-only open does about a live owner is the engine's: read-only-view.ts, and fsck refuses
 * such an image).
 */
export class FileDevice implements BlockDevice {
  private closed = false;

  private constructor(
    private readonly fh: FileHandle,
    /** The same file opened with `O_DSYNC` (writable images only), for `writeDurable`. */
    private readonly dsync: FileHandle | undefined,
    readonly size: number,
    readonly path: string,
    private readonly lockPath: string | undefined,
    /** A regular file (sparse where never written), not a block device. */
    readonly sparse: boolean,
  ) {}

  static async open(path: string, options: FileDeviceOptions = {}): Promise<FileDevice> {
    const readOnly = options.readOnly === true;
    if (options.create !== undefined && options.force !== true && (await pathExists(path))) {
      throw StatefsError.EEXIST(`image ${path}`, { op: 'mkfs' });
    }
    const lockPath = readOnly || options.lockHeld === true ? undefined : `${path}.lock`;
    if (lockPath !== undefined) await acquireLock(lockPath, path, 'open');
    try {
      const fh = await openImage(path, options);
      try {
        const { size, isFile } = await imageSize(fh, path, options.create);
        const dsync = readOnly ? undefined : await open(path, constants.O_WRONLY | constants.O_DSYNC);
        return new FileDevice(fh, dsync, size, path, lockPath, isFile);
      } catch (err) {
        await fh.close();
        throw err;
      }
    } catch (err) {
      if (lockPath !== undefined) await releaseLock(lockPath);
      throw err;
    }
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const buf = new Uint8Array(length);
    await this.readInto(offset, buf);
    return buf;
  }

  async readInto(offset: number, into: Uint8Array): Promise<void> {
    const length = into.length;
    checkRange(this.size, offset, length, 'read');
    let done = 0;
    try {
      while (done < length) {
        const { bytesRead } = await this.fh.read(into, done, length - done, offset + done);
        if (bytesRead === 0) break; // past the end of a sparse file: zeros
        done += bytesRead;
      }
    } catch (err) {
      throw ioError('read', err, offset);
    }
    into.fill(0, done);
  }

  readSync(offset: number, into: Uint8Array): void {
    const length = into.length;
    checkRange(this.size, offset, length, 'read');
    let done = 0;
    try {
      while (done < length) {
        const bytesRead = readSync(this.fh.fd, into, done, length - done, offset + done);
        if (bytesRead === 0) break; // past the end of a sparse file: zeros
        done += bytesRead;
      }
    } catch (err) {
      throw ioError('read', err, offset);
    }
    into.fill(0, done);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    await this.writeVia(this.fh, offset, data);
  }

  async writeDurable(offset: number, data: Uint8Array): Promise<void> {
    if (this.dsync === undefined) {
      await this.write(offset, data);
      await this.flush();
      return;
    }
    await this.writeVia(this.dsync, offset, data);
  }

  /**
   * `writeDurable` on the calling thread: returns once the bytes are durable, with no trip to
   * the I/O thread pool (the event loop waits for the disk meanwhile; see `CommitMode`).
   */
  writeDurableSync(offset: number, data: Uint8Array): void {
    checkRange(this.size, offset, data.length, 'write');
    const fd = (this.dsync ?? this.fh).fd;
    try {
      let done = 0;
      while (done < data.length) done += writeSync(fd, data, done, data.length - done, offset + done);
      if (this.dsync === undefined) fdatasyncSync(fd);
    } catch (err) {
      throw ioError('write', err, offset);
    }
  }

  private async writeVia(fh: FileHandle, offset: number, data: Uint8Array): Promise<void> {
    checkRange(this.size, offset, data.length, 'write');
    let done = 0;
    try {
      while (done < data.length) {
        const { bytesWritten } = await fh.write(data, done, data.length - done, offset + done);
        done += bytesWritten;
      }
    } catch (err) {
      throw ioError('write', err, offset);
    }
  }

  async flush(): Promise<void> {
    try {
      await this.fh.datasync();
    } catch (err) {
      throw ioError('flush', err);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.dsync?.close();
      await this.fh.close();
    } finally {
      // Both handles are closed even if the first close fails; the lock goes in any case.
      await this.fh.close().catch(() => undefined);
      if (this.lockPath !== undefined) await releaseLock(this.lockPath);
    }
  }
}

async function openImage(path: string, options: FileDeviceOptions): Promise<FileHandle> {
  if (options.create !== undefined) {
    try {
      const fh = await open(path, options.force === true ? 'w+' : 'wx+', 0o600);
      await fh.truncate(options.create);
      return fh;
    } catch (err) {
      if (errnoOf(err) === 'EEXIST') throw StatefsError.EEXIST(`image ${path}`, { op: 'mkfs' });
      throw ioError('create', err);
    }
  }
  try {
    return await open(path, options.readOnly === true ? 'r' : 'r+');
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') throw StatefsError.ENOENT(`image ${path}`, { op: 'open' });
    throw ioError('open', err);
  }
}

/** The image's size, and whether it is a regular file (one just created is: `truncate` refuses anything else). */
async function imageSize(fh: FileHandle, path: string, created: number | undefined): Promise<{ size: number; isFile: boolean }> {
  if (created !== undefined) return { size: created, isFile: true };
  const st = await fh.stat();
  if (st.isFile()) return { size: st.size, isFile: true };
  if (st.isBlockDevice()) {
    // /sys reports the size of a block device in 512-byte sectors.
    const major = Math.floor(st.rdev / 256);
    const minor = st.rdev % 256;
    const sectors = await readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8').catch(() => '');
    const n = Number.parseInt(sectors.trim(), 10);
    if (Number.isSafeInteger(n) && n > 0) return { size: n * 512, isFile: false };
  }
  throw StatefsError.EINVAL(`${path} is neither a regular file nor a block device of known size`, { op: 'open' });
}

/** A lock file held by a process that writes no pid into it within this long was left by a crash between the two. */
const LOCK_WRITE_GRACE_MS = 5_000;

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

/** Remove `<image>.lock` if it is still this process's: a lock another process holds by now is left to it. */
async function releaseLock(lockPath: string): Promise<void> {
  const seen = await readLock(lockPath);
  if (seen?.text === formatLock(thisProcess())) await unlink(lockPath).catch(() => undefined);
}

const UNWRITABLE = new Set(['EACCES', 'EROFS', 'EPERM']);

/** Returns false, with `unwritableOk`, when the lock file cannot be created in a directory it may not write. */
async function acquireLock(lockPath: string, imagePath: string, op: string, advice = '', unwritableOk = false): Promise<boolean> {
  for (let attempt = 0; attempt < 3; attempt++) {
    let unwritable = false;
    try {
      const fh = await open(lockPath, 'wx', 0o600);
      try {
        await fh.writeFile(formatLock(thisProcess()));
      } catch (err) {
        await fh.close().catch(() => undefined);
        await unlink(lockPath).catch(() => undefined);
        throw ioError('lock', err);
      }
      await fh.close();
      return true;
    } catch (err) {
      if (err instanceof StatefsError) throw err;
      const errno = errnoOf(err);
      // The lock goes beside the image: ENOENT means the image's directory is missing (for fsck too).
      if (errno === 'ENOENT') throw StatefsError.ENOENT(`directory ${dirname(imagePath)} of image ${imagePath}`, { op, cause: err });
      // fsck: a path through a file, no image (the same answer as for a missing image).
      if (unwritableOk && errno === 'ENOTDIR') throw StatefsError.ENOENT(`image ${imagePath}`, { op });
      unwritable = unwritableOk && errno !== undefined && UNWRITABLE.has(errno);
      if (errno !== 'EEXIST' && !unwritable) throw ioError('lock', err);
    }
    const seen = await readLock(lockPath);
    if (seen === undefined) {
      if (unwritable) return false; // no lock, and none can be taken: checked without one
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
    // No pid yet in a lock just created: its creator is between the create and the write.
    if (seen.owner === undefined && (seen.text === undefined || seen.ageMs < LOCK_WRITE_GRACE_MS)) break;
    if (unwritable) return false;
    // Stale: the owner died without unlocking (kill -9), or the host restarted since. Take it over.
    const taken = await takeOverStaleLock(lockPath, seen.text);
    if (taken === 'unwritable' && unwritableOk) return false;
  }
  throw StatefsError.EBUSY(`image ${basename(imagePath)} is being locked by another process${advice}`, { op });
}

interface SeenLock {
  /** The file's text; undefined when it cannot be read (another user's lock). */
  text: string | undefined;
  owner: LockOwner | undefined;
  ageMs: number;
}

/** The lock file as it is now (undefined: there is none). */
async function readLock(lockPath: string): Promise<SeenLock | undefined> {
  let text: string | undefined;
  try {
    text = await readFile(lockPath, 'utf8');
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
  }
  const st = await stat(lockPath).catch(() => undefined);
  if (st === undefined && text === undefined) return undefined;
  return { text, owner: text === undefined ? undefined : parseLock(text), ageMs: st === undefined ? 0 : Date.now() - st.mtimeMs };
}

/**
 * Remove a stale lock whose text was `judged`, and only that one: two openers that judged the same
 * stale lock must not both remove it (the second would remove the lock the first has just taken).
 * The lock is moved aside first and its text checked there; a lock that is not the one judged
 * (another opener's, taken meanwhile) is put back.
 */
export async function takeOverStaleLock(lockPath: string, judged: string | undefined): Promise<'removed' | 'changed' | 'unwritable'> {
  const aside = `${lockPath}.stale-${String(process.pid)}-${randomBytes(4).toString('hex')}`;
  try {
    await rename(lockPath, aside);
  } catch (err) {
    const errno = errnoOf(err);
    return errno !== undefined && UNWRITABLE.has(errno) ? 'unwritable' : 'changed';
  }
  const moved = await readFile(aside, 'utf8').catch(() => undefined);
  if (moved !== judged) {
    // Another opener's lock, taken since it was judged: back where it was (unless a third one
    // has taken the place meanwhile, which then holds it).
    await link(aside, lockPath).catch(() => undefined);
    await unlink(aside).catch(() => undefined);
    return 'changed';
  }
  await unlink(aside).catch(() => undefined);
  return 'removed';
}

function errnoOf(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') return err.code;
  return undefined;
}

function ioError(op: string, err: unknown, offset?: number): StatefsError {
  const code = errnoOf(err);
  const message = err instanceof Error ? err.message : String(err);
  const ctx = { op, cause: err, ...(offset === undefined ? {} : { offset }) };
  return code === 'ENOSPC' ? StatefsError.ENOSPC(`device: ${message}`, ctx) : StatefsError.EIO(message, ctx);
}

async function pathExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
