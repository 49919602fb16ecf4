import { StatefsError } from '../errors.js';

/*
 * Naming rules (spec section 2). Keys are handled inside the engine as "binary strings": one
 * char per UTF-8 byte (latin1), so JS string order is bytewise order and `length` is the byte
 * length. The index key of a subject's key is `<subject> NUL <key bytes>`, which is also the key
 * field of its records.
 */
export const MAX_KEY_BYTES = 255;
export const MAX_NAME_BYTES = 64;
export const MAX_VALUE_BYTES = 65_536;
export const KEY_ROOT = '/state/';

const SUBJECT_RE = /^[a-z0-9][a-z0-9._-]*$/;

/** The last subject that passed `checkSubject`: callers name the same few subjects over and over. */
let lastGoodSubject: string | undefined;

export function checkSubject(subject: unknown, op: string): string {
  if (lastGoodSubject !== undefined && subject === lastGoodSubject) return lastGoodSubject;
  if (typeof subject !== 'string' || subject.length === 0) {
    throw StatefsError.EINVAL('subject must be a non-empty string', { op });
  }
  if (subject.length > MAX_NAME_BYTES) throw StatefsError.ENAMETOOLONG(`subject of ${subject.length} bytes (max ${MAX_NAME_BYTES})`, { op, subject });
  if (!SUBJECT_RE.test(subject)) {
    throw StatefsError.EINVAL(`subject ${JSON.stringify(subject)}: use 1-64 of [a-z0-9._-], starting with a letter or digit`, { op, subject });
  }
  lastGoodSubject = subject;
  return subject;
}

/** UTF-8 bytes of `s` as a binary string; `EINVAL` for strings that are not well-formed UTF-16. */
export function toBinary(s: string, what: string, op: string): string {
  if (isAscii(s)) return s; // the common case: ASCII is its own UTF-8
  if (!s.isWellFormed()) throw StatefsError.EINVAL(`${what} is not valid Unicode`, { op });
  return Buffer.from(s, 'utf8').toString('latin1');
}

export function fromBinary(b: string): string {
  return isAscii(b) ? b : Buffer.from(b, 'latin1').toString('utf8');
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}
/** An empty, `.` or `..` component, or a trailing slash. */
const NON_CANONICAL_RE = /\/\/|\/\.\.?(?:\/|$)|\/$/;

/**
 * Validate a key and return its binary form. Canonical paths only: under `root`, at most 255
 * bytes, no empty, `.` or `..` components, no trailing slash, no NUL.
 */
export function checkKey(key: unknown, op: string, subject: string, root = KEY_ROOT): string {
  if (typeof key === 'string' && isPlainCanonicalKey(key, root)) return key; // ASCII: its own binary form
  if (typeof key !== 'string') throw StatefsError.EINVAL('key must be a string', { op, subject });
  const bin = toBinary(key, 'key', op);
  if (bin.length > MAX_KEY_BYTES) throw StatefsError.ENAMETOOLONG(`key of ${bin.length} bytes (max ${MAX_KEY_BYTES})`, { op, subject, key });
  if (bin === root) {
    throw StatefsError.EINVAL(`key ${JSON.stringify(key)} has no name: a key needs one after ${root}, e.g. ${root}config`, { op, subject, key });
  }
  if (!bin.startsWith(root)) throw StatefsError.EINVAL(`key ${JSON.stringify(key)} must be a path under ${root}`, { op, subject, key });
  if (bin.includes('\0')) throw StatefsError.EINVAL('key contains NUL', { op, subject, key });
  if (NON_CANONICAL_RE.test(bin)) {
    throw StatefsError.EINVAL(`key ${JSON.stringify(key)} is not canonical (empty, . or .. component, or trailing /)`, { op, subject, key });
  }
  return bin;
}

/**
 * The common case of `checkKey` in one pass over the chars: an ASCII key under `root` (which
 * ends with `/`) of at most 255 bytes, with no NUL, no empty, `.` or `..` component and no
 * trailing slash. False sends the key through the full checks, which name what is wrong.
 */
