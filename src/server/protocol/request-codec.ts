import { StatefsError } from '../../errors.js';
import { DEFAULT_MAX_FRAME, KIND_REQUEST, frameWriter, sealFrame, type Frame } from './frame.js';
import type { PutManyRequest, Request, TxnWireOp } from './messages.js';
import { opByte, opName } from './ops.js';
import { WireReader } from './wire-reader.js';
import type { WireWriter } from './wire-writer.js';

/*
 * Request bodies (after the frame header; primitives: wire-writer.ts):
 *
 *   HELLO         string token
 *   PUT           string subject | string key | bytes value
 *   GET, DELETE   string subject | string key
 *   LIST          string subject | string prefix | u32 limit (0 = default) | opt string after
 *   SYNC          (empty)
 *   TXN           string subject | list of TxnOp
 *                 TxnOp: u8 type (1 = put, 2 = delete) | string key | bytes value (put only)
 *   SNAPSHOT, DELETE_SNAP, RESTORE_SNAP, VERIFY_SNAP
 *                 string subject | string name
 *   LIST_SNAPS    string subject | flag details
 *   DIFF_SNAPS    string subject | string a | string b
 *   MOUNT         string caller | string owner | string name | string path
 *   UMOUNT        string caller | string path
 *   LIST_MOUNTS   string caller
 *   GC_NOW, GC_PLAN
 *                 u64 max_bytes (0 = default)
 *   STAT, REOPEN  (empty)
 *   TXN_BEGIN, TXN_COMMIT, TXN_ABORT
 *                 u32 txn | string subject
 *   TXN_PUT       u32 txn | string subject | string key | bytes value
 *   TXN_DELETE, TXN_GET
 *                 u32 txn | string subject | string key
 *   PUT_MANY      string subject | u32 count | count × (string key | bytes value)
 *
 * The body must be consumed exactly; trailing bytes are EINVAL.
 */
const TXN_PUT = 1;
const TXN_DELETE = 2;

function writeBody(w: WireWriter, req: Request): void {
  switch (req.op) {
    case 'HELLO':
      w.str(req.token);
      return;
    case 'PUT':
      w.str(req.subject).str(req.key).bytes(req.value);
      return;
    case 'GET':
    case 'DELETE':
      w.str(req.subject).str(req.key);
      return;
    case 'LIST':
      w.str(req.subject).str(req.prefix).u32(req.limit ?? 0).optStr(req.after);
      return;
    case 'TXN':
      w.str(req.subject).u32(req.ops.length);
      for (const op of req.ops) {
        if (op.type === 'put') w.u8(TXN_PUT).str(op.key).bytes(op.value);
        else w.u8(TXN_DELETE).str(op.key);
      }
      return;
    case 'SNAPSHOT':
    case 'DELETE_SNAP':
    case 'RESTORE_SNAP':
    case 'VERIFY_SNAP':
      w.str(req.subject).str(req.name);
      return;
    case 'LIST_SNAPS':
      w.str(req.subject).flag(req.details);
      return;
    case 'DIFF_SNAPS':
      w.str(req.subject).str(req.a).str(req.b);
      return;
    case 'MOUNT':
      w.str(req.caller).str(req.owner).str(req.name).str(req.path);
      return;
    case 'UMOUNT':
      w.str(req.caller).str(req.path);
      return;
    case 'LIST_MOUNTS':
      w.str(req.caller);
      return;
    case 'GC_NOW':
    case 'GC_PLAN':
      w.u64(req.maxBytes ?? 0);
      return;
    case 'SYNC':
    case 'STAT':
    case 'REOPEN':
      return;
    case 'TXN_BEGIN':
    case 'TXN_COMMIT':
    case 'TXN_ABORT':
      w.u32(req.txn).str(req.subject);
      return;
    case 'TXN_PUT':
      w.u32(req.txn).str(req.subject).str(req.key).bytes(req.value);
      return;
    case 'TXN_DELETE':
    case 'TXN_GET':
      w.u32(req.txn).str(req.subject).str(req.key);
      return;
    case 'PUT_MANY':
      w.str(req.subject).u32(req.entries.length);
      for (const e of req.entries) w.str(e.key).bytes(e.value);
      return;
  }
}

/** A guess at the body's size that fits the common requests, so the frame is built in one buffer. */
function bodyBytesOf(req: Request): number {
  switch (req.op) {
    case 'PUT':
      return 8 + req.subject.length + req.key.length + req.value.length;
    case 'TXN_PUT':
      return 12 + req.subject.length + req.key.length + req.value.length;
    case 'PUT_MANY':
      return putManyBodyBytes(req.subject, req.entries);
    case 'GET':
    case 'DELETE':
      return 4 + req.subject.length + req.key.length;
    default:
      return 64;
  }
}

