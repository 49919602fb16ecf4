import type { Store } from '../../engine/store.js';
import { isStatefsError, StatefsError } from '../../errors.js';

/**
 * The store the daemon serves. Requests share it; an admin REOPEN takes it alone: the reopen
 * waits for the requests that arrived before it, holds back the ones that arrive after it,
 * closes the store and replays the image from the device. Without the gate a request pipelined
 * behind a REOPEN would meet the closed store and fail with `EBADF`. Order is kept however
 * reopens pile up (a transaction's ops must reach the store in the order they were sent).
 *
 * When the replay fails (the image was damaged, or holds records this version does not know),
 * every later request fails with the error of that open — the code and message an embedded
 * `Store.open` of the image gives — until a REOPEN succeeds.
 */
export class ImageGate {
  #store: Store | undefined;
  #failure: StatefsError | undefined;
  #closed = false;
  /** Reopens asked for so far, and finished so far: the n-th asked runs n-th. */
  #asked = 0;
  #finished = 0;
  /** The run of the last reopen asked (each runs after the one before it). */
  #lastReopen: Promise<void> = Promise.resolve();
  /**
   * Requests admitted and not yet finished (waiting or running), by the number of reopens asked
   * when each arrived: reopen k waits for every request that arrived before it was asked, and
   * those arriving after it wait for it. First in, first out, however reopens pile up.
   */
  readonly #admitted = new Map<number, number>();
  readonly #drainWaiters: { reopen: number; wake: () => void }[] = [];
  readonly #open: () => Promise<Store>;

  /** `open` opens the image again (with the daemon's current policy options). */
  constructor(store: Store, open: () => Promise<Store>) {
    this.#store = store;
    this.#open = open;
  }

  /** The open store, if there is one (for settings that apply to the next request). */
  current(): Store | undefined {
    return this.#store;
  }

  /** The store, when a request may use it at once: open, and no reopen asked for and unfinished (else `use`). */
  ready(): Store | undefined {
    return this.#asked === this.#finished ? this.#store : undefined;
  }

  /**
   * Run `fn` on the store, after every reopen asked before this call and before any asked after
   * it. With no reopen pending, `fn` is called at once (synchronously), so requests reach the
   * store in the order they arrive.
   */
  async use<T>(fn: (store: Store) => Promise<T>): Promise<T> {
    const ticket = this.#asked;
    const before = this.#lastReopen;
    this.#admit(ticket, 1);
    try {
      if (this.#finished < ticket) await before.catch(() => undefined);
      const store = this.#store;
      if (store === undefined) throw this.#failure ?? StatefsError.EBADF('the daemon image', { op: 'daemon' });
      return await fn(store);
    } finally {
      this.#admit(ticket, -1);
    }
  }

  /**
   * `use` for a request that can run at once: while the store is `ready()`, `fn` is called now and
   * admitted as `use` admits it (a reopen asked meanwhile waits for it to settle), without
   * `use`'s promise around it. Undefined, calling nothing, otherwise: take `use`. What `fn`
   * throws before it returns its promise is thrown as is.
   */
  useNow<T>(fn: (store: Store) => Promise<T>): Promise<T> | undefined {
    const store = this.ready();
    if (store === undefined) return undefined;
    const ticket = this.#asked;
    this.#admit(ticket, 1);
    try {
      return fn(store).finally(() => {
        this.#admit(ticket, -1);
      });
    } catch (err) {
      this.#admit(ticket, -1);
      throw err;
    }
  }

  /** Close the store and replay the image; rejects with the open's error when that fails. */
  reopen(): Promise<void> {
    if (this.#closed) return Promise.reject(StatefsError.EBADF('the daemon image', { op: 'REOPEN' }));
    const k = ++this.#asked;
    const run = this.#lastReopen.catch(() => undefined).then(() => this.#reopenNow(k));
    this.#lastReopen = run;
    return run;
  }

  /** Wait for every reopen and every request admitted, then close the store for good. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#lastReopen.catch(() => undefined);
    await this.#drained(Infinity);
    const store = this.#store;
    this.#store = undefined;
    await store?.close();
  }

  async #reopenNow(k: number): Promise<void> {
    try {
      await this.#drained(k);
      const old = this.#store;
      this.#store = undefined;
      try {
        await old?.close();
        this.#store = await this.#open();
        this.#failure = undefined;
      } catch (err) {
        this.#failure = isStatefsError(err) ? err : StatefsError.EIO(err instanceof Error ? err.message : String(err), { op: 'REOPEN', cause: err });
        throw this.#failure;
      }
    } finally {
      this.#finished = k;
    }
  }

  #admit(ticket: number, delta: number): void {
    const n = (this.#admitted.get(ticket) ?? 0) + delta;
    if (n === 0) this.#admitted.delete(ticket);
    else this.#admitted.set(ticket, n);
    if (delta < 0 && this.#drainWaiters.length > 0) {
      for (const w of this.#drainWaiters.filter((x) => !this.#admittedBefore(x.reopen))) {
        this.#drainWaiters.splice(this.#drainWaiters.indexOf(w), 1);
        w.wake();
      }
    }
  }

  /** Whether a request that arrived before reopen `k` was asked is still admitted. */
  #admittedBefore(k: number): boolean {
    for (const ticket of this.#admitted.keys()) if (ticket < k) return true;
    return false;
  }

  /** Resolves once no request that arrived before reopen `k` was asked is left. */
  #drained(k: number): Promise<void> {
    if (!this.#admittedBefore(k)) return Promise.resolve();
    return new Promise((resolve) => {
      this.#drainWaiters.push({ reopen: k, wake: resolve });
    });
  }
}
