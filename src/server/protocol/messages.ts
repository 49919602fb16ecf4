import type { StatefsError } from '../../errors.js';
import type { GcPlan, GcResult } from '../../engine/compactor.js';
import type { ListPage, MountInfo, SnapshotDiff, SnapshotInfo, SnapshotPin, StoreStat } from '../../engine/store-types.js';
import type { OpName } from './ops.js';

/** Typed protocol messages. Wire layouts: request-codec.ts, response-codec.ts, docs/storage/protocol.md. */

interface Req<O extends OpName> {
  op: O;
  requestId: number;
}

export interface HelloRequest extends Req<'HELLO'> {
  token: string;
}
export interface KeyRequest<O extends 'GET' | 'DELETE'> extends Req<O> {
  subject: string;
  key: string;
}
export interface PutRequest extends Req<'PUT'> {
  subject: string;
  key: string;
  value: Uint8Array;
}
/** `Store.putMany` in one request: the batch is checked whole and written as one append. */
export interface PutManyRequest extends Req<'PUT_MANY'> {
  subject: string;
  entries: { key: string; value: Uint8Array }[];
}
export interface ListRequest extends Req<'LIST'> {
  subject: string;
  prefix: string;
  /** Absent = the store's default (sent as 0). */
  limit?: number;
  after?: string;
}
export interface TxnPut {
  type: 'put';
  key: string;
  value: Uint8Array;
}
export interface TxnDelete {
  type: 'delete';
  key: string;
}
export type TxnWireOp = TxnPut | TxnDelete;
/** A whole transaction in one request: the server commits all of it or nothing. */
export interface TxnRequest extends Req<'TXN'> {
  subject: string;
  ops: TxnWireOp[];
}
/**
 * An op of a transaction held by the daemon for this connection (TXN_BEGIN … TXN_COMMIT or
 * TXN_ABORT). `txn` is the client's number for it, unique on the connection; `subject` is the
 * transaction's subject (another one is `EXDEV`, as `Transaction`'s methods give).
 */
interface TxnOpRequest<O extends 'TXN_BEGIN' | 'TXN_COMMIT' | 'TXN_ABORT'> extends Req<O> {
  txn: number;
  subject: string;
}
export interface TxnKeyRequest<O extends 'TXN_DELETE' | 'TXN_GET'> extends Req<O> {
  txn: number;
  subject: string;
  key: string;
}
export interface TxnPutRequest extends Req<'TXN_PUT'> {
  txn: number;
  subject: string;
  key: string;
  value: Uint8Array;
}
export interface SnapRequest<O extends 'SNAPSHOT' | 'DELETE_SNAP' | 'RESTORE_SNAP' | 'VERIFY_SNAP'> extends Req<O> {
  subject: string;
  name: string;
}
export interface ListSnapsRequest extends Req<'LIST_SNAPS'> {
  subject: string;
  details: boolean;
}
export interface DiffSnapsRequest extends Req<'DIFF_SNAPS'> {
  subject: string;
  a: string;
  b: string;
}
export interface MountRequest extends Req<'MOUNT'> {
  caller: string;
  owner: string;
  name: string;
  path: string;
}
export interface UmountRequest extends Req<'UMOUNT'> {
  caller: string;
  path: string;
}
export interface ListMountsRequest extends Req<'LIST_MOUNTS'> {
  caller: string;
}
export interface GcRequest<O extends 'GC_NOW' | 'GC_PLAN'> extends Req<O> {
  /** Absent = the store's default (sent as 0). */
  maxBytes?: number;
}

export type Request =
  | HelloRequest
  | PutRequest
  | KeyRequest<'GET'>
  | KeyRequest<'DELETE'>
  | ListRequest
  | Req<'SYNC'>
  | TxnRequest
  | SnapRequest<'SNAPSHOT'>
  | ListSnapsRequest
  | SnapRequest<'DELETE_SNAP'>
  | SnapRequest<'RESTORE_SNAP'>
  | DiffSnapsRequest
  | SnapRequest<'VERIFY_SNAP'>
  | MountRequest
  | UmountRequest
  | ListMountsRequest
  | GcRequest<'GC_NOW'>
  | GcRequest<'GC_PLAN'>
  | Req<'STAT'>
  | Req<'REOPEN'>
  | TxnOpRequest<'TXN_BEGIN'>
  | TxnPutRequest
  | TxnKeyRequest<'TXN_DELETE'>
  | TxnKeyRequest<'TXN_GET'>
  | TxnOpRequest<'TXN_COMMIT'>
  | TxnOpRequest<'TXN_ABORT'>
  | PutManyRequest;

interface Res<O extends OpName> {
  status: 'ok';
  op: O;
  requestId: number;
}

export interface HelloResponse extends Res<'HELLO'> {
  subject: string;
}
export interface GetResponse extends Res<'GET'> {
  /** Absent when the key does not exist. */
  value?: Uint8Array;
}
export interface TxnGetResponse extends Res<'TXN_GET'> {
  /** Absent when the key has no value in the transaction's view. */
  value?: Uint8Array;
}
export interface ListResponse extends Res<'LIST'> {
  page: ListPage;
}
export interface ListSnapNamesResponse extends Res<'LIST_SNAPS'> {
  details: false;
  names: string[];
}
export interface ListSnapInfosResponse extends Res<'LIST_SNAPS'> {
  details: true;
  infos: SnapshotInfo[];
}
export interface DiffSnapsResponse extends Res<'DIFF_SNAPS'> {
  diff: SnapshotDiff;
}
export interface VerifySnapResponse extends Res<'VERIFY_SNAP'> {
  digest: string;
}
export interface ListMountsResponse extends Res<'LIST_MOUNTS'> {
  mounts: MountInfo[];
}
export interface GcNowResponse extends Res<'GC_NOW'> {
  result: GcResult;
}
/** What `Store.gcPlan` returns. */
export interface WireGcPlan extends GcPlan {
  pinnedBySnapshots: SnapshotPin[];
}
export interface GcPlanResponse extends Res<'GC_PLAN'> {
  plan: WireGcPlan;
}
export interface StatResponse extends Res<'STAT'> {
  stat: StoreStat;
}

export type OkResponse =
  | HelloResponse
  | Res<'PUT'>
  | GetResponse
  | Res<'DELETE'>
  | ListResponse
  | Res<'SYNC'>
  | Res<'TXN'>
  | Res<'SNAPSHOT'>
  | ListSnapNamesResponse
  | ListSnapInfosResponse
  | Res<'DELETE_SNAP'>
  | Res<'RESTORE_SNAP'>
  | DiffSnapsResponse
  | VerifySnapResponse
  | Res<'MOUNT'>
  | Res<'UMOUNT'>
  | ListMountsResponse
  | GcNowResponse
  | GcPlanResponse
  | StatResponse
  | Res<'REOPEN'>
  | Res<'TXN_BEGIN'>
  | Res<'TXN_PUT'>
  | Res<'TXN_DELETE'>
  | TxnGetResponse
  | Res<'TXN_COMMIT'>
  | Res<'TXN_ABORT'>
  | Res<'PUT_MANY'>;

/** A failed request; `op` is undefined for connection-level errors (op byte 0, e.g. a bad frame). */
export interface ErrorResponse {
  status: 'error';
  op: OpName | undefined;
  requestId: number;
  error: StatefsError;
}

export type Response = OkResponse | ErrorResponse;
