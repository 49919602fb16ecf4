import type { Store } from '../../engine/store.js';
import { isStatefsError, StatefsError } from '../../errors.js';

/**
 * The store the daemon serves. Requests share it; an admin REOPEN takes it alone: the reopen
 * waits for the requests already running, holds back the ones that arrive meanwhile, closes the
 * store and replays the image from the device. Without the gate a request pipelined behind a
 * REOPEN would meet the closed store and fail with `EBADF`.
 *
 * When the replay fails (the image was damaged, or holds records this version does not know),
 * every later request fails with the error of that open — the code and message an embedded
 * `Store.open` of the image gives — until a REOPEN succeeds.
 */
export class ImageGate {
  #store: Store | undefined;
  #failure: StatefsError | undefined;
  #closed = false;
  #running = 0;
  readonly #drainWaiters: (() => void)[] = [];
  #reopening: Promise<void> | undefined;
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

  /** The store, when a request may use it at once: open, and no reopen under way (else `use`). */
  ready(): Store | undefined {
    return this.#reopening === undefined ? this.#store : undefined;
  }

  /** Run `fn` on the store; waits while a reopen is under way. */
  async use<T>(fn: (store: Store) => Promise<T>): Promise<T> {
    while (this.#reopening !== undefined) await this.#reopening.catch(() => undefined);
    const store = this.#store;
    if (store === undefined) throw this.#failure ?? StatefsError.EBADF('the daemon image', { op: 'daemon' });
    this.#running += 1;
    try {
      return await fn(store);
    } finally {
      this.#running -= 1;
      if (this.#running === 0) for (const wake of this.#drainWaiters.splice(0)) wake();
    }
  }

  /** Close the store and replay the image; rejects with the open's error when that fails. */
  reopen(): Promise<void> {
    if (this.#closed) return Promise.reject(StatefsError.EBADF('the daemon image', { op: 'REOPEN' }));
    const run = (this.#reopening ?? Promise.resolve()).catch(() => undefined).then(() => this.#reopenNow());
    this.#reopening = run;
    const settled = (): void => {
      if (this.#reopening === run) this.#reopening = undefined;
    };
    run.then(settled, settled);
    return run;
  }

  /** Wait for running requests and any reopen, then close the store for good. */
  async close(): Promise<void> {
    this.#closed = true;
    while (this.#reopening !== undefined) await this.#reopening.catch(() => undefined);
    await this.#idle();
    const store = this.#store;
    this.#store = undefined;
    await store?.close();
  }

  async #reopenNow(): Promise<void> {
    await this.#idle();
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
  }

  #idle(): Promise<void> {
    if (this.#running === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#drainWaiters.push(resolve);
    });
  }
}
