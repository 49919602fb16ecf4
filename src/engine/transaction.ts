import { StatefsError } from '../errors.js';
import { Op } from '../format/opcodes.js';
import { PAYLOAD_DELETE, PAYLOAD_PUT, TXN_CHUNK, encodePayload, encodeTxnMark } from '../format/txn-records.js';
import type { RecordToWrite } from './journal-writer.js';
import { checkKey, checkSubject, toValue } from './names.js';
import { EMPTY, recordKey, settle } from './store-support.js';
import { checkDeleteAllowed, checkPutAllowed, type KeyView } from './tree-rules.js';
import { ownCopy } from './value-pool.js';

/** Caps on transactions (spec section 3); the defaults are the spec's. */
export interface TxnLimits {
  /** Open transactions per subject (default 8). */
  perSubject: number;
  /** Open transactions per store (default 1,024). */
  perStore: number;
  /** Distinct keys written by one transaction (default 32). */
  keys: number;
  /** Value bytes written by one transaction (default 128 KiB). */
  bytes: number;
}

export const DEFAULT_TXN_LIMITS: TxnLimits = { perSubject: 8, perStore: 1024, keys: 32, bytes: 128 * 1024 };

/** One buffered write: a value, or `null` for a delete. */
export interface TxnOp {
  /** The key as a binary string (see names.ts). */
  bin: string;
  key: string;
  value: Uint8Array | null;
}

/** What a transaction needs from its store. */
export interface TxnHost {
  /** The subject's working keys. */
  view(subject: string): KeyView;
  /** Working keys of the subject strictly below `bin`, in order. */
  children(subject: string, bin: string): Iterable<string>;
  readCommitted(subject: string, bin: string): Uint8Array | undefined;
  checkWritable(op: string): void;
  /** `EROFS` at or under a mount, `EINVAL` elsewhere outside /state/. */
  checkWritePath(subject: string, key: string, op: string): void;
  commitTxn(subject: string, ops: TxnOp[]): Promise<void>;
  releaseTxn(subject: string): void;
}

/** `failed`: its commit failed, whether refused before it began (a closed or failed store) or while it ran. */
type TxnState = 'open' | 'committing' | 'committed' | 'failed' | 'aborted';

/**
 * A transaction on one subject: writes are buffered, seen by this transaction's own reads and by
 * no one else until `commit()`, which writes them all as one unit (PREPARE, PAYLOADs, COMMIT in
 * one append) and resolves once durable. Using a finished transaction is `EBADF` (but `abort()`
 * after a failed commit resolves); touching another subject is `EXDEV`. The methods take the
 * subject like `Store`'s, so code can be written against either.
 */
export class Transaction {
  private readonly ops = new Map<string, TxnOp>();
  private bytes = 0;
  private state: TxnState = 'open';

  /** @internal Made by `Store.begin`. */
  constructor(
    private readonly host: TxnHost,
    readonly subject: string,
    private readonly limits: TxnLimits,
  ) {}

  /** Buffer a put. Tree rules are checked now against the store plus this transaction, and again at commit. */
  put(subject: string, key: string, value: Uint8Array | string): Promise<void> {
    return settle(() => {
      const op = 'txn.put';
      const bin = this.target(subject, key, op);
      const bytes = toValue(value, op, subject, key);
      const previous = this.ops.get(bin);
      const added = bytes.length - (previous?.value?.length ?? 0);
      if (previous === undefined && this.ops.size >= this.limits.keys) {
        throw StatefsError.EFBIG(`transaction writes more than ${this.limits.keys} keys`, { op, subject, key });
      }
      if (this.bytes + added > this.limits.bytes) {
        throw StatefsError.EFBIG(`transaction writes more than ${this.limits.bytes} value bytes`, { op, subject, key });
      }
      checkPutAllowed(this.view, bin, subject, key, op);
      this.ops.delete(bin); // re-insert: the op order is the order of last writes
      this.ops.set(bin, { bin, key, value: ownCopy(bytes) });
      this.bytes += added;
    });
  }

  /** Buffer a delete (`ENOENT` if the key has no value in the store or this transaction). */
  delete(subject: string, key: string): Promise<void> {
    return settle(() => {
      const op = 'txn.delete';
      const bin = this.target(subject, key, op);
      const previous = this.ops.get(bin);
      if (previous === undefined && this.ops.size >= this.limits.keys) {
        throw StatefsError.EFBIG(`transaction writes more than ${this.limits.keys} keys`, { op, subject, key });
      }
      checkDeleteAllowed(this.view, bin, subject, key, op);
      this.bytes -= previous?.value?.length ?? 0;
      this.ops.delete(bin);
      // Deleting what only this transaction wrote leaves nothing to do for that key.
      if (this.base.has(bin)) this.ops.set(bin, { bin, key, value: null });
    });
  }

  /** Read through this transaction: its own writes first, then the store's acknowledged state. */
  get(subject: string, key: string): Promise<Uint8Array | undefined> {
    return settle(() => {
      const bin = this.target(subject, key, 'txn.get', false);
      const own = this.ops.get(bin);
      if (own !== undefined) return own.value === null ? undefined : new Uint8Array(own.value);
      return this.host.readCommitted(subject, bin);
    });
  }

  /**
   * Write every buffered op atomically; resolves when durable. The transaction is then finished,
   * whatever the outcome: a commit the store refuses at once (closed, or failed) ends it too.
   */
  async commit(): Promise<void> {
    const op = 'txn.commit';
    if (this.state !== 'open') throw this.finished(op);
    this.state = 'committing';
    try {
      this.host.checkWritable(op);
      if (this.ops.size > 0) await this.host.commitTxn(this.subject, [...this.ops.values()]);
      this.state = 'committed';
    } catch (err) {
      this.state = 'failed';
      throw err;
    } finally {
      this.host.releaseTxn(this.subject);
    }
  }

