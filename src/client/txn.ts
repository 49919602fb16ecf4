import { StatefsError } from '../errors.js';
import { DEFAULT_TXN_LIMITS } from '../engine/transaction.js';
import type { TxnWireOp } from '../server/protocol/messages.js';

/**
 * A transaction buffered on the client and sent as one TXN request by `commit()`: the daemon
 * commits all of it or nothing. What the client can check alone it checks at the call, with the
 * embedded store's code (a finished transaction `EBADF`, another subject `EXDEV`, over the
 * default limits of keys or value bytes `EFBIG`); tree rules and missing keys are checked by
 * the daemon at commit (statefs-v3.md, Appendix A item 9).
 */
export class ClientTxn {
  readonly #subject: string;
  readonly #send: (ops: TxnWireOp[]) => Promise<void>;
  /** Every op in call order: the daemon replays them through a transaction of its own. */
  readonly #ops: TxnWireOp[] = [];
  /** Per key written, its value's length (0 for a delete): what the limits count. */
  readonly #sizes = new Map<string, number>();
  #bytes = 0;
  #done = false;

  constructor(subject: string, send: (ops: TxnWireOp[]) => Promise<void>) {
    this.#subject = subject;
    this.#send = send;
  }

  #check(subject: string, op: string, key: string, bytes: number): StatefsError | undefined {
    if (this.#done) return StatefsError.EBADF('the transaction', { op, subject });
    if (subject !== this.#subject) return StatefsError.EXDEV(`the transaction belongs to ${this.#subject}`, { op, subject });
    const before = this.#sizes.get(key);
    if (before === undefined && this.#sizes.size >= DEFAULT_TXN_LIMITS.keys) {
      return StatefsError.EFBIG(`transaction writes more than ${DEFAULT_TXN_LIMITS.keys} keys`, { op, subject, key });
    }
    if (this.#bytes - (before ?? 0) + bytes > DEFAULT_TXN_LIMITS.bytes) {
      return StatefsError.EFBIG(`transaction writes more than ${DEFAULT_TXN_LIMITS.bytes} value bytes`, { op, subject, key });
    }
    return undefined;
  }

  #add(key: string, op: TxnWireOp, bytes: number): void {
    this.#bytes += bytes - (this.#sizes.get(key) ?? 0);
    this.#sizes.set(key, bytes);
    this.#ops.push(op);
  }

  put(subject: string, key: string, value: Uint8Array | string): Promise<void> {
    const bytes = typeof value === 'string' ? new TextEncoder().encode(value) : value.slice();
    const err = this.#check(subject, 'txn.put', key, bytes.length);
    if (err !== undefined) return Promise.reject(err);
    this.#add(key, { type: 'put', key, value: bytes }, bytes.length);
    return Promise.resolve();
  }

  delete(subject: string, key: string): Promise<void> {
    const err = this.#check(subject, 'txn.delete', key, 0);
    if (err !== undefined) return Promise.reject(err);
    this.#add(key, { type: 'delete', key }, 0);
    return Promise.resolve();
  }

  commit(): Promise<void> {
    if (this.#done) return Promise.reject(StatefsError.EBADF('the transaction', { op: 'txn.commit', subject: this.#subject }));
    this.#done = true;
    return this.#send(this.#ops);
  }

  /** Drop the buffered ops; `EBADF` once committed or aborted, as the embedded store. */
  abort(): Promise<void> {
    if (this.#done) return Promise.reject(StatefsError.EBADF('the transaction', { op: 'txn.abort', subject: this.#subject }));
    this.#done = true;
    this.#ops.length = 0;
    return Promise.resolve();
  }
}
