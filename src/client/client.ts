import type { GcResult } from '../engine/compactor.js';
import { checkKey, checkSubject, KEY_ROOT, toValue, valueBytes } from '../engine/names.js';
import { isMountKey } from '../engine/store-support.js';
import type { ListOptions, ListPage, MountInfo, SnapshotDiff, SnapshotInfo, StoreStat } from '../engine/store-types.js';
import { StatefsError } from '../errors.js';
import { DEFAULT_MAX_FRAME, HEADER_SIZE } from '../server/protocol/frame.js';
import type { OkResponse, PutManyRequest, WireGcPlan } from '../server/protocol/messages.js';
import { MAX_PUT_MANY_ENTRIES, putManyBodyBytes, putManyEntryBytes } from '../server/protocol/request-codec.js';
import { ClientTxn } from './txn.js';
import { WireConnection, type Outgoing } from './wire.js';

export interface ConnectOptions {
  /** Path of the daemon's Unix socket (or give `host` and `port` for its loopback TCP listener). */
  socket?: string;
  host?: string;
  port?: number;
  /** The subject's token (from `statefs policy add-subject`); connect() reads no environment variable. */
  token: string;
}

type Ok<O extends OkResponse['op']> = Extract<OkResponse, { op: O }>;

function expect<O extends OkResponse['op']>(res: OkResponse, op: O): Ok<O> {
  if (res.op !== op) throw StatefsError.EINVAL(`the daemon answered ${res.op} to ${op}`, { op: 'client' });
  return res as Ok<O>;
}

type PutManyEntry = PutManyRequest['entries'][number];

/** The largest request body a frame carries. */
const MAX_REQUEST_BODY = DEFAULT_MAX_FRAME - HEADER_SIZE;

/** Transaction numbers are a u32 on the wire, from 1 up. */
const MAX_TXN_NUMBER = 0xffff_ffff;

/**
 * 0 means "the default bound" on the wire; the embedded store refuses it, so the client does too.
 * The wire bounds a cycle by bytes only: an untyped caller's `maxSegments` or `signal` is
 * `ENOTSUP`, not dropped (the cycle would have run unbounded by it).
 */
function gcBody(options: { maxBytes?: number }): { maxBytes?: number } {
  for (const option of ['maxSegments', 'signal']) {
    if (option in options) throw StatefsError.ENOTSUP(`gc ${option} over the daemon: bound a cycle with maxBytes`, { op: 'gc' });
  }
  if (options.maxBytes === 0) throw StatefsError.EINVAL('gc maxBytes 0: use a whole number of bytes above 0', { op: 'gc' });
  if (options.maxBytes !== undefined && !(Number.isSafeInteger(options.maxBytes) && options.maxBytes > 0)) {
    throw StatefsError.EINVAL(`gc maxBytes ${String(options.maxBytes)}: use a whole number of bytes above 0`, { op: 'gc' });
  }
  return options.maxBytes === undefined ? {} : { maxBytes: options.maxBytes };
}

/** The Store API over a daemon connection: same method names, argument order and error codes. */
export class Client {
  readonly #wire: WireConnection;
  /** The subject the token authenticated as. */
  readonly subject: string;
  /** The number of the last transaction begun on this connection (the daemon wants them increasing). */
  #lastTxn = 0;

  private constructor(wire: WireConnection, subject: string) {
    this.#wire = wire;
    this.subject = subject;
  }

  static async connect(options: ConnectOptions): Promise<Client> {
    const { socket, host, port } = options;
    // Checked here, before any connection: unchecked, a missing token failed in the HELLO encoder
    // as "a name must be a string". The client reads no environment (the CLI reads STATEFS_TOKEN).
    const token: unknown = options.token;
    if (token === undefined || token === '') {
      throw StatefsError.EINVAL('connect: no token given (pass { token }, e.g. { token: process.env.STATEFS_TOKEN })', { op: 'connect' });
    }
    if (typeof token !== 'string') throw StatefsError.EINVAL(`connect: the token must be a string, not ${typeof token}`, { op: 'connect' });
    const target = socket ?? (host !== undefined && port !== undefined ? { host, port } : undefined);
    if (target === undefined || (socket !== undefined && (host !== undefined || port !== undefined))) {
      throw StatefsError.EINVAL('connect needs either socket or host and port', { op: 'connect' });
    }
    const wire = await WireConnection.open(target);
    try {
      const hello = expect(await wire.request({ op: 'HELLO', token }), 'HELLO');
      return new Client(wire, hello.subject);
    } catch (err) {
      await wire.close();
      throw err;
    }
  }

  async #call<O extends OkResponse['op']>(req: Outgoing & { op: O }): Promise<Ok<O>> {
    return expect(await this.#wire.request(req), req.op);
  }

  async put(subject: string, key: string, value: Uint8Array | string): Promise<void> {
    // The type here (an array would be stored as bytes); the size is the daemon's to refuse.
    await this.#call({ op: 'PUT', subject, key, value: valueBytes(value, 'put', subject, key) });
  }

