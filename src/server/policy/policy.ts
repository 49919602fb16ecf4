/*
 * The daemon's policy: who may connect and what each caller may do (spec section 6). Described
 * for users in docs/storage/policy.md. The file is JSON:
 *
 *   {
 *     "version": 1,
 *     "subjects": {
 *       "<subject>": {
 *         "tokenSha256": "<64 lowercase hex: SHA-256 of the token's UTF-8 text>",
 *         "rights": ["read", "write", "snapshot", "mount", "gc", "admin"],
 *         "grants": [{ "owner": "<subject>", "rights": ["read", "mount"] }],
 *         "quota": { "soft": <bytes>, "hard": <bytes> }
 *       }
 *     }
 *   }
 *
 * - Subject names follow the engine rule (`checkSubject`). `grants` and `quota` may be left out.
 * - A token is 32 random bytes shown as base64url (43 characters); only its SHA-256 is stored.
 *   Plain SHA-256 is enough because tokens are high-entropy random secrets, not passwords: there
 *   is no dictionary to try and 2^256 guesses are out of reach, so a slow password hash would only
 *   slow down every connection. Hashes are compared with `crypto.timingSafeEqual`.
 * - `rights` are what the subject may do at all, on its own data. A grant in subject A's entry
 *   naming owner B lets A use the listed rights on B's data (`admin` cannot be granted); A must
 *   also hold each right itself. Everything else is denied.
 * - `quota` is in bytes: positive whole numbers with soft <= hard.
 * - Anything else (an unknown field, an unknown or repeated right, a bad hash, two subjects with
 *   the same token hash, another version) makes the whole file invalid: `EINVAL` naming the JSON
 *   path of the first problem.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { checkSubject } from '../../engine/names.js';
import { StatefsError } from '../../errors.js';

export const RIGHTS = ['read', 'write', 'snapshot', 'mount', 'gc', 'admin'] as const;
export type Right = (typeof RIGHTS)[number];
/** What a grant may pass on: every right but `admin`, which is never about one owner's data. */
export const GRANT_RIGHTS: readonly Right[] = RIGHTS.filter((r) => r !== 'admin');

export const POLICY_VERSION = 1;
const TOKEN_BYTES = 32;
const HEX_HASH_RE = /^[0-9a-f]{64}$/;
const OP = 'policy';

export interface Grant {
  owner: string;
  rights: Right[];
}

export interface Quota {
  soft: number;
  hard: number;
}

export interface SubjectPolicy {
  tokenSha256: string;
  rights: Right[];
  grants: Grant[];
  quota?: Quota;
}

export interface Policy {
  version: typeof POLICY_VERSION;
  /** A Map, not a plain object: subject names such as `constructor` must not meet Object.prototype. */
  subjects: Map<string, SubjectPolicy>;
}

export function emptyPolicy(): Policy {
  return { version: POLICY_VERSION, subjects: new Map() };
}

/** A fresh token: 32 random bytes as base64url. Show it once; store only `hashToken(token)`. */
export function newToken(): string {
  return randomBytes(TOKEN_BYTES).toString('base64url');
}

/** SHA-256 of the token's UTF-8 text, as 64 lowercase hex digits. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** The subject whose token this is, or undefined. Every subject is compared, in constant time each. */
export function authenticate(policy: Policy, token: string): string | undefined {
  const presented = createHash('sha256').update(token, 'utf8').digest();
  let found: string | undefined;
  for (const [subject, entry] of policy.subjects) {
    const stored = Buffer.from(entry.tokenSha256, 'hex');
    if (stored.length === presented.length && timingSafeEqual(stored, presented) && found === undefined) found = subject;
  }
  return found;
}

/**
 * Deny by default: the caller must be a subject holding `right`, and a target other than the
 * caller needs a grant from the caller's entry naming that owner and covering `right`.
 */
export function allows(policy: Policy, caller: string, right: Right, target?: string): boolean {
  const entry = policy.subjects.get(caller);
  if (entry?.rights.includes(right) !== true) return false;
  if (target === undefined || target === caller) return true;
  return entry.grants.some((g) => g.owner === target && g.rights.includes(right));
}

/** A quota to store: positive whole bytes, soft <= hard (`EINVAL` otherwise). */
export function checkQuota(soft: number, hard: number, where = 'quota'): Quota {
  for (const [name, n] of [['soft', soft], ['hard', hard]] as const) {
    if (!Number.isSafeInteger(n) || n <= 0) throw invalid(`${where}.${name}`, 'must be a positive whole number of bytes');
  }
  if (soft > hard) throw invalid(where, `soft (${soft}) is above hard (${hard})`);
  return { soft, hard };
}

/* ---------------------------------------------------------------- validation of parsed JSON */

