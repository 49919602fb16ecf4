import { constants, fdatasyncSync, readSync, writeSync } from 'node:fs';
import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import { StatefsError } from '../errors.js';
import type { BlockDevice } from './device.js';
import { acquireLock, type HeldLock } from './image-lock.js';
import { errnoOf, ioError } from './io-error.js';
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
 * owner (pid, host, machine, boot, PID namespace, start time, a socket it answers on:
 * image-lock.ts); a lock whose owner is gone is stale and taken over. A second opener gets
 * `EBUSY`, as does one that cannot tell whether the owner is gone (another machine, a container
 * whose socket it cannot reach). Read-only opens take no lock (what a
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
    private readonly lock: HeldLock | undefined,
    /** A regular file (sparse where never written), not a block device. */
    readonly sparse: boolean,
  ) {}

  static async open(path: string, options: FileDeviceOptions = {}): Promise<FileDevice> {
    const readOnly = options.readOnly === true;
    if (options.create !== undefined && options.force !== true && (await pathExists(path))) {
      throw StatefsError.EEXIST(`image ${path}`, { op: 'mkfs' });
    }
    const lock = readOnly || options.lockHeld === true ? undefined : await acquireLock(`${path}.lock`, path, 'open');
    try {
      const fh = await openImage(path, options);
      try {
        const { size, isFile } = await imageSize(fh, path, options.create);
        const dsync = readOnly ? undefined : await open(path, constants.O_WRONLY | constants.O_DSYNC);
        return new FileDevice(fh, dsync, size, path, lock, isFile);
      } catch (err) {
        await fh.close();
        throw err;
      }
    } catch (err) {
      await lock?.release();
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
      await this.lock?.release();
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

async function pathExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
