import { checkSubject, valueBytes } from '../engine/names.js';
import { asStatefsError } from '../engine/store-support.js';
import { StatefsError } from '../errors.js';
import type { OkResponse } from '../server/protocol/messages.js';
import type { Outgoing } from './wire.js';

/** The requests of a transaction held by the daemon. */
type TxnOutgoing = Extract<Outgoing, { op: 'TXN_BEGIN' | 'TXN_PUT' | 'TXN_DELETE' | 'TXN_GET' | 'TXN_COMMIT' | 'TXN_ABORT' }>;

/** As the embedded `Transaction`'s; `failed`: the commit's answer was a refusal. */
type ClientTxnState = 'open' | 'committing' | 'committed' | 'failed' | 'aborted';

/**
 * A transaction held by the daemon for this connection: TXN_BEGIN is sent at once, each op is
 * its own request answered with the embedded `Transaction`'s result (a delete of a missing key is
 * `ENOENT` at the call and the others still commit; `get` reads through the transaction), and
 * `commit()` resolves once the daemon's commit is durable. Requests are pipelined: an op does not
 * wait for the begin's answer before it is sent, but if the daemon refused the begin (`EAGAIN`
 * at the open-transaction limit), every op rejects with that refusal. A transaction left open
 * when the connection closes is aborted by the daemon.
 */
export class ClientTxn {
  readonly #subject: string;
  readonly #txn: number;
  readonly #call: (req: TxnOutgoing) => Promise<OkResponse>;
  /** TXN_BEGIN's answer. */
  readonly #begun: Promise<unknown>;
  #state: ClientTxnState = 'open';

  /** `txn`: a number above every other begun on the connection (the daemon requires it). */
  constructor(subject: string, txn: number, call: (req: TxnOutgoing) => Promise<OkResponse>) {
    this.#subject = subject;
    this.#txn = txn;
    this.#call = call;
    this.#begun = call({ op: 'TXN_BEGIN', txn, subject });
    this.#begun.catch(() => undefined); // reported by each op that follows
  }

  /** Send one op of this transaction; its answer, or the begin's refusal if there was one. */
  #send(op: string, subject: string, req: TxnOutgoing, ends?: 'committing' | 'aborted'): Promise<OkResponse> {
    // A finished transaction and another subject need no round trip (the codes are the embedded ones).
    if (this.#state !== 'open') return Promise.reject(StatefsError.EBADF('the transaction', { op, subject }));
    try {
      checkSubject(subject, op); // a malformed name first, as the embedded transaction checks it
    } catch (err) {
      return Promise.reject(asStatefsError(err, op));
    }
    if (subject !== this.#subject) return Promise.reject(StatefsError.EXDEV(`the transaction belongs to ${this.#subject}`, { op, subject }));
    if (ends !== undefined) this.#state = ends;
    const sent = this.#call(req);
    sent.catch(() => undefined); // reported below, after the begin's own refusal
    const answer = this.#begun.then(() => sent);
    if (ends !== 'committing') return answer;
    // The commit's outcome decides what a later abort answers.
    return answer.then(
      (res) => {
        this.#state = 'committed';
        return res;
      },
      (err: unknown) => {
        this.#state = 'failed';
        throw err;
      },
    );
  }

  async put(subject: string, key: string, value: Uint8Array | string): Promise<void> {
    await this.#send('txn.put', subject, { op: 'TXN_PUT', txn: this.#txn, subject, key, value: valueBytes(value, 'txn.put', subject, key) });
  }

  async delete(subject: string, key: string): Promise<void> {
    await this.#send('txn.delete', subject, { op: 'TXN_DELETE', txn: this.#txn, subject, key });
  }

  /** Read through the transaction: its own writes first, then the store's acknowledged state. */
  async get(subject: string, key: string): Promise<Uint8Array | undefined> {
    const res = await this.#send('txn.get', subject, { op: 'TXN_GET', txn: this.#txn, subject, key });
    return res.op === 'TXN_GET' ? res.value : undefined;
  }

  /** Commit every op the daemon accepted; resolves once durable. The transaction is then finished. */
  async commit(): Promise<void> {
    await this.#send('txn.commit', this.#subject, { op: 'TXN_COMMIT', txn: this.#txn, subject: this.#subject }, 'committing');
  }

  /**
   * Drop the transaction's ops; `EBADF` once committed (or committing) or aborted, as the
   * embedded store. After a failed commit it resolves with no round trip, as the embedded store:
   * the daemon ended the transaction at its TXN_COMMIT, and would answer a TXN_ABORT `EBADF`.
   */
  async abort(): Promise<void> {
    if (this.#state === 'failed') return;
    await this.#send('txn.abort', this.#subject, { op: 'TXN_ABORT', txn: this.#txn, subject: this.#subject }, 'aborted');
  }
}