function invalid(path: string, problem: string): StatefsError {
  return StatefsError.EINVAL(`policy ${path}: ${problem}`, { op: OP });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const IDENT_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
function child(path: string, name: string): string {
  return IDENT_RE.test(name) ? `${path}.${name}` : `${path}[${JSON.stringify(name)}]`;
}

function objectAt(value: unknown, path: string, required: readonly string[], optional: readonly string[]): Record<string, unknown> {
  if (!isRecord(value)) throw invalid(path, 'must be an object');
  for (const name of Object.keys(value)) {
    if (!required.includes(name) && !optional.includes(name)) throw invalid(child(path, name), 'unknown field');
  }
  for (const name of required) {
    if (!Object.hasOwn(value, name)) throw invalid(child(path, name), 'missing');
  }
  return value;
}

function isRight(value: unknown): value is Right {
  return typeof value === 'string' && (RIGHTS as readonly string[]).includes(value);
}

function rightsAt(value: unknown, path: string, allowed: readonly Right[]): Right[] {
  if (!Array.isArray(value)) throw invalid(path, 'must be an array of rights');
  const rights: Right[] = [];
  value.forEach((item: unknown, i) => {
    const at = `${path}[${i}]`;
    if (!isRight(item) || !allowed.includes(item)) throw invalid(at, `${JSON.stringify(item)} is not one of ${allowed.join(', ')}`);
    if (rights.includes(item)) throw invalid(at, `${item} is listed twice`);
    rights.push(item);
  });
  return rights;
}

function subjectAt(value: unknown, path: string): string {
  try {
    return checkSubject(value, OP);
  } catch (err) {
    throw invalid(path, err instanceof Error ? err.message : String(err));
  }
}

function grantsAt(value: unknown, path: string, self: string): Grant[] {
  if (!Array.isArray(value)) throw invalid(path, 'must be an array');
  const grants: Grant[] = [];
  value.forEach((item: unknown, i) => {
    const at = `${path}[${i}]`;
    const g = objectAt(item, at, ['owner', 'rights'], []);
    const owner = subjectAt(g.owner, `${at}.owner`);
    if (owner === self) throw invalid(`${at}.owner`, 'a subject needs no grant for its own data');
    if (grants.some((other) => other.owner === owner)) throw invalid(`${at}.owner`, `a second grant for ${owner}`);
    grants.push({ owner, rights: rightsAt(g.rights, `${at}.rights`, GRANT_RIGHTS) });
  });
  return grants;
}

function quotaAt(value: unknown, path: string): Quota {
  const q = objectAt(value, path, ['soft', 'hard'], []);
  const soft = q.soft;
  const hard = q.hard;
  if (typeof soft !== 'number') throw invalid(`${path}.soft`, 'must be a number of bytes');
  if (typeof hard !== 'number') throw invalid(`${path}.hard`, 'must be a number of bytes');
  return checkQuota(soft, hard, path);
}

function subjectEntryAt(value: unknown, path: string, self: string): SubjectPolicy {
  const s = objectAt(value, path, ['tokenSha256', 'rights'], ['grants', 'quota']);
  const hash = s.tokenSha256;
  if (typeof hash !== 'string' || !HEX_HASH_RE.test(hash)) throw invalid(`${path}.tokenSha256`, 'must be 64 lowercase hex digits (a SHA-256)');
  const entry: SubjectPolicy = {
    tokenSha256: hash,
    rights: rightsAt(s.rights, `${path}.rights`, RIGHTS),
    grants: s.grants === undefined ? [] : grantsAt(s.grants, `${path}.grants`, self),
  };
  if (s.quota !== undefined) entry.quota = quotaAt(s.quota, `${path}.quota`);
  return entry;
}

/** Check a parsed policy document; `EINVAL` naming the JSON path of the first problem. */
export function parsePolicy(doc: unknown): Policy {
  const root = objectAt(doc, '$', ['version', 'subjects'], []);
  if (root.version !== POLICY_VERSION) throw invalid('$.version', `must be ${POLICY_VERSION}, not ${JSON.stringify(root.version)}`);
  const subjects = root.subjects;
  if (!isRecord(subjects)) throw invalid('$.subjects', 'must be an object');
  const policy = emptyPolicy();
  const owners = new Map<string, string>();
  for (const [name, value] of Object.entries(subjects)) {
    const path = child('$.subjects', name);
    const subject = subjectAt(name, path);
    const entry = subjectEntryAt(value, path, subject);
    const other = owners.get(entry.tokenSha256);
    if (other !== undefined) throw invalid(`${path}.tokenSha256`, `the same token hash as ${other}`);
    owners.set(entry.tokenSha256, subject);
    policy.subjects.set(subject, entry);
  }
  return policy;
}

/** The JSON document for a policy: subjects sorted by name, rights in canonical order. */
export function policyDocument(policy: Policy): unknown {
  const order = (rights: readonly Right[]): Right[] => RIGHTS.filter((r) => rights.includes(r));
  // fromEntries defines own properties, so no subject name can reach a prototype.
  const subjects = Object.fromEntries(
    [...policy.subjects.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, entry]) => [
        name,
        {
          tokenSha256: entry.tokenSha256,
          rights: order(entry.rights),
          grants: entry.grants.map((g) => ({ owner: g.owner, rights: order(g.rights) })),
          ...(entry.quota === undefined ? {} : { quota: { soft: entry.quota.soft, hard: entry.quota.hard } }),
        },
      ]),
  );
  return { version: policy.version, subjects };
}
