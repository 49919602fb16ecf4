import type { Store } from '../../engine/store.js';
import type { ListOptions } from '../../engine/store-types.js';
import type { OkResponse, Request, TxnRequest } from '../protocol/messages.js';
import { StatefsError } from '../../errors.js';
import { MAX_PUT_MANY_ENTRIES } from '../protocol/request-codec.js';
import type { ConnectionTxns } from './connection-txns.js';

/** What a request runs against: the served store (shared; see ImageGate), and the admin-only reopen. */
export interface DispatchHost {
  use<T>(fn: (store: Store) => Promise<T>): Promise<T>;
  /** `use` at once while the store is ready (see ImageGate.useNow); undefined otherwise. */
  useNow<T>(fn: (store: Store) => Promise<T>): Promise<T> | undefined;
  /** The store, when a request may use it synchronously (open, no reopen under way). */
  ready(): Store | undefined;
  reopen(): Promise<void>;
}

async function runTxn(store: Store, req: TxnRequest): Promise<void> {
  const txn = store.begin(req.subject);
  try {
    for (const op of req.ops) {
      if (op.type === 'put') await txn.put(req.subject, op.key, op.value);
      else await txn.delete(req.subject, op.key);
    }
    await txn.commit();
  } catch (err) {
    await txn.abort().catch(() => undefined);
    throw err;
  }
}

function gcOptions(maxBytes: number | undefined): { maxBytes?: number } {
  return maxBytes === undefined || maxBytes === 0 ? {} : { maxBytes };
}

/**
 * A GET answered on the spot: the read is served from memory (`getSync`), so while the store is
 * ready it needs no promise, no gate and no in-flight slot. `undefined`: take the ordinary path.
 */
export function getNow(host: DispatchHost, req: Extract<Request, { op: 'GET' }>, mayRead: MayRead): OkResponse | undefined {
  const store = host.ready();
  if (store === undefined) return undefined;
  checkMountRead(store, req.subject, req.key, mayRead, req.op);
  return getAnswer(req, store.getSync(req.subject, req.key));
}

/** Whether the connection's subject may read `owner`'s data (the policy in force now). */
export type MayRead = (owner: string) => boolean;

/**
 * A read under `/mnt/` reaches the snapshot of the mount's owner: the reader needs the right to
 * read that owner too, not only the subject whose mount it is (spec 2: subjects see each other's
 * data only where a grant says so). Checked in the same turn as the read, against the mount
 * there then.
 */
function checkMountRead(store: Store, subject: string, key: string, mayRead: MayRead, op: string): void {
  const owner = store.mountOwner(subject, key);
  if (owner !== undefined && !mayRead(owner)) throw StatefsError.EPERM(`reading ${owner}'s snapshot mounted at ${key} needs a read grant on ${owner}`, { op, subject, key });
}

function getAnswer(req: Extract<Request, { op: 'GET' }>, value: Uint8Array | undefined): OkResponse {
  return value === undefined ? { status: 'ok', requestId: req.requestId, op: req.op } : { status: 'ok', requestId: req.requestId, op: req.op, value };
}

/**
 * Runs one authorised request against the store and builds its OK response. `txns`: the
 * transactions of the connection that sent it. Up to its first await, the store (or the
 * transaction) is called synchronously, so the requests of a connection reach the store in the
 * order they were read: pipelined TXN_PUTs land before the TXN_COMMIT behind them.
 */
export async function execute(host: DispatchHost, req: Exclude<Request, { op: 'HELLO' }>, txns: ConnectionTxns, mayRead: MayRead, stillAllowed: () => boolean): Promise<OkResponse> {
  if (req.op === 'REOPEN') {
    await host.reopen();
    return { status: 'ok', requestId: req.requestId, op: req.op };
  }
  return host.use((store) => {
    // Checked again when the store takes it: a request that waited (behind a REOPEN) must not
    // run after a reload took its rights or its token away (a review saw one land).
    if (!stillAllowed()) throw StatefsError.EPERM('the policy changed while the request waited: no longer allowed', { op: req.op });
    return run(store, req, txns, mayRead);
  });
}

