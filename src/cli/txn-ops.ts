import { StatefsError } from '../errors.js';

/*
 * The ops file of `statefs txn`: a JSON array of
 *   {"op":"put","key":"/state/a","value":"text"}   or   {"op":"put","key":"/state/a","valueBase64":"AAE="}
 *   {"op":"del","key":"/state/b"}
 * each with an optional "subject" (default: the command's subject). Nothing in the file is
 * trusted: the JSON is parsed as `unknown` and every field is checked here. Key and subject
 * *syntax* are left to the engine, which checks them again anyway.
 */

export type TxnFileOp = { op: 'put'; subject: string; key: string; value: Uint8Array } | { op: 'del'; subject: string; key: string };

const OP_FIELDS = {
  put: new Set(['op', 'subject', 'key', 'value', 'valueBase64']),
  del: new Set(['op', 'subject', 'key']),
} as const;

/** Canonical, padded base64 (what `statefs get --json` prints); Buffer's decoder alone would skip junk. */
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

const utf8 = new TextDecoder('utf-8', { fatal: true });

function invalid(source: string, what: string): StatefsError {
  return StatefsError.EINVAL(`${source}: ${what}`, { op: 'txn' });
}

/** Decode the bytes of an ops file, naming `source` in errors; `subject` is the default subject of each op. */
export function decodeTxnOps(bytes: Uint8Array, source: string, subject: string): TxnFileOp[] {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw invalid(source, 'not UTF-8 text');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw invalid(source, `not JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (!Array.isArray(parsed)) throw invalid(source, 'expected a JSON array of ops');
  const items: readonly unknown[] = parsed;
  return items.map((item, index) => decodeOp(item, `${source}: ops[${index}]`, subject));
}

function decodeOp(item: unknown, where: string, defaultSubject: string): TxnFileOp {
  if (typeof item !== 'object' || item === null || Array.isArray(item)) throw invalid(where, 'expected an object');
  const fields = new Map<string, unknown>(Object.entries(item));
  const op = fields.get('op');
  if (op !== 'put' && op !== 'del') {
    throw invalid(where, op === undefined ? 'missing "op" (use "put" or "del")' : `unknown op ${JSON.stringify(op)} (use "put" or "del")`);
  }
  for (const name of fields.keys()) {
    if (!OP_FIELDS[op].has(name)) throw invalid(where, `unexpected field ${JSON.stringify(name)} in a ${op}`);
  }
  const key = stringField(fields, 'key', where);
  if (key === undefined) throw invalid(where, 'missing "key"');
  const subject = stringField(fields, 'subject', where) ?? defaultSubject;
  if (op === 'del') return { op, subject, key };

  const text = stringField(fields, 'value', where);
  const base64 = stringField(fields, 'valueBase64', where);
  if (text !== undefined && base64 === undefined) return { op, subject, key, value: encodeText(text, where) };
  if (base64 !== undefined && text === undefined) return { op, subject, key, value: decodeBase64(base64, where) };
  throw invalid(where, 'a put needs exactly one of "value" and "valueBase64"');
}

/** The field's string, or undefined when absent; any other type is an error. */
function stringField(fields: ReadonlyMap<string, unknown>, name: string, where: string): string | undefined {
  const value = fields.get(name);
  if (value === undefined || typeof value === 'string') return value;
  throw invalid(where, `"${name}" must be a string, not ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}`);
}

function encodeText(text: string, where: string): Uint8Array {
  // JSON can carry lone surrogates ("\ud800"); UTF-8 encoding would silently replace them.
  if (!text.isWellFormed()) throw invalid(where, '"value" is not valid Unicode (use "valueBase64" for binary values)');
  return Buffer.from(text, 'utf8');
}

function decodeBase64(base64: string, where: string): Uint8Array {
  if (!BASE64_RE.test(base64)) throw invalid(where, '"valueBase64" is not valid base64');
  return Buffer.from(base64, 'base64');
}
