import { createHash } from 'node:crypto';
import { ERROR_CODES, StatefsError, type ErrorCode } from '../../errors.js';

/*
 * The audit log's line format (docs/storage/audit.md). One line is the JSON text of one record,
 * keys in the fixed order below, no whitespace, then "\n". `hash` is the SHA-256 of the line's
 * JSON without the `hash` field; `prev` is the SHA-256 of the previous line's exact bytes (without
 * its "\n"), or 64 zeros on the first line.
 */

export const ZERO_HASH = '0'.repeat(64);

/** A flat detail object: short identifier keys, scalar values. */
export type AuditDetail = string | Readonly<Record<string, string | number | boolean>>;

/** What the daemon records. `result` is 'OK' or the error code the request got. */
export interface AuditEvent {
  subject: string;
  op: string;
  target?: string;
  result: 'OK' | ErrorCode;
  detail?: AuditDetail;
}

/** The last line of a log: its sequence number and `hash` field (seq 0 and zeros when empty). */
export interface AuditHead {
  seq: number;
  hash: string;
}

/** What one line holds before its `hash` field, in canonical key order. */
interface AuditBody {
  seq: number;
  time: string;
  subject: string;
  op: string;
  target?: string;
  result: string;
  detail?: AuditDetail;
  prev: string;
}

const DETAIL_KEY_RE = /^[A-Za-z_][A-Za-z0-9_.-]*$/;
const HEX64_RE = /^[0-9a-f]{64}$/;
const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z$/;

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isResult(value: unknown): value is 'OK' | ErrorCode {
  return value === 'OK' || (typeof value === 'string' && Object.hasOwn(ERROR_CODES, value));
}

/** The detail in canonical form (keys sorted), or a description of what is wrong with it. */
function canonicalDetail(detail: unknown): AuditDetail | string[] {
  if (typeof detail === 'string') return detail;
  if (!isRecord(detail)) return ['detail must be a string or a flat object'];
  const out: Record<string, string | number | boolean> = {};
  for (const key of Object.keys(detail).sort()) {
    const value = detail[key];
    if (!DETAIL_KEY_RE.test(key)) return [`detail key ${JSON.stringify(key)} is not an identifier`];
    if (typeof value === 'string' || typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value))) out[key] = value;
    else return [`detail.${key} must be a string, a finite number or a boolean`];
  }
  return out;
}

/** The body in canonical key order, or what is wrong with a field. */
function canonicalBody(fields: Record<string, unknown>): AuditBody | string {
  const { seq, time, subject, op, target, result, detail, prev } = fields;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) return 'seq must be a positive integer';
  if (typeof time !== 'string' || !ISO_RE.test(time)) return 'time must be an ISO-8601 UTC timestamp';
  if (typeof subject !== 'string' || subject === '') return 'subject must be a non-empty string';
  if (typeof op !== 'string' || op === '') return 'op must be a non-empty string';
  if (target !== undefined && typeof target !== 'string') return 'target must be a string';
  if (!isResult(result)) return 'result must be OK or an error code';
  if (typeof prev !== 'string' || !HEX64_RE.test(prev)) return 'prev must be 64 lowercase hex digits';
  let canonical: AuditDetail | undefined;
  if (detail !== undefined) {
    const d = canonicalDetail(detail);
    if (Array.isArray(d)) return d[0] ?? 'bad detail';
    canonical = d;
  }
  // Spreads keep the canonical key order.
  const body: AuditBody = {
    seq,
    time,
    subject,
    op,
    ...(target === undefined ? {} : { target }),
    result,
    ...(canonical === undefined ? {} : { detail: canonical }),
    prev,
  };
  return body;
}

/** Build the next line (without "\n") for `event`; EINVAL when the event is malformed. */
export function formatLine(event: AuditEvent, seq: number, prev: string, time: Date): { line: string; hash: string } {
  const body = canonicalBody({ ...event, seq, time: time.toISOString(), prev });
  if (typeof body === 'string') throw StatefsError.EINVAL(`audit event: ${body}`, { op: 'audit' });
  const json = JSON.stringify(body);
  const hash = sha256Hex(json);
  return { line: JSON.stringify({ ...body, hash }), hash };
}

const KEY_ORDER = ['seq', 'time', 'subject', 'op', 'target', 'result', 'detail', 'prev', 'hash'];

/** The result of checking one complete log: its line count, head and where the complete lines end. */
export interface ScanResult {
  lines: number;
  head: AuditHead;
  /** sha256 of the last line's exact bytes: the next line's `prev`. */
  lastLineDigest: string;
  /** Byte length of the complete, newline-terminated lines; anything after is a torn tail. */
  completeBytes: number;
  /** The `hash` field of the line whose seq is `want`, when there is one. */
  wanted: string | undefined;
}

function fail(path: string, lineNo: number, what: string, offset: number): never {
  throw StatefsError.EINTEGRITY(`audit log ${path} line ${lineNo}: ${what}`, { op: 'audit verify', offset });
}

/**
 * Check every complete line of `data` (the chain: JSON, canonical form, own hash, seq, prev).
 * Throws EINTEGRITY naming the 1-based line. Bytes after the last "\n" are not checked here.
 */
export function scanAuditLog(path: string, data: Buffer, want?: number): ScanResult {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let offset = 0;
  let lineNo = 0;
  let head: AuditHead = { seq: 0, hash: ZERO_HASH };
  let lastLineDigest = ZERO_HASH;
  let wanted: string | undefined;
  for (;;) {
    const nl = data.indexOf(0x0a, offset);
    if (nl < 0) break;
    lineNo += 1;
    const bytes = data.subarray(offset, nl);
    let parsed: unknown;
    try {
      parsed = JSON.parse(decoder.decode(bytes));
    } catch {
      fail(path, lineNo, 'not valid JSON', offset);
    }
    if (!isRecord(parsed)) fail(path, lineNo, 'not a JSON object', offset);
    const keys = Object.keys(parsed);
    const order = KEY_ORDER.filter((k) => Object.hasOwn(parsed, k));
    if (keys.length !== order.length || keys.some((k, i) => order[i] !== k)) fail(path, lineNo, 'unexpected or misordered fields', offset);
    const body = canonicalBody(parsed);
    if (typeof body === 'string') fail(path, lineNo, body, offset);
    const hash = parsed.hash;
    if (typeof hash !== 'string' || !HEX64_RE.test(hash)) fail(path, lineNo, 'hash must be 64 lowercase hex digits', offset);
    const json = JSON.stringify(body);
    if (JSON.stringify({ ...body, hash }) !== bytes.toString('utf8')) fail(path, lineNo, 'not in canonical form', offset);
    if (sha256Hex(json) !== hash) fail(path, lineNo, 'hash mismatch (the line was edited)', offset);
    if (body.seq !== lineNo) {
      fail(path, lineNo, `seq ${body.seq} where ${lineNo} was expected (a line was removed, inserted or reordered)`, offset);
    }
    if (body.prev !== lastLineDigest) fail(path, lineNo, 'prev does not match the previous line (a line was removed, inserted or reordered)', offset);
    if (want === body.seq) wanted = hash;
    head = { seq: body.seq, hash };
    lastLineDigest = sha256Hex(bytes);
    offset = nl + 1;
  }
  return { lines: lineNo, head, lastLineDigest, completeBytes: offset, wanted };
}
