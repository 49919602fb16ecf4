import type { Store } from '../../src/engine/store.js';
import { rng } from '../helpers.js';
import { EMPTY_STATE, GRANTS, SUBJECTS, type ModelState } from './model.js';

/**
 * The mixed workload of the reliability suite: puts, deletes, groups of concurrent writes,
 * putMany batches, transactions, snapshots (create, delete, restore), mounts and umounts, GC
 * cycles and checkpoints, over two subjects. Generated from a seed against the model, so every operation is
 * valid when it runs and its effect is known.
 */
export type WorkOp =
  | { kind: 'put'; subject: string; key: string; value: Uint8Array }
  | { kind: 'delete'; subject: string; key: string }
  /** Concurrent writes to distinct keys (group commit): each lands or not on its own. */
  | { kind: 'group'; writes: { subject: string; key: string; value: Uint8Array | null }[] }
  /** One `putMany` of distinct keys (small values: PUTRUN records): a crash leaves a prefix, so each key lands or not on its own. */
  | { kind: 'putMany'; subject: string; writes: { key: string; value: Uint8Array }[] }
  | { kind: 'txn'; subject: string; writes: { key: string; value: Uint8Array | null }[] }
  | { kind: 'snapshot'; subject: string; name: string }
  | { kind: 'deleteSnap'; subject: string; name: string }
  | { kind: 'restore'; subject: string; name: string }
  | { kind: 'mount'; caller: string; owner: string; name: string; path: string }
  | { kind: 'umount'; caller: string; path: string }
  | { kind: 'gc' }
  | { kind: 'checkpoint' };

const KEYS = 24;
const MAX_SNAPS = 3;

/** Options every reliability store is opened with. */
export const STORE_OPTIONS = { checkpointBytes: 48 * 1024, grants: GRANTS };

/** `count` operations and the model state after each (`states[i]` is the state after `i` operations). */
export function generate(seed: number, count: number): { ops: WorkOp[]; states: ModelState[] } {
  const rand = rng(seed);
  const pick = <T>(xs: readonly T[]): T => {
    const x = xs[Math.floor(rand() * xs.length)];
    if (x === undefined) throw new Error('pick from an empty list');
    return x;
  };
  const value = (): Uint8Array => {
    const r = rand();
    const size = r < 0.05 ? 20_000 + Math.floor(rand() * 30_000) : r < 0.25 ? 1000 + Math.floor(rand() * 4000) : Math.floor(rand() * 200);
    return new Uint8Array(size).map(() => Math.floor(rand() * 256));
  };
  const key = (): string => (rand() < 0.3 ? `/state/dir/k${Math.floor(rand() * KEYS)}` : `/state/k${Math.floor(rand() * KEYS)}`);
  const ops: WorkOp[] = [];
  const states: ModelState[] = [EMPTY_STATE];
  let state = EMPTY_STATE;
  let snapSeq = 0;
  let mountSeq = 0;
  while (ops.length < count) {
    const subject = pick(SUBJECTS);
    const live = state.live.get(subject) ?? new Map<string, Uint8Array>();
    const snaps = [...state.snaps.keys()].filter((id) => id.startsWith(`${subject}/`)).map((id) => id.slice(subject.length + 1));
    const mounted = new Set(state.mounts.values());
    const r = rand();
    let op: WorkOp | undefined;
    if (r < 0.4) op = { kind: 'put', subject, key: key(), value: value() };
    else if (r < 0.5) op = live.size > 0 ? { kind: 'delete', subject, key: pick([...live.keys()]) } : undefined;
    else if (r < 0.55) {
      const writes = new Map<string, { key: string; value: Uint8Array }>();
      for (let i = 0; i < 2 + Math.floor(rand() * 12); i++) {
        const k = key();
        writes.set(k, { key: k, value: new Uint8Array(Math.floor(rand() * 150)).map(() => Math.floor(rand() * 256)) });
      }
      op = { kind: 'putMany', subject, writes: [...writes.values()] };
    } else if (r < 0.6) {
      const writes = new Map<string, { subject: string; key: string; value: Uint8Array | null }>();
      for (let i = 0; i < 2 + Math.floor(rand() * 6); i++) {
        const s = pick(SUBJECTS);
        const k = key();
        const has = state.live.get(s)?.has(k) === true;
        writes.set(`${s} ${k}`, { subject: s, key: k, value: has && rand() < 0.3 ? null : value() });
      }
      op = { kind: 'group', writes: [...writes.values()] };
    } else if (r < 0.72) {
      const writes = new Map<string, { key: string; value: Uint8Array | null }>();
      for (let i = 0; i < 1 + Math.floor(rand() * 5); i++) {
        const k = key();
        writes.set(k, { key: k, value: live.has(k) && rand() < 0.3 ? null : value() });
      }
      op = { kind: 'txn', subject, writes: [...writes.values()] };
    } else if (r < 0.79) {
      op = snaps.length < MAX_SNAPS ? { kind: 'snapshot', subject, name: `s${++snapSeq}` } : undefined;
    } else if (r < 0.83) {
      const free = snaps.filter((n) => !mounted.has(`${subject}/${n}`));
      op = free.length > 0 ? { kind: 'deleteSnap', subject, name: pick(free) } : undefined;
    } else if (r < 0.86) {
      op = snaps.length > 0 ? { kind: 'restore', subject, name: pick(snaps) } : undefined;
    } else if (r < 0.91) {
      const caller = pick(SUBJECTS);
      const owners = caller === 'beta' ? SUBJECTS : ['alpha'];
      const owner = pick(owners);
      const theirs = [...state.snaps.keys()].filter((id) => id.startsWith(`${owner}/`));
      op = theirs.length > 0 ? { kind: 'mount', caller, owner, name: pick(theirs).slice(owner.length + 1), path: `/mnt/m${++mountSeq}` } : undefined;
    } else if (r < 0.95) {
      const ats = [...state.mounts.keys()];
      if (ats.length > 0) {
        const [caller = '', path = ''] = pick(ats).split(' ');
        op = { kind: 'umount', caller, path };
      }
    } else if (r < 0.98) op = { kind: 'gc' };
    else op = { kind: 'checkpoint' };
    if (op === undefined) continue;
    state = apply(state, op);
    ops.push(op);
    states.push(state);
  }
  return { ops, states };
}

