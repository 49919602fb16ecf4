import { ERROR_CODES, StatefsError, type ErrorCode } from '../../errors.js';
import { DEFAULT_MAX_FRAME, KIND_RESPONSE, frameWriter, sealFrame, type Frame } from './frame.js';
import type { OkResponse, Response } from './messages.js';
import { NO_OP, OP_NAMES, opByte, opName, type OpName } from './ops.js';
import {
  readGcPlan,
  readGcResult,
  readMountInfos,
  readSnapshotInfos,
  readStoreStat,
  writeGcPlan,
  writeGcResult,
  writeMountInfo,
  writeSnapshotInfo,
  writeStoreStat,
} from './records.js';
import { WireReader } from './wire-reader.js';
import type { WireWriter } from './wire-writer.js';

/*
 * Response bodies (after the frame header; primitives: wire-writer.ts, records: records.ts):
 *
 *   u16 status    0 = OK, else the wire number of the error code (src/errors.ts ERROR_CODES)
 *
 *   status != 0:  string code | string message      (code must match status, else EINVAL)
 *
 *   status = 0, by op:
 *   HELLO         string subject (the token's subject)
 *   GET, TXN_GET  flag present | bytes value (present only)
 *   LIST          list of string keys | opt string next
 *   LIST_SNAPS    flag details | list of string names (details = 0) or list of SnapshotInfo (details = 1)
 *   DIFF_SNAPS    list of string added | list of string removed | list of string changed
 *   VERIFY_SNAP   string digest (hex SHA-256)
 *   LIST_MOUNTS   list of MountInfo
 *   GC_NOW        GcResult
 *   GC_PLAN       GcPlan
 *   STAT          StoreStat (binary, not JSON)
 *   others        (empty)
 */
const STATUS_OK = 0;
const MAX_MESSAGE_CHARS = 1024;

function writeResult(w: WireWriter, res: OkResponse): void {
  switch (res.op) {
    case 'HELLO':
      w.str(res.subject);
      return;
    case 'GET':
    case 'TXN_GET':
      w.flag(res.value !== undefined);
      if (res.value !== undefined) w.bytes(res.value);
      return;
    case 'LIST':
      w.strList(res.page.keys).optStr(res.page.next);
      return;
    case 'LIST_SNAPS':
      w.flag(res.details);
      if (res.details) {
        w.u32(res.infos.length);
        for (const s of res.infos) writeSnapshotInfo(w, s);
      } else {
        w.strList(res.names);
      }
      return;
    case 'DIFF_SNAPS':
      w.strList(res.diff.added).strList(res.diff.removed).strList(res.diff.changed);
      return;
    case 'VERIFY_SNAP':
      w.str(res.digest);
      return;
    case 'LIST_MOUNTS':
      w.u32(res.mounts.length);
      for (const m of res.mounts) writeMountInfo(w, m);
      return;
    case 'GC_NOW':
      writeGcResult(w, res.result);
      return;
    case 'GC_PLAN':
      writeGcPlan(w, res.plan);
      return;
    case 'STAT':
      writeStoreStat(w, res.stat);
      return;
    case 'PUT':
    case 'DELETE':
    case 'SYNC':
    case 'TXN':
    case 'SNAPSHOT':
    case 'DELETE_SNAP':
    case 'RESTORE_SNAP':
    case 'MOUNT':
    case 'UMOUNT':
    case 'REOPEN':
    case 'TXN_BEGIN':
    case 'TXN_PUT':
    case 'TXN_DELETE':
    case 'TXN_COMMIT':
    case 'TXN_ABORT':
    case 'PUT_MANY':
      return;
  }
}

/** The message without the `CODE: ` prefix the StatefsError constructor adds, clipped to 1,024 characters. */
function bareMessage(err: StatefsError): string {
  const prefix = `${err.code}: `;
  const msg = err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
  const chars = Array.from(msg);
  return chars.length > MAX_MESSAGE_CHARS ? chars.slice(0, MAX_MESSAGE_CHARS).join('') : msg;
}

/** An error response's body: status (the wire number), code, message. */
function writeError(w: ReturnType<typeof frameWriter>, err: StatefsError): void {
  w.u16(err.errno).str(err.code).str(bareMessage(err));
}