async function run(store: Store, req: Exclude<Request, { op: 'HELLO' | 'REOPEN' }>, txns: ConnectionTxns, mayRead: MayRead): Promise<OkResponse> {
  const { requestId } = req;
  const ok = { status: 'ok', requestId } as const;
  switch (req.op) {
    case 'PUT':
      await store.put(req.subject, req.key, req.value);
      return { ...ok, op: req.op };
    case 'GET':
      checkMountRead(store, req.subject, req.key, mayRead, req.op);
      return getAnswer(req, await store.get(req.subject, req.key));
    case 'DELETE':
      await store.delete(req.subject, req.key);
      return { ...ok, op: req.op };
    case 'LIST': {
      const options: ListOptions = {
        ...(req.limit === undefined || req.limit === 0 ? {} : { limit: req.limit }),
        ...(req.after === undefined ? {} : { after: req.after }),
      };
      checkMountRead(store, req.subject, req.prefix, mayRead, req.op);
      return { ...ok, op: req.op, page: await store.list(req.subject, req.prefix, options) };
    }
    case 'SYNC':
      await store.sync();
      return { ...ok, op: req.op };
    case 'TXN':
      await runTxn(store, req);
      return { ...ok, op: req.op };
    case 'SNAPSHOT':
      await store.snapshot(req.subject, req.name);
      return { ...ok, op: req.op };
    case 'LIST_SNAPS':
      return req.details
        ? { ...ok, op: req.op, details: true, infos: await store.listSnaps(req.subject, { details: true }) }
        : { ...ok, op: req.op, details: false, names: await store.listSnaps(req.subject) };
    case 'DELETE_SNAP':
      await store.deleteSnap(req.subject, req.name);
      return { ...ok, op: req.op };
    case 'RESTORE_SNAP':
      await store.restoreSnap(req.subject, req.name);
      return { ...ok, op: req.op };
    case 'DIFF_SNAPS':
      return { ...ok, op: req.op, diff: await store.diffSnaps(req.subject, req.a, req.b) };
    case 'VERIFY_SNAP':
      return { ...ok, op: req.op, digest: await store.verifySnapshot(req.subject, req.name) };
    case 'MOUNT':
      await store.mountSnap(req.caller, req.owner, req.name, req.path);
      return { ...ok, op: req.op };
    case 'UMOUNT':
      await store.umount(req.caller, req.path);
      return { ...ok, op: req.op };
    case 'LIST_MOUNTS':
      return { ...ok, op: req.op, mounts: await store.listMounts(req.caller) };
    case 'GC_NOW':
      return { ...ok, op: req.op, result: await store.gcNow(gcOptions(req.maxBytes)) };
    case 'GC_PLAN':
      return { ...ok, op: req.op, plan: await store.gcPlan(gcOptions(req.maxBytes)) };
    case 'STAT':
      return { ...ok, op: req.op, stat: await store.stat() };
    case 'TXN_BEGIN':
      txns.begin(store, req.txn, req.subject);
      return { ...ok, op: req.op };
    case 'TXN_PUT':
      await txns.of(req.txn, req.op).put(req.subject, req.key, req.value);
      return { ...ok, op: req.op };
    case 'TXN_DELETE':
      await txns.of(req.txn, req.op).delete(req.subject, req.key);
      return { ...ok, op: req.op };
    case 'TXN_GET': {
      const value = await txns.of(req.txn, req.op).get(req.subject, req.key);
      return value === undefined ? { ...ok, op: req.op } : { ...ok, op: req.op, value };
    }
    case 'TXN_COMMIT':
      await txns.commit(req.txn, req.subject);
      return { ...ok, op: req.op };
    case 'TXN_ABORT':
      await txns.abort(req.txn, req.subject);
      return { ...ok, op: req.op };
    case 'PUT_MANY':
      if (req.entries.length > MAX_PUT_MANY_ENTRIES) {
        throw StatefsError.EFBIG(`PUT_MANY of ${req.entries.length} entries: at most ${MAX_PUT_MANY_ENTRIES} per request`, { op: req.op, subject: req.subject });
      }
      await store.putMany(
        req.subject,
        req.entries.map((e): [string, Uint8Array] => [e.key, e.value]),
      );
      return { ...ok, op: req.op };
  }
}