/**
 * `generate`, then 360 KB of new values (so the log leaves the segments the workload filled), a
 * checkpoint (so those segments fall out of the log chain) and a GC cycle, which then has live
 * values to relocate.
 */
export function generateWithGc(seed: number, count: number): { ops: WorkOp[]; states: ModelState[] } {
  const { ops, states } = generate(seed, count);
  let state = states.at(-1) ?? EMPTY_STATE;
  const tail: WorkOp[] = [];
  for (let i = 0; i < 6; i++) tail.push({ kind: 'put', subject: 'alpha', key: `/state/fill-${i}`, value: new Uint8Array(60_000).fill(i) });
  tail.push({ kind: 'checkpoint' }, { kind: 'gc' });
  const more: ModelState[] = [];
  for (const op of tail) {
    state = apply(state, op);
    more.push(state);
  }
  return { ops: [...ops, ...tail], states: [...states, ...more] };
}

/** The model's effect of one operation. */
export function apply(state: ModelState, op: WorkOp): ModelState {
  const withLive = (subject: string, edit: (m: Map<string, Uint8Array>) => void): ModelState => {
    const live = new Map(state.live);
    const m = new Map(live.get(subject));
    edit(m);
    live.set(subject, m);
    return { ...state, live };
  };
  switch (op.kind) {
    case 'put':
      return withLive(op.subject, (m) => m.set(op.key, op.value));
    case 'delete':
      return withLive(op.subject, (m) => m.delete(op.key));
    case 'putMany':
      return withLive(op.subject, (m) => {
        for (const w of op.writes) m.set(w.key, w.value);
      });
    case 'txn':
      return withLive(op.subject, (m) => {
        for (const w of op.writes) if (w.value === null) m.delete(w.key);
        else m.set(w.key, w.value);
      });
    case 'group': {
      let next = state;
      for (const w of op.writes) {
        next = apply(next, w.value === null ? { kind: 'delete', subject: w.subject, key: w.key } : { kind: 'put', subject: w.subject, key: w.key, value: w.value });
      }
      return next;
    }
    case 'snapshot': {
      const snaps = new Map(state.snaps);
      snaps.set(`${op.subject}/${op.name}`, state.live.get(op.subject) ?? new Map<string, Uint8Array>());
      return { ...state, snaps };
    }
    case 'deleteSnap': {
      const snaps = new Map(state.snaps);
      snaps.delete(`${op.subject}/${op.name}`);
      return { ...state, snaps };
    }
    case 'restore': {
      const live = new Map(state.live);
      live.set(op.subject, state.snaps.get(`${op.subject}/${op.name}`) ?? new Map<string, Uint8Array>());
      return { ...state, live };
    }
    case 'mount': {
      const mounts = new Map(state.mounts);
      mounts.set(`${op.caller} ${op.path}`, `${op.owner}/${op.name}`);
      return { ...state, mounts };
    }
    case 'umount': {
      const mounts = new Map(state.mounts);
      mounts.delete(`${op.caller} ${op.path}`);
      return { ...state, mounts };
    }
    case 'gc':
    case 'checkpoint':
      return state;
  }
}

/** Run one operation through the store's public API; resolves when it is acknowledged. */
export async function runOp(store: Store, op: WorkOp): Promise<void> {
  switch (op.kind) {
    case 'put':
      return store.put(op.subject, op.key, op.value);
    case 'delete':
      return store.delete(op.subject, op.key);
    case 'group':
      await Promise.all(op.writes.map((w) => (w.value === null ? store.delete(w.subject, w.key) : store.put(w.subject, w.key, w.value))));
      return;
    case 'putMany':
      return store.putMany(op.subject, op.writes.map((w) => [w.key, w.value]));
    case 'txn': {
      const txn = store.begin(op.subject);
      for (const w of op.writes) await (w.value === null ? txn.delete(op.subject, w.key) : txn.put(op.subject, w.key, w.value));
      return txn.commit();
    }
    case 'snapshot':
      return store.snapshot(op.subject, op.name);
    case 'deleteSnap':
      return store.deleteSnap(op.subject, op.name);
    case 'restore':
      return store.restoreSnap(op.subject, op.name);
    case 'mount':
      return store.mountSnap(op.caller, op.owner, op.name, op.path);
    case 'umount':
      return store.umount(op.caller, op.path);
    case 'gc':
      await store.gcNow();
      return;
    case 'checkpoint':
      return store.checkpoint();
  }
}

/** Whether a crash while `op` is in flight may leave each of its keys old or new on its own. */
export function perKey(op: WorkOp): boolean {
  return op.kind === 'group' || op.kind === 'putMany';
}

/** The seed: `STATEFS_SEED`, else `fallback`. */
export function seedFrom(fallback: number): number {
  const env = process.env.STATEFS_SEED;
  return env === undefined || env === '' ? fallback : Number(env);
}
