import { constants, fdatasyncSync, writeSync } from 'node:fs';
import { open, readFile, stat, unlink, type FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';
import { StatefsError } from '../errors.js';
import type { BlockDevice } from './device.js';
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
 * `fdatasync`. One process owns an image: `<image>.lock` is created exclusively and holds the
 * owner's pid; a lock whose pid is no longer alive is stale and taken over. A second opener gets
 * `EBUSY`. Read-only opens take no lock (what a read-only open does about a live owner is the
 * engine's: read-only-view.ts, and fsck refuses such an image).
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
        const size = await imageSize(fh, path, options.create);
        const dsync = readOnly ? undefined : await open(path, constants.O_WRONLY | constants.O_DSYNC);
        return new FileDevice(fh, dsync, size, path, lockPath);
      } catch (err) {
        await fh.close();
        throw err;
      }
    } catch (err) {
      if (lockPath !== undefined) await unlink(lockPath).catch(() => undefined);
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
      if (this.lockPath !== undefined) await unlink(this.lockPath).catch(() => undefined);
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

async function imageSize(fh: FileHandle, path: string, created: number | undefined): Promise<number> {
  if (created !== undefined) return created;
  const st = await fh.stat();
  if (st.isFile()) return st.size;
  if (st.isBlockDevice()) {
    // /sys reports the size of a block device in 512-byte sectors.
    const major = Math.floor(st.rdev / 256);
    const minor = st.rdev % 256;
    const sectors = await readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8').catch(() => '');
    const n = Number.parseInt(sectors.trim(), 10);
    if (Number.isSafeInteger(n) && n > 0) return n * 512;
  }
  throw StatefsError.EINVAL(`${path} is neither a regular file nor a block device of known size`, { op: 'open' });
}

/**
 * Take `<image>.lock` for the caller (as a writable open does) and return its release: fsck holds
 * it for a whole check, so no owner can start and move the log under it. `EBUSY` names a live holder.
 */
export async function lockImage(imagePath: string, op: string, advice: string): Promise<() => Promise<void>> {
  const lockPath = `${imagePath}.lock`;
  // An image in a directory this process cannot write (a read-only mount of a backup) cannot be
  // locked: it is checked without the lock, refused only while a live owner holds one.
  if (!(await acquireLock(lockPath, imagePath, op, advice, true))) return () => Promise.resolve();
  return async () => {
    await unlink(lockPath).catch(() => undefined);
  };
}

/** Returns false, with `unwritableOk`, when the lock file cannot be created in a directory it may not write. */
async function acquireLock(lockPath: string, imagePath: string, op: string, advice = '', unwritableOk = false): Promise<boolean> {
  for (let attempt = 0; attempt < 2; attempt++) {
    let unwritable = false;
    try {
      const fh = await open(lockPath, 'wx', 0o600);
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      return true;
    } catch (err) {
      const errno = errnoOf(err);
      unwritable = unwritableOk && (errno === 'EACCES' || errno === 'EROFS' || errno === 'EPERM');
      if (errno !== 'EEXIST' && !unwritable) throw ioError('lock', err);
    }
    const owner = await lockOwner(lockPath);
    if (owner !== undefined && isAlive(owner)) {
      throw StatefsError.EBUSY(`image ${basename(imagePath)} is locked by process ${owner}${advice}`, { op });
    }
    if (unwritable) return false;
    // Stale: the owner died without unlocking (kill -9). Take it over.
    await unlink(lockPath).catch(() => undefined);
  }
  throw StatefsError.EBUSY(`image ${basename(imagePath)} is being locked by another process`, { op });
}

/** The pid a lock file names, if it names one. */
async function lockOwner(lockPath: string): Promise<number | undefined> {
  const owner = Number.parseInt((await readFile(lockPath, 'utf8').catch(() => '')).trim(), 10);
  return Number.isSafeInteger(owner) && owner > 0 ? owner : undefined;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoOf(err) === 'EPERM';
  }
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
