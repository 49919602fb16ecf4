import type { Store } from '../../engine/store.js';
import type { Transaction } from '../../engine/transaction.js';
import { StatefsError } from '../../errors.js';
import type { Request } from '../protocol/messages.js';

/** A request of a transaction held by the daemon (TXN_BEGIN … TXN_COMMIT or TXN_ABORT). */
export type TxnOpRequest = Extract<Request, { txn: number }>;

export function isTxnOpRequest(req: Request): req is TxnOpRequest {
  return 'txn' in req;
}

/**
 * The transactions a connection holds open on the daemon (TXN_BEGIN … TXN_COMMIT or TXN_ABORT),
 * by the number the client gave each. Numbers increase on a connection, so a number already used
 * tells a finished transaction (`EBADF`, as a finished `Transaction` gives) from one never begun
 * (`ENOENT`) without keeping the finished ones. Each op runs on the store's own `Transaction`,
 * so it is answered with the embedded store's code; when the connection closes, its open
 * transactions are aborted and their slots (8 per subject, 1,024 per store) given back.
 */
export class ConnectionTxns {
  readonly #open = new Map<number, Transaction>();
  /** Per open transaction, the first write the daemon refused before it reached it (see `refused`). */
  readonly #lost = new Map<number, StatefsError>();
  /**
   * TXN_BEGINs read but not run yet (held behind a REOPEN), by number, with their subject: a
   * request of theirs refused meanwhile (`refused`) is kept here until the begin runs.
   */
  readonly #beginning = new Map<number, { subject: string; lost?: StatefsError; ended?: true }>();
  /** The highest number begun on this connection (0: none yet). */
  #highest = 0;
  /** Set once the connection closed: a TXN_BEGIN still waiting (behind a reopen) must not open one. */
  #closed = false;

  /** A TXN_BEGIN was read and waits to run (`begin` or `refused` follows). */
  queued(txn: number, subject: string): void {
    if (!this.#closed && txn > this.#highest && !this.#beginning.has(txn)) this.#beginning.set(txn, { subject });
  }

  /** A TXN_BEGIN that waited has been answered, whether or not it ran (e.g. a failed image). */
  settled(txn: number): void {
    this.#beginning.delete(txn);
  }

  begin(store: Store, txn: number, subject: string): void {
    const early = this.#beginning.get(txn);
    this.#beginning.delete(txn);
    if (this.#closed) throw StatefsError.EBADF('the connection', { op: 'TXN_BEGIN', subject });
    if (txn <= this.#highest) throw StatefsError.EINVAL(`transaction number ${txn} is not above ${this.#highest}, the last one begun on this connection`, { op: 'TXN_BEGIN', subject });
    this.#highest = txn; // used even if the begin below is refused: later ops on it are EBADF
    if (early?.ended === true) return; // its commit or abort was refused while it waited: finished
    this.#open.set(txn, store.begin(subject));
    if (early?.lost !== undefined) this.#lost.set(txn, early.lost);
  }

  /** The open transaction `txn`. */
  of(txn: number, op: string): Transaction {
    const t = this.#open.get(txn);
    if (t !== undefined) return t;
    if (txn >= 1 && txn <= this.#highest) throw StatefsError.EBADF(`transaction ${txn} (finished, or its begin was refused)`, { op });
    throw StatefsError.ENOENT(`transaction ${txn} was not begun on this connection`, { op });
  }

  /**
   * Commit `txn`, which is finished from now on whatever the outcome (as `Transaction.commit`).
   * If the daemon refused one of its writes, the transaction is aborted instead, with that
   * refusal's code: its ops are no longer those the client sent.
   */
  commit(txn: number, subject: string): Promise<void> {
    const t = this.#ending(txn, subject, 'TXN_COMMIT');
    const lost = this.#lost.get(txn);
    this.#lost.delete(txn);
    if (lost === undefined) return t.commit();
    return t.abort().then(() => {
      throw new StatefsError(lost.code, `transaction ${txn} aborted: the daemon refused one of its writes (${lost.message})`, { op: 'TXN_COMMIT', subject });
    });
  }

  abort(txn: number, subject: string): Promise<void> {
    const t = this.#ending(txn, subject, 'TXN_ABORT');
    this.#lost.delete(txn);
    return t.abort();
  }

  #ending(txn: number, subject: string, op: string): Transaction {
    const t = this.of(txn, op);
    if (subject !== t.subject) throw StatefsError.EXDEV(`transaction ${txn} belongs to ${t.subject}`, { op, subject });
    this.#open.delete(txn);
    return t;
  }

  /**
   * The daemon refused `req` before the transaction saw it (a right it lacks, the in-flight
   * limit, shutdown). Called when the refusal is decided, before any request read after it runs:
   * a refused write fails the transaction's commit, so a pipelined commit never commits a
   * transaction that lost an op; a refused commit or abort aborts it, as the client counts it
   * finished; a refused begin uses up its number. A refused read changes nothing.
   */
  refused(req: TxnOpRequest, err: StatefsError): void {
    // A transaction whose begin waits behind a REOPEN hears of it when the begin runs.
    const early = this.#beginning.get(req.txn);
    switch (req.op) {
      case 'TXN_BEGIN':
        this.#beginning.delete(req.txn);
        if (!this.#closed && req.txn > this.#highest) this.#highest = req.txn;
        return;
      case 'TXN_PUT':
      case 'TXN_DELETE':
        if (early !== undefined) early.lost ??= err;
        else if (this.#open.has(req.txn) && !this.#lost.has(req.txn)) this.#lost.set(req.txn, err);
        return;
      case 'TXN_COMMIT':
      case 'TXN_ABORT': {
        if (early?.subject === req.subject) {
          early.ended = true;
          return;
        }
        const t = this.#open.get(req.txn);
        if (t?.subject !== req.subject) return;
        this.#open.delete(req.txn);
        this.#lost.delete(req.txn);
        t.abort().catch(() => undefined);
        return;
      }
      case 'TXN_GET':
        return;
    }
  }

  /** The connection is gone: abort what it left open (a transaction being committed finishes alone). */
  abortAll(): void {
    this.#closed = true;
    for (const t of this.#open.values()) t.abort().catch(() => undefined);
    this.#open.clear();
    this.#lost.clear();
    this.#beginning.clear();
  }
}