/** Encodes a response frame. A result over `maxFrameSize` is EFBIG: answer with `errorResponse` instead. */
export function encodeResponse(res: Response, maxFrameSize = DEFAULT_MAX_FRAME): Uint8Array {
  // Sized for the common answers (a GET's value; an error's message), so the frame is built in one buffer.
  const w = frameWriter(res.status === 'error' ? 64 + res.error.message.length : res.op === 'GET' || res.op === 'TXN_GET' ? 8 + (res.value?.length ?? 0) : 53);
  if (res.status === 'error') {
    writeError(w, res.error);
  } else {
    w.u16(STATUS_OK);
    writeResult(w, res);
  }
  const op = res.op === undefined ? NO_OP : opByte(res.op);
  return sealFrame(w, KIND_RESPONSE, res.requestId, op, maxFrameSize);
}

/** The error frame answering `requestId` (0 and op undefined for a connection-level error). */
export function errorResponse(requestId: number, op: OpName | undefined, err: StatefsError): Uint8Array {
  return encodeResponse({ status: 'error', op, requestId, error: err });
}

/** The error frame answering a request frame as it came: its op byte echoed, whether or not an op has it. */
export function errorResponseToFrame(requestId: number, opByteReceived: number, err: StatefsError): Uint8Array {
  const w = frameWriter(64 + err.message.length);
  writeError(w, err);
  return sealFrame(w, KIND_RESPONSE, requestId, opByteReceived, DEFAULT_MAX_FRAME);
}

function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERROR_CODES, code);
}

function readError(r: WireReader, status: number, op: OpName | undefined): StatefsError {
  const code = r.str();
  const message = r.str();
  if (!isErrorCode(code) || ERROR_CODES[code] !== status) {
    throw StatefsError.EINVAL(`error status ${status} with code ${JSON.stringify(code)}`, { op: 'decode' });
  }
  return new StatefsError(code, message, op === undefined ? {} : { op });
}

function readResult(r: WireReader, requestId: number, op: OpName): OkResponse {
  const base = { status: 'ok', requestId } as const;
  switch (op) {
    case 'HELLO':
      return { ...base, op, subject: r.str() };
    case 'GET':
    case 'TXN_GET':
      // Literals, not spreads of `base`: the answer to every read is built here.
      return r.flag() ? { status: 'ok', requestId, op, value: r.bytes() } : { status: 'ok', requestId, op };
    case 'LIST': {
      const keys = r.strList();
      const next = r.optStr();
      return { ...base, op, page: next === undefined ? { keys } : { keys, next } };
    }
    case 'LIST_SNAPS':
      return r.flag() ? { ...base, op, details: true, infos: readSnapshotInfos(r) } : { ...base, op, details: false, names: r.strList() };
    case 'DIFF_SNAPS':
      return { ...base, op, diff: { added: r.strList(), removed: r.strList(), changed: r.strList() } };
    case 'VERIFY_SNAP':
      return { ...base, op, digest: r.str() };
    case 'LIST_MOUNTS':
      return { ...base, op, mounts: readMountInfos(r) };
    case 'GC_NOW':
      return { ...base, op, result: readGcResult(r) };
    case 'GC_PLAN':
      return { ...base, op, plan: readGcPlan(r) };
    case 'STAT':
      return { ...base, op, stat: readStoreStat(r) };
    case 'PUT':
    case 'DELETE':
    case 'SYNC':
    case 'TXN':
    case 'SNAPSHOT':
    case 'DELETE_SNAP':
    case 'RESTORE_SNAP':
    case 'MOUNT':
    case 'UMOUNT':
    case 'REOPEN':
    case 'TXN_BEGIN':
    case 'TXN_PUT':
    case 'TXN_DELETE':
    case 'TXN_COMMIT':
    case 'TXN_ABORT':
    case 'PUT_MANY':
      return { ...base, op };
  }
}

/** Decodes a response frame; an error status becomes a `StatefsError` with the same code. */
export function decodeResponse(frame: Frame): Response {
  if (frame.kind !== KIND_RESPONSE) throw StatefsError.EINVAL('a request frame where a response was expected', { op: 'decode' });
  const r = new WireReader(frame.body, 'response');
  const status = r.u16();
  // An error answers the op byte the request carried, which may name no op (an unknown op is
  // answered ENOTSUP with its byte echoed): `op` is then undefined, as for a connection-level error.
  const op = status === STATUS_OK ? opName(frame.op) : frame.op === NO_OP ? undefined : OP_NAMES[frame.op - 1];
  const res: Response = status === STATUS_OK && op !== undefined ? readResult(r, frame.requestId, op) : { status: 'error', op, requestId: frame.requestId, error: readError(r, status, op) };
  r.end();
  return res;
}
