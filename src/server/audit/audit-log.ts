import { open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { StatefsError } from '../../errors.js';
import { formatLine, scanAuditLog, sha256Hex, ZERO_HASH, type AuditEvent, type AuditHead } from './audit-record.js';
import { readAuditFile } from './verify.js';

interface Pending {
  bytes: Buffer;
  resolve: () => void;
  reject: (err: unknown) => void;
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function writeAll(fh: FileHandle, bytes: Buffer): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, done, bytes.length - done);
    done += bytesWritten;
  }
}

/**
 * The daemon's append-only, hash-chained audit log (docs/storage/audit.md). `append` resolves once
 * its line is durable; appends made while a write + fdatasync is in flight are grouped into the
 * next one. After a failed write the log refuses further appends (EIO): its tail is unknown.
 */
export class AuditLog {
  readonly #path: string;
  readonly #fh: FileHandle;
  #seq: number;
  #hash: string;
  #lastLineDigest: string;
  #queue: Pending[] = [];
  #draining: Promise<void> | undefined;
  #failed: StatefsError | undefined;
  #closed = false;

  private constructor(path: string, fh: FileHandle, head: AuditHead, lastLineDigest: string) {
    this.#path = path;
    this.#fh = fh;
    this.#seq = head.seq;
    this.#hash = head.hash;
    this.#lastLineDigest = lastLineDigest;
  }

  /**
   * Open (or create, mode 0600) the log at `path` and check its whole chain (EINTEGRITY naming
   * the line when broken). A torn final fragment without "\n" was never acknowledged, so it is cut off.
   */
  static async open(path: string): Promise<AuditLog> {
    const created = await AuditLog.#create(path);
    if (created !== undefined) return new AuditLog(path, created, { seq: 0, hash: ZERO_HASH }, ZERO_HASH);
    const data = await readAuditFile(path, 'audit open');
    const scan = scanAuditLog(path, data);
    const fh = await open(path, 'a', 0o600);
    try {
      if (scan.completeBytes < data.length) {
        await fh.truncate(scan.completeBytes);
        await fh.datasync();
      }
    } catch (err) {
      await fh.close();
      throw StatefsError.EIO(`cutting the torn tail of audit log ${path}`, { op: 'audit open', cause: err });
    }
    return new AuditLog(path, fh, scan.head, scan.lastLineDigest);
  }

  /** A new empty log, durable with its directory entry; undefined when the file already exists. */
  static async #create(path: string): Promise<FileHandle | undefined> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'ax', 0o600);
    } catch (err) {
      if (err instanceof Error && 'code' in err && err.code === 'EEXIST') return undefined;
      throw StatefsError.EIO(`creating audit log ${path}`, { op: 'audit open', cause: err });
    }
    try {
      await fh.datasync();
      await fsyncDir(dirname(path));
      return fh;
    } catch (err) {
      await fh.close();
      throw StatefsError.EIO(`creating audit log ${path}`, { op: 'audit open', cause: err });
    }
  }

  /** The last appended line's seq and hash (seq 0 and zeros when empty): print it to check `verify --expect-head` against. */
  head(): AuditHead {
    return { seq: this.#seq, hash: this.#hash };
  }

  /** Append one line; resolves with its head once the line is on stable storage. */
  append(event: AuditEvent): Promise<AuditHead> {
    if (this.#closed) return Promise.reject(StatefsError.EBADF(`audit log ${this.#path}`, { op: 'audit append' }));
    if (this.#failed !== undefined) return Promise.reject(this.#failed);
    let formatted: { line: string; hash: string };
    try {
      formatted = formatLine(event, this.#seq + 1, this.#lastLineDigest, new Date());
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    this.#seq += 1;
    this.#hash = formatted.hash;
    this.#lastLineDigest = sha256Hex(formatted.line);
    const head = this.head();
    return new Promise<AuditHead>((resolve, reject) => {
      this.#queue.push({ bytes: Buffer.from(`${formatted.line}\n`, 'utf8'), resolve: () => { resolve(head); }, reject });
      this.#draining ??= this.#drain();
    });
  }

  async #drain(): Promise<void> {
    // Let every append made in the same tick join the first write.
    await Promise.resolve();
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0);
      try {
        await writeAll(this.#fh, Buffer.concat(batch.map((p) => p.bytes)));
        await this.#fh.datasync();
        for (const p of batch) p.resolve();
      } catch (err) {
        this.#failed = StatefsError.EIO(`writing audit log ${this.#path}`, { op: 'audit append', cause: err });
        for (const p of [...batch, ...this.#queue.splice(0)]) p.reject(this.#failed);
      }
    }
    this.#draining = undefined;
  }

  /** Wait for pending appends, then close the file. Later appends fail with EBADF. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#draining;
    await this.#fh.close();
  }
}
