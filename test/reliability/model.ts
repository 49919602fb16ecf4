import { createHash } from 'node:crypto';
import type { Store } from '../../src/engine/store.js';

/**
 * The reference model of the reliability workloads: what every subject's live keys, every
 * snapshot and every mount must hold after each operation. States are immutable values; each
 * operation makes a new one, sharing what it did not change.
 */
export interface ModelState {
  /** subject → key → value. */
  live: ReadonlyMap<string, ReadonlyMap<string, Uint8Array>>;
  /** `subject/name` → the snapshot's content (its reference copy). */
  snaps: ReadonlyMap<string, ReadonlyMap<string, Uint8Array>>;
  /** `caller path` → `owner/name`. */
  mounts: ReadonlyMap<string, string>;
}

export const SUBJECTS = ['alpha', 'beta'] as const;
/** `beta` may mount `alpha`'s snapshots (each subject may mount its own). */
export const GRANTS = { beta: ['alpha'] };

export const EMPTY_STATE: ModelState = { live: new Map(), snaps: new Map(), mounts: new Map() };

/** What the recovered store holds, read through the public API. */
export interface Observed {
  live: Map<string, Map<string, Uint8Array>>;
  /** `subject/name` → hex content digest recomputed from the disk (`verifySnapshot`). */
  snapDigests: Map<string, string>;
  /** `caller path` → `owner/name <digest of what reads through the mount give>`. */
  mounts: Map<string, string>;
}

export async function observe(store: Store): Promise<Observed> {
  const live = new Map<string, Map<string, Uint8Array>>();
  const snapDigests = new Map<string, string>();
  const mounts = new Map<string, string>();
  for (const subject of SUBJECTS) {
    const keys = await readAll(store, subject, '/state/');
    if (keys.size > 0) live.set(subject, keys);
    for (const name of await store.listSnaps(subject)) snapDigests.set(`${subject}/${name}`, await store.verifySnapshot(subject, name));
    for (const m of await store.listMounts(subject)) {
      // What reads through the mount give, as the owner's keys: must be the snapshot's content.
      const content = await readAll(store, subject, `${m.path}/`);
      const asOwner = new Map([...content].map(([k, v]) => [`/state/${k.slice(m.path.length + 1)}`, v]));
      mounts.set(`${subject} ${m.path}`, `${m.owner}/${m.name} ${referenceDigest(asOwner)}`);
    }
  }
  return { live, snapDigests, mounts };
}

async function readAll(store: Store, subject: string, prefix: string): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  let after: string | undefined;
  do {
    const page = await store.list(subject, prefix, after === undefined ? { limit: 1000 } : { limit: 1000, after });
    for (const key of page.keys) {
      const value = await store.get(subject, key);
      if (value !== undefined) out.set(key, value);
    }
    after = page.next;
  } while (after !== undefined);
  return out;
}

const digestCache = new WeakMap<ReadonlyMap<string, Uint8Array>, string>();

/**
 * The content digest of docs/storage/statefs-v3.md §9.4, computed here from the reference copy
 * (not by the engine): SHA-256 over the entries in bytewise key order, each as
 * `key_len u16 LE | key | value_len u32 LE | value`.
 */
export function referenceDigest(content: ReadonlyMap<string, Uint8Array>): string {
  const cached = digestCache.get(content);
  if (cached !== undefined) return cached;
  const hash = createHash('sha256');
  const keys = [...content.keys()].map((k) => Buffer.from(k, 'utf8')).sort((a, b) => Buffer.compare(a, b));
  for (const key of keys) {
    const value = content.get(key.toString('utf8')) ?? new Uint8Array(0);
    const head = Buffer.alloc(6);
    head.writeUInt16LE(key.length, 0);
    hash.update(head.subarray(0, 2));
    hash.update(key);
    head.writeUInt32LE(value.length, 0);
    hash.update(head.subarray(0, 4));
    hash.update(value);
  }
  const hex = hash.digest('hex');
  digestCache.set(content, hex);
  return hex;
}

/**
 * Why `seen` is not an allowed recovery of an operation that was in flight between `before` and
 * `after`: the whole state must equal one of them, except that with `perKey` (concurrent
 * independent writes) each key may independently hold its old or its new value. `undefined` if
 * it is allowed.
 */
export function mismatch(seen: Observed, before: ModelState, after: ModelState, perKey: boolean): string | undefined {
  if (perKey) {
    const live = liveMismatchPerKey(seen, before, after);
    return live ?? metaMismatch(seen, after);
  }
  const asBefore = liveMismatch(seen, before) ?? metaMismatch(seen, before);
  if (asBefore === undefined || before === after) return asBefore;
  const asAfter = liveMismatch(seen, after) ?? metaMismatch(seen, after);
  return asAfter === undefined ? undefined : `neither the state before (${asBefore}) nor after (${asAfter}) the operation in flight`;
}

function same(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  return a === undefined || b === undefined ? a === b : Buffer.compare(a, b) === 0;
}

function liveMismatch(seen: Observed, state: ModelState): string | undefined {
  for (const subject of SUBJECTS) {
    const want = state.live.get(subject) ?? new Map<string, Uint8Array>();
    const got = seen.live.get(subject) ?? new Map<string, Uint8Array>();
    for (const [key, value] of want) if (!same(got.get(key), value)) return `${subject} ${key}: ${describe(got.get(key))}, expected ${describe(value)}`;
    for (const key of got.keys()) if (!want.has(key)) return `${subject} ${key}: present, expected absent`;
  }
  return undefined;
}

function liveMismatchPerKey(seen: Observed, before: ModelState, after: ModelState): string | undefined {
  for (const subject of SUBJECTS) {
    const b = before.live.get(subject) ?? new Map<string, Uint8Array>();
    const a = after.live.get(subject) ?? new Map<string, Uint8Array>();
    const got = seen.live.get(subject) ?? new Map<string, Uint8Array>();
    for (const key of new Set([...a.keys(), ...b.keys(), ...got.keys()])) {
      const v = got.get(key);
      if (!same(v, b.get(key)) && !same(v, a.get(key))) return `${subject} ${key}: ${describe(v)}, neither its old nor its new value`;
    }
  }
  return undefined;
}

function metaMismatch(seen: Observed, state: ModelState): string | undefined {
  for (const [id, content] of state.snaps) {
    const got = seen.snapDigests.get(id);
    if (got === undefined) return `snapshot ${id} missing`;
    if (got !== referenceDigest(content)) return `snapshot ${id} differs from its reference copy`;
  }
  for (const id of seen.snapDigests.keys()) if (!state.snaps.has(id)) return `snapshot ${id} present, expected absent`;
  for (const [at, target] of state.mounts) {
    const want = `${target} ${referenceDigest(state.snaps.get(target) ?? new Map<string, Uint8Array>())}`;
    if (seen.mounts.get(at) !== want) return `mount ${at}: ${seen.mounts.get(at) ?? 'missing'}, expected ${want}`;
  }
  for (const at of seen.mounts.keys()) if (!state.mounts.has(at)) return `mount ${at} present, expected absent`;
  return undefined;
}

function describe(v: Uint8Array | undefined): string {
  return v === undefined ? 'absent' : `${v.length} bytes ${createHash('sha1').update(v).digest('hex').slice(0, 8)}`;
}