  /**
   * `Store.putMany` over the socket: one PUT_MANY request, which the daemon checks whole and
   * writes as one append, durable when it resolves, as the embedded call. The names and sizes of
   * every entry are checked here first (keys under `/mnt/` excepted: the daemon knows the
   * mounts), so such a refusal writes nothing whatever the batch's size. A batch over one request (1 MiB, or 1,024 entries) goes as several, one after another,
   * each checked whole by the daemon: when one is refused (tree rules, quota, space), those
   * before it are written and none after it is sent.
   */
  async putMany(subject: string, entries: Iterable<readonly [key: string, value: Uint8Array | string]>): Promise<void> {
    const op = 'putMany';
    checkSubject(subject, op);
    const batches: PutManyEntry[][] = [];
    let batch: PutManyEntry[] = [];
    const empty = putManyBodyBytes(subject, []);
    let bytes = empty;
    for (const [key, value] of entries) {
      if (!isMountKey(key)) checkKey(key, op, subject); // under /mnt/ the daemon knows the mounts: EROFS or EINVAL
      const bytesOf = toValue(value, op, subject, key);
      const adds = putManyEntryBytes(key, bytesOf);
      if (batch.length > 0 && (bytes + adds > MAX_REQUEST_BODY || batch.length >= MAX_PUT_MANY_ENTRIES)) {
        batches.push(batch);
        batch = [];
        bytes = empty;
      }
      batch.push({ key, value: bytesOf });
      bytes += adds;
    }
    batches.push(batch); // an empty batch too: the daemon checks the store, as the embedded call
    // One after another: a later batch must not land before an earlier one (a key in both keeps its last value).
    for (const b of batches) await this.#call({ op: 'PUT_MANY', subject, entries: b });
  }

  async get(subject: string, key: string): Promise<Uint8Array | undefined> {
    return (await this.#call({ op: 'GET', subject, key })).value;
  }

  async delete(subject: string, key: string): Promise<void> {
    await this.#call({ op: 'DELETE', subject, key });
  }

  async list(subject: string, prefix: string = KEY_ROOT, options: ListOptions = {}): Promise<ListPage> {
    // 0 means the default page on the wire; the embedded store refuses it.
    if (options.limit === 0) throw StatefsError.EINVAL('limit 0: use 1 to 10000', { op: 'list', subject });
    const extra = { ...(options.limit === undefined ? {} : { limit: options.limit }), ...(options.after === undefined ? {} : { after: options.after }) };
    return (await this.#call({ op: 'LIST', subject, prefix, ...extra })).page;
  }

  async sync(): Promise<void> {
    await this.#call({ op: 'SYNC' });
  }

  /**
   * Start a transaction held by the daemon (see `ClientTxn`). Like `Store.begin` it returns at
   * once; a refusal (`EAGAIN` at the open-transaction limit) comes from its first op.
   */
  begin(subject: string): ClientTxn {
    if (this.#lastTxn >= MAX_TXN_NUMBER) throw StatefsError.EAGAIN('this connection has used every transaction number: connect again', { op: 'begin', subject });
    this.#lastTxn += 1;
    return new ClientTxn(subject, this.#lastTxn, (req) => this.#call(req));
  }

  async snapshot(subject: string, name: string): Promise<void> {
    await this.#call({ op: 'SNAPSHOT', subject, name });
  }

  listSnaps(subject: string): Promise<string[]>;
  listSnaps(subject: string, options: { details: true }): Promise<SnapshotInfo[]>;
  async listSnaps(subject: string, options?: { details?: boolean }): Promise<string[] | SnapshotInfo[]> {
    const res = await this.#call({ op: 'LIST_SNAPS', subject, details: options?.details === true });
    return res.details ? res.infos : res.names;
  }

  async deleteSnap(subject: string, name: string): Promise<void> {
    await this.#call({ op: 'DELETE_SNAP', subject, name });
  }

  async restoreSnap(subject: string, name: string): Promise<void> {
    await this.#call({ op: 'RESTORE_SNAP', subject, name });
  }

  async diffSnaps(subject: string, a: string, b: string): Promise<SnapshotDiff> {
    return (await this.#call({ op: 'DIFF_SNAPS', subject, a, b })).diff;
  }

  async verifySnapshot(subject: string, name: string): Promise<string> {
    return (await this.#call({ op: 'VERIFY_SNAP', subject, name })).digest;
  }

  async mountSnap(caller: string, owner: string, name: string, mountPath: string): Promise<void> {
    await this.#call({ op: 'MOUNT', caller, owner, name, path: mountPath });
  }

  async umount(caller: string, mountPath: string): Promise<void> {
    await this.#call({ op: 'UMOUNT', caller, path: mountPath });
  }

  async listMounts(caller: string): Promise<MountInfo[]> {
    return (await this.#call({ op: 'LIST_MOUNTS', caller })).mounts;
  }

  async gcNow(options: { maxBytes?: number } = {}): Promise<GcResult> {
    return (await this.#call({ op: 'GC_NOW', ...gcBody(options) })).result;
  }

  async gcPlan(options: { maxBytes?: number } = {}): Promise<WireGcPlan> {
    return (await this.#call({ op: 'GC_PLAN', ...gcBody(options) })).plan;
  }

  async stat(): Promise<StoreStat> {
    return (await this.#call({ op: 'STAT' })).stat;
  }

  /** Admin: the daemon closes the image and replays it from the device. */
  async reopen(): Promise<void> {
    await this.#call({ op: 'REOPEN' });
  }

  close(): Promise<void> {
    return this.#wire.close();
  }

  /** `await using c = await connect(...)` closes the client at the end of the block, as a `Store`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Connect to a daemon and authenticate with `token` (EPERM for an unknown token). */
export function connect(options: ConnectOptions): Promise<Client> {
  return Client.connect(options);
}