/**
 * Entries of one PUT_MANY: the daemon refuses more (`EFBIG`), so one request holds its event loop
 * for milliseconds, not the ~0.5 s of a frame full of tiny entries (~64,000). The client splits.
 */
export const MAX_PUT_MANY_ENTRIES = 1024;

/** The exact body size of a PUT_MANY (keys counted as UTF-8): the client splits batches by it. */
export function putManyBodyBytes(subject: string, entries: readonly { key: string; value: Uint8Array }[]): number {
  let n = 2 + Buffer.byteLength(subject) + 4;
  for (const e of entries) n += putManyEntryBytes(e.key, e.value);
  return n;
}

/** What one entry adds to a PUT_MANY body. */
export function putManyEntryBytes(key: string, value: Uint8Array): number {
  return 2 + Buffer.byteLength(key) + 4 + value.length;
}

export function encodeRequest(req: Request, maxFrameSize = DEFAULT_MAX_FRAME): Uint8Array {
  const w = frameWriter(bodyBytesOf(req));
  writeBody(w, req);
  return sealFrame(w, KIND_REQUEST, req.requestId, opByte(req.op), maxFrameSize);
}

function readTxnOps(r: WireReader): TxnWireOp[] {
  const n = r.count(3);
  const ops: TxnWireOp[] = [];
  for (let i = 0; i < n; i++) {
    const type = r.u8();
    if (type === TXN_PUT) ops.push({ type: 'put', key: r.str(), value: r.bytes() });
    else if (type === TXN_DELETE) ops.push({ type: 'delete', key: r.str() });
    else throw StatefsError.EINVAL(`transaction op type ${type}`, { op: 'decode' });
  }
  return ops;
}

function readBody(r: WireReader, requestId: number, op: number): Request {
  const name = opName(op);
  switch (name) {
    case 'HELLO':
      return { op: name, requestId, token: r.str() };
    case 'PUT':
      return { op: name, requestId, subject: r.str(), key: r.str(), value: r.bytes() };
    case 'GET':
    case 'DELETE':
      return { op: name, requestId, subject: r.str(), key: r.str() };
    case 'LIST': {
      const subject = r.str();
      const prefix = r.str();
      const limit = r.u32();
      const after = r.optStr();
      const req = { op: name, requestId, subject, prefix };
      const withLimit = limit === 0 ? req : { ...req, limit };
      return after === undefined ? withLimit : { ...withLimit, after };
    }
    case 'TXN':
      return { op: name, requestId, subject: r.str(), ops: readTxnOps(r) };
    case 'SNAPSHOT':
    case 'DELETE_SNAP':
    case 'RESTORE_SNAP':
    case 'VERIFY_SNAP':
      return { op: name, requestId, subject: r.str(), name: r.str() };
    case 'LIST_SNAPS':
      return { op: name, requestId, subject: r.str(), details: r.flag() };
    case 'DIFF_SNAPS':
      return { op: name, requestId, subject: r.str(), a: r.str(), b: r.str() };
    case 'MOUNT':
      return { op: name, requestId, caller: r.str(), owner: r.str(), name: r.str(), path: r.str() };
    case 'UMOUNT':
      return { op: name, requestId, caller: r.str(), path: r.str() };
    case 'LIST_MOUNTS':
      return { op: name, requestId, caller: r.str() };
    case 'GC_NOW':
    case 'GC_PLAN': {
      const maxBytes = r.u64();
      return maxBytes === 0 ? { op: name, requestId } : { op: name, requestId, maxBytes };
    }
    case 'SYNC':
    case 'STAT':
    case 'REOPEN':
      return { op: name, requestId };
    case 'TXN_BEGIN':
    case 'TXN_COMMIT':
    case 'TXN_ABORT':
      return { op: name, requestId, txn: r.u32(), subject: r.str() };
    case 'TXN_PUT':
      return { op: name, requestId, txn: r.u32(), subject: r.str(), key: r.str(), value: r.bytes() };
    case 'TXN_DELETE':
    case 'TXN_GET':
      return { op: name, requestId, txn: r.u32(), subject: r.str(), key: r.str() };
    case 'PUT_MANY': {
      const subject = r.str();
      const entries: PutManyRequest['entries'] = [];
      for (let n = r.count(6); n > 0; n--) entries.push({ key: r.str(), value: r.bytes() });
      return { op: name, requestId, subject, entries };
    }
  }
}

/** Decodes a request frame; anything malformed is EINVAL, an unknown op ENOTSUP. */
export function decodeRequest(frame: Frame): Request {
  if (frame.kind !== KIND_REQUEST) throw StatefsError.EINVAL('a response frame where a request was expected', { op: 'decode' });
  const r = new WireReader(frame.body, 'request');
  const req = readBody(r, frame.requestId, frame.op);
  r.end();
  return req;
}
