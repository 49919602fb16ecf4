import { StatefsError } from '../errors.js';
import type { TxnWireOp } from '../server/protocol/messages.js';

/**
 * A transaction buffered on the client and sent as one TXN request by `commit()`: the daemon
 * commits all of it or nothing. Tree rules are checked by the daemon at commit.
 */
export class ClientTxn {
  readonly #subject: string;
  readonly #send: (ops: TxnWireOp[]) => Promise<void>;
  readonly #ops: TxnWireOp[] = [];
  #done = false;

  constructor(subject: string, send: (ops: TxnWireOp[]) => Promise<void>) {
    this.#subject = subject;
    this.#send = send;
  }

  #check(subject: string, op: string): StatefsError | undefined {
    if (this.#done) return StatefsError.EBADF('the transaction', { op, subject });
    if (subject !== this.#subject) return StatefsError.EXDEV(`the transaction belongs to ${this.#subject}`, { op, subject });
    return undefined;
  }

  put(subject: string, key: string, value: Uint8Array | string): Promise<void> {
    const err = this.#check(subject, 'txn.put');
    if (err !== undefined) return Promise.reject(err);
    this.#ops.push({ type: 'put', key, value: typeof value === 'string' ? new TextEncoder().encode(value) : value.slice() });
    return Promise.resolve();
  }

  delete(subject: string, key: string): Promise<void> {
    const err = this.#check(subject, 'txn.delete');
    if (err !== undefined) return Promise.reject(err);
    this.#ops.push({ type: 'delete', key });
    return Promise.resolve();
  }

  commit(): Promise<void> {
    if (this.#done) return Promise.reject(StatefsError.EBADF('the transaction', { op: 'txn.commit', subject: this.#subject }));
    this.#done = true;
    return this.#send(this.#ops);
  }

  abort(): Promise<void> {
    this.#done = true;
    return Promise.resolve();
  }
}