  /**
   * Drop every buffered op. Nothing was written, so nothing is undone on disk. `EBADF` once
   * committed (or committing) or aborted; after a failed commit it resolves and does nothing.
   */
  abort(): Promise<void> {
    return settle(() => {
      // The failed commit ended the transaction: abort, the usual cleanup after it, must not
      // throw over the commit's error (nor depend on where the commit failed). It undoes nothing
      // (after an EIO, the reopen's replay tells whether the commit reached the disk).
      if (this.state === 'failed') return;
      // Allowed even after the store failed: dropping buffered writes needs no I/O.
      if (this.state !== 'open') throw this.finished('txn.abort');
      this.state = 'aborted';
      this.ops.clear();
      this.host.releaseTxn(this.subject);
    });
  }

  private target(subject: string, key: string, op: string, write = true): string {
    this.checkOpen(op);
    checkSubject(subject, op);
    if (subject !== this.subject) throw StatefsError.EXDEV(`transaction of ${this.subject} cannot touch ${subject}`, { op, subject, key });
    if (write) this.host.checkWritePath(subject, key, op);
    return checkKey(key, op, subject);
  }

  private checkOpen(op: string): void {
    if (this.state !== 'open') throw this.finished(op);
    this.host.checkWritable(op);
  }

  private finished(op: string): StatefsError {
    return StatefsError.EBADF(`transaction (${this.state})`, { op, subject: this.subject });
  }

  private get base(): KeyView {
    return this.host.view(this.subject);
  }

  /** The store's working keys with this transaction's writes laid over them. */
  private readonly view: KeyView = {
    has: (bin) => {
      const own = this.ops.get(bin);
      return own === undefined ? this.base.has(bin) : own.value !== null;
    },
    hasChildren: (bin) => {
      const prefix = `${bin}/`;
      for (const o of this.ops.values()) if (o.value !== null && o.bin.startsWith(prefix)) return true;
      for (const child of this.host.children(this.subject, bin)) if (this.ops.get(child)?.value !== null) return true;
      return false;
    },
  };
}

/** Validate a whole op list in order against `base` (used again at commit: the store may have moved). */
export function validateTxnOps(base: KeyView, children: (bin: string) => Iterable<string>, subject: string, ops: readonly TxnOp[]): void {
  const applied = new Map<string, boolean>();
  const view: KeyView = {
    has: (bin) => applied.get(bin) ?? base.has(bin),
    hasChildren: (bin) => {
      const prefix = `${bin}/`;
      for (const [k, present] of applied) if (present && k.startsWith(prefix)) return true;
      for (const child of children(bin)) if (applied.get(child) !== false) return true;
      return false;
    },
  };
  for (const o of ops) {
    if (o.value === null) checkDeleteAllowed(view, o.bin, subject, o.key, 'txn.commit');
    else checkPutAllowed(view, o.bin, subject, o.key, 'txn.commit');
    applied.set(o.bin, o.value !== null);
  }
}

/** Open transactions per subject and per store, held to `TxnLimits`. */
export class OpenTxnCounts {
  private readonly bySubject = new Map<string, number>();
  private total = 0;

  constructor(private readonly limits: TxnLimits) {}

  /** One more transaction on `subject`; `EAGAIN` when the subject or the store is at its limit. */
  open(subject: string, op: string): void {
    const mine = this.bySubject.get(subject) ?? 0;
    if (mine >= this.limits.perSubject) throw StatefsError.EAGAIN(`${subject} has ${mine} open transactions`, { op, subject });
    if (this.total >= this.limits.perStore) throw StatefsError.EAGAIN(`the store has ${this.total} open transactions`, { op, subject });
    this.bySubject.set(subject, mine + 1);
    this.total++;
  }

  /** A transaction on `subject` committed or aborted. */
  close(subject: string): void {
    const n = (this.bySubject.get(subject) ?? 1) - 1;
    if (n === 0) this.bySubject.delete(subject);
    else this.bySubject.set(subject, n);
    this.total--;
  }
}

/** A transaction's records: PREPARE, the PAYLOAD chunks of each op (their counts, per op), COMMIT. */
export function txnRecords(subject: string, ops: readonly TxnOp[], txnId: number): { records: RecordToWrite[]; chunkCounts: number[] } {
  const subjectKey = Buffer.from(subject, 'latin1');
  const records: RecordToWrite[] = [{ opcode: Op.PREPARE, key: subjectKey, value: encodeTxnMark({ txnId, opCount: ops.length }) }];
  const chunkCounts: number[] = [];
  for (const o of ops) {
    const key = recordKey(subject, o.bin);
    if (o.value === null) {
      records.push({ opcode: Op.PAYLOAD, key, value: encodePayload({ txnId, kind: PAYLOAD_DELETE, index: 0, count: 1, data: EMPTY }) });
      chunkCounts.push(1);
      continue;
    }
    const count = Math.max(1, Math.ceil(o.value.length / TXN_CHUNK));
    for (let i = 0; i < count; i++) {
      const data = o.value.subarray(i * TXN_CHUNK, (i + 1) * TXN_CHUNK);
      records.push({ opcode: Op.PAYLOAD, key, value: encodePayload({ txnId, kind: PAYLOAD_PUT, index: i, count, data }) });
    }
    chunkCounts.push(count);
  }
  records.push({ opcode: Op.COMMIT, key: subjectKey, value: encodeTxnMark({ txnId, opCount: ops.length }) });
  return { records, chunkCounts };
}
