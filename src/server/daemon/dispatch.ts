import type { Store } from '../../engine/store.js';
import type { ListOptions } from '../../engine/store-types.js';
import type { OkResponse, Request, TxnRequest } from '../protocol/messages.js';

/** What a request runs against: the served store (shared; see ImageGate), and the admin-only reopen. */
export interface DispatchHost {
  use<T>(fn: (store: Store) => Promise<T>): Promise<T>;
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
export function getNow(host: DispatchHost, req: Extract<Request, { op: 'GET' }>): OkResponse | undefined {
  const store = host.ready();
  if (store === undefined) return undefined;
  return getAnswer(req, store.getSync(req.subject, req.key));
}

function getAnswer(req: Extract<Request, { op: 'GET' }>, value: Uint8Array | undefined): OkResponse {
  const ok = { status: 'ok', requestId: req.requestId, op: req.op } as const;
  return value === undefined ? ok : { ...ok, value };
}

/** Runs one authorised request against the store and builds its OK response. */
export async function execute(host: DispatchHost, req: Exclude<Request, { op: 'HELLO' }>): Promise<OkResponse> {
  if (req.op === 'REOPEN') {
    await host.reopen();
    return { status: 'ok', requestId: req.requestId, op: req.op };
  }
  return host.use((store) => run(store, req));
}

async function run(store: Store, req: Exclude<Request, { op: 'HELLO' | 'REOPEN' }>): Promise<OkResponse> {
  const { requestId } = req;
  const ok = { status: 'ok', requestId } as const;
  switch (req.op) {
    case 'PUT':
      await store.put(req.subject, req.key, req.value);
      return { ...ok, op: req.op };
    case 'GET':
      return getAnswer(req, await store.get(req.subject, req.key));
    case 'DELETE':
      await store.delete(req.subject, req.key);
      return { ...ok, op: req.op };
    case 'LIST': {
      const options: ListOptions = {
        ...(req.limit === undefined || req.limit === 0 ? {} : { limit: req.limit }),
        ...(req.after === undefined ? {} : { after: req.after }),
      };
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
  }
}