function isPlainCanonicalKey(key: string, root: string): boolean {
  const n = key.length;
  if (n <= root.length || n > MAX_KEY_BYTES || !key.startsWith(root)) return false;
  let component = root.length; // where the current component starts
  for (let i = component; i <= n; i++) {
    const c = i === n ? SLASH : key.charCodeAt(i);
    if (c === 0 || c > 0x7f) return false;
    if (c !== SLASH) continue;
    const length = i - component;
    if (length === 0) return false; // an empty component, or a trailing slash
    if (length <= 2 && key.charCodeAt(component) === DOT && (length === 1 || key.charCodeAt(component + 1) === DOT)) return false;
    component = i + 1;
  }
  return true;
}

const SLASH = 0x2f;
const DOT = 0x2e;

/** A listing prefix: any string of at most 255 bytes without NUL that starts with `/`. */
export function checkPrefix(prefix: unknown, op: string, subject: string): string {
  if (typeof prefix !== 'string') throw StatefsError.EINVAL('prefix must be a string', { op, subject });
  const bin = toBinary(prefix, 'prefix', op);
  if (bin.length > MAX_KEY_BYTES) throw StatefsError.ENAMETOOLONG(`prefix of ${bin.length} bytes`, { op, subject });
  if (!bin.startsWith('/') || bin.includes('\0')) throw StatefsError.EINVAL(`prefix ${JSON.stringify(prefix)} must start with /`, { op, subject });
  return bin;
}

export function toValue(value: unknown, op: string, subject: string, key: string): Uint8Array {
  const bytes = valueBytes(value, op, subject, key);
  if (bytes.length > MAX_VALUE_BYTES) throw StatefsError.EFBIG(`value of ${bytes.length} bytes (max ${MAX_VALUE_BYTES})`, { op, subject, key });
  return bytes;
}

/** A value's bytes: a `Uint8Array` as it is, a string as UTF-8; anything else is `EINVAL`. */
export function valueBytes(value: unknown, op: string, subject: string, key: string): Uint8Array {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (value instanceof Uint8Array) return value;
  throw StatefsError.EINVAL('value must be a Uint8Array or a string', { op, subject, key });
}

/** Index key: subject, NUL, key bytes. */
export function indexKey(subject: string, binKey: string): string {
  return `${subject}\0${binKey}`;
}

/** Split an index key (`subject NUL key`) into subject and binary key; undefined if malformed. */
export function splitIndexKey(ik: string): [string, string] | undefined {
  const nul = ik.indexOf('\0');
  if (nul <= 0) return undefined;
  return [ik.slice(0, nul), ik.slice(nul + 1)];
}

/**
 * Split a record's key bytes (`subject NUL key`) into subject and binary key; undefined if
 * malformed. Both are decoded from the bytes as strings of their own: a key sliced out of the
 * whole index key would keep that string alive for as long as the key is indexed.
 */
export function splitRecordKey(key: Uint8Array): [string, string] | undefined {
  const nul = key.indexOf(0);
  if (nul <= 0) return undefined;
  const b = Buffer.from(key.buffer, key.byteOffset, key.byteLength);
  return [b.toString('latin1', 0, nul), b.toString('latin1', nul + 1)];
}

const SNAP_NAME_RE = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

/** Snapshot names and mount labels: 1–64 bytes of [A-Za-z0-9._-], not starting with `.`. */
export function checkSnapName(name: unknown, op: string, subject: string): string {
  if (typeof name !== 'string' || name.length === 0) throw StatefsError.EINVAL('snapshot name must be a non-empty string', { op, subject });
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) throw StatefsError.ENAMETOOLONG(`name of ${Buffer.byteLength(name)} bytes (max ${MAX_NAME_BYTES})`, { op, subject, name });
  if (!SNAP_NAME_RE.test(name)) {
    throw StatefsError.EINVAL(`name ${JSON.stringify(name)}: use [A-Za-z0-9._-], not starting with .`, { op, subject, name });
  }
  return name;
}

/** A mount path: `/mnt/<label>`, one component with the snapshot-name charset. */
export function checkMountPath(path: unknown, op: string, subject: string): string {
  if (typeof path !== 'string' || !path.startsWith('/mnt/')) {
    throw StatefsError.EINVAL(`mount path ${JSON.stringify(path)} must be /mnt/<label>`, { op, subject });
  }
  checkSnapName(path.slice('/mnt/'.length), op, subject);
  return path;
}
