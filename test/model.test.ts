/**
import { guardResources } from './hygiene.js';

guardResources();
 * Model-based property test: random command sequences run against a real store on a
 * `FaultDevice` and against a plain in-memory model (a map per subject of key -> bytes). After
 * every step the store must agree with the model exactly: the keys `list` returns (in bytewise
 * order, page by page), every value, absent keys, and the error each operation gets (the tree
 * rules `ENOTDIR` / `EISDIR`, `ENOENT` for deleting a missing key, `EFBIG`), for single writes,
 * transactions (also with writes interleaved before their commit, which re-checks the rules),
 * concurrent batches (group commit; reads in the same tick must not see them yet), bulk writes of
 * hundreds of long keys, checkpoints, GC cycles, and closing with writes in flight.
 *
 * Crashes come from a crash plan on the device (the power goes during a chosen upcoming write,
 * keeping or dropping unsynced writes, tearing that write) or from `powerCut()` while a batch of
 * concurrent writes (and maybe a GC cycle) is in flight. After a crash a new store is opened on
 * the durable bytes and reconciled with the model: every acknowledged write must be there; a write
 * still in flight may have landed or not (its key may hold either value, and the model takes what
 * the store shows); an in-flight transaction is whole or absent; every other key must match
 * exactly; and the recovered state must be the result of a prefix of the log.
 *
 * STATEFS_MODEL_RUNS sets the number of runs, STATEFS_SEED the seed, STATEFS_MODEL_PATH replays a
 * shrunk counterexample (with the path fast-check prints on failure), and
 * STATEFS_MODEL_SHRINK_SECONDS bounds the time spent shrinking a failure.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { FaultDevice, type CrashPlan } from '../src/device/fault-device.js';
import { MemoryDevice } from '../src/device/memory-device.js';
import { Store } from '../src/engine/store.js';
import { VALUE_READS, type OpenOptions, type ValueReads } from '../src/engine/store-types.js';
import type { Transaction } from '../src/engine/transaction.js';
import { StatefsError, type ErrorCode } from '../src/errors.js';
import { MiB } from './helpers.js';

const NUM_RUNS = envInt('STATEFS_MODEL_RUNS', 100);
const SEED = envInt('STATEFS_SEED', 20260701);
const REPLAY_PATH = process.env.STATEFS_MODEL_PATH;
const MAX_COMMANDS = 60;
const STEP_TIMEOUT_MS = 20_000;
/** Time for shrinking once a run has failed; then the smallest counterexample so far is reported. */
const SHRINK_SECONDS = envInt('STATEFS_MODEL_SHRINK_SECONDS', 90);

const IMAGE_SIZE = 8 * MiB;
// Checkpoints built 4 entries per turn: the model's operations run between their steps.
const OPEN_OPTIONS: OpenOptions = { checkpointBytes: 32 * 1024, checkpointStepEntries: 4 };

// Limits from the spec (names.ts, transaction.ts defaults).
const KEY_ROOT = '/state/';
const MAX_VALUE_BYTES = 65_536;
const TXN_MAX_KEYS = 32;
const TXN_MAX_BYTES = 128 * 1024;

/** A run uses the first 2 or 3. `app` and `app.x` share a prefix, to catch subject bleed. */
const SUBJECTS = ['app', 'app.x', 'zz'];
/**
 * A small key pool so keys collide: nested keys make the tree rules bite, `d1-x` and `d10` sort
 * around `d1/...` (`-` < `/` < `0`), and U+FF5E / U+1F600 sort differently in UTF-16 and UTF-8.
 */
const KEYS = [
  '/state/a',
  '/state/b',
  '/state/d1',
  '/state/d1/k1',
  '/state/d1/k2',
  '/state/d1/sub',
  '/state/d1/sub/x',
  '/state/d1-x',
  '/state/d10',
  '/state/d2',
  '/state/d2/k1',
  '/state/\u00e9/k',
  '/state/\uff5e',
  '/state/\u{1f600}',
];
const BULK_FILLER = 'x'.repeat(190);

function bulkKeys(cmd: BulkCmd): string[] {
  return Array.from({ length: cmd.count }, (_, i) => `/state/bulk/${BULK_FILLER}-${String(i).padStart(3, '0')}`);
}

const PREFIXES = ['/', '/state/', '/state/bulk/', '/state/d', '/state/d1', '/state/d1/', '/state/d1-', '/state/d1/sub', '/state/\u00e9', '/state/\uff5e', '/nomatch'];

// ---- commands ---------------------------------------------------------------------------------

/** A value: `len` bytes generated from `seed` (kept small so counterexamples print well). */
interface ValueSpec {
  len: number;
  seed: number;
}

interface PutCmd {
  kind: 'put';
  subject: number;
  key: string;
  value: ValueSpec;
}

interface DeleteCmd {
  kind: 'delete';
  subject: number;
  key: string;
}

interface TxnPut {
  op: 'put';
  key: string;
  value: ValueSpec;
}

interface TxnDelete {
  op: 'delete';
  key: string;
}

interface TxnGet {
  op: 'get';
  key: string;
}

type TxnStep = TxnPut | TxnDelete | TxnGet;

interface TxnCmd {
  kind: 'txn';
  subject: number;
  steps: TxnStep[];
  commit: boolean;
}

/**
 * A transaction with direct writes to the store (and reads through the transaction) between its
 * buffered steps and its commit, which must then check the tree rules again.
 */
interface InterleaveCmd {
  kind: 'interleave';
  subject: number;
  steps: TxnStep[];
  direct: TxnStep[];
}

/**
 * Hundreds of puts (or deletes) of long keys under /state/bulk issued in one tick: a round that
 * spans segments, and checkpoints large enough to take several chunks.
 */
interface BulkCmd {
  kind: 'bulk';
  subject: number;
  count: number;
  seed: number;
  del: boolean;
}

type WriteCmd = PutCmd | DeleteCmd | TxnCmd | InterleaveCmd | BulkCmd;

interface ListCmd {
  kind: 'list';
  subject: number;
  prefix: string;
  limit: number;
}

interface CheckpointCmd {
  kind: 'checkpoint';
}

/** Close (with `ops` still in flight: close must drain them) and open the same bytes again. */
interface ReopenCmd {
  kind: 'reopen';
  ops: WriteCmd[];
}

/** Writes issued in the same tick (group commit), then awaited together. */
interface BatchCmd {
  kind: 'batch';
  ops: WriteCmd[];
}

/** Writes issued in the same tick (with a GC cycle if `gc`), then a power cut after `ticks` microtasks. */
interface CrashCmd {
  kind: 'crash';
  ops: WriteCmd[];
  gc: boolean;
  ticks: number;
  keepUnsynced: boolean;
}

/** One bounded GC cycle (`gcNow`): it moves records around and must change nothing visible. */
interface GcCmd {
  kind: 'gc';
  maxSegments: number;
}

type Command = WriteCmd | ListCmd | CheckpointCmd | ReopenCmd | BatchCmd | CrashCmd | GcCmd;

/** A crash plan for a device; the devices of a run take these in order (null: no crash). */
interface PlanSpec {
  atWrite: number;
  keepUnsynced: boolean;
  tornBytes: number | null;
}

interface Scenario {
  subjects: number;
  /** When its stores read the values their checkpoint holds (`OpenOptions.valueReads`). */
  valueReads: ValueReads;
  plans: (PlanSpec | null)[];
  commands: Command[];
}

const subjectArb = fc.nat({ max: SUBJECTS.length - 1 });
const keyArb = fc.constantFrom(...KEYS);
const valueArb: fc.Arbitrary<ValueSpec> = fc.record({
  len: fc.oneof(
    { weight: 20, arbitrary: fc.integer({ min: 0, max: 3000 }) },
    { weight: 2, arbitrary: fc.integer({ min: 3001, max: MAX_VALUE_BYTES }) },
    { weight: 1, arbitrary: fc.constantFrom(MAX_VALUE_BYTES, MAX_VALUE_BYTES + 1) },
  ),
  seed: fc.nat({ max: 0xffff }),
});

const putArb: fc.Arbitrary<PutCmd> = fc.record({ kind: fc.constant('put'), subject: subjectArb, key: keyArb, value: valueArb });
const deleteArb: fc.Arbitrary<DeleteCmd> = fc.record({ kind: fc.constant('delete'), subject: subjectArb, key: keyArb });

const stepPutArb: fc.Arbitrary<TxnStep> = fc.record({ op: fc.constant('put'), key: keyArb, value: valueArb });
const stepDeleteArb: fc.Arbitrary<TxnStep> = fc.record({ op: fc.constant('delete'), key: keyArb });
const stepGetArb: fc.Arbitrary<TxnStep> = fc.record({ op: fc.constant('get'), key: keyArb });
const stepArb = fc.oneof({ weight: 3, arbitrary: stepPutArb }, { weight: 2, arbitrary: stepDeleteArb }, { weight: 1, arbitrary: stepGetArb });

function txnArb(withReads: boolean): fc.Arbitrary<TxnCmd> {
  const step = withReads ? stepArb : fc.oneof({ weight: 3, arbitrary: stepPutArb }, { weight: 2, arbitrary: stepDeleteArb });
  return fc.record({
    kind: fc.constant('txn'),
    subject: subjectArb,
    steps: fc.array(step, { minLength: 1, maxLength: 6 }),
    commit: fc.constantFrom(true, true, true, false),
  });
}

const bulkArb: fc.Arbitrary<BulkCmd> = fc.record({
  kind: fc.constant('bulk'),
  subject: subjectArb,
  count: fc.integer({ min: 1, max: 360 }),
  seed: fc.nat({ max: 0xffff }),
  del: fc.constantFrom(false, false, true),
});

/** A transaction of large values (up to the 128 KiB cap): its records often straddle two segments. */
const bigTxnArb: fc.Arbitrary<TxnCmd> = fc.record({
  kind: fc.constant('txn'),
  subject: subjectArb,
  steps: fc.array(
    fc.record({ op: fc.constant('put'), key: keyArb, value: fc.record({ len: fc.integer({ min: 8000, max: 40_000 }), seed: fc.nat({ max: 0xffff }) }) }),
    { minLength: 2, maxLength: 4 },
  ),
  commit: fc.constant(true),
});

/** Writes issued without awaiting: reads inside transactions would race the group commit. */
const concurrentWriteArb: fc.Arbitrary<WriteCmd> = fc.oneof(
  { weight: 8, arbitrary: putArb },
  { weight: 4, arbitrary: deleteArb },
  { weight: 4, arbitrary: txnArb(false) },
  { weight: 2, arbitrary: bigTxnArb },
  { weight: 1, arbitrary: bulkArb },
);

/** Keys of one family, so a transaction and the writes around it collide. */
const familyKeyArb = fc.constantFrom('/state/d1', '/state/d1/k1', '/state/d1/sub', '/state/d1/sub/x', '/state/d2');
const familyStepArb: fc.Arbitrary<TxnStep> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ op: fc.constant('put'), key: familyKeyArb, value: valueArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('delete'), key: familyKeyArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('get'), key: familyKeyArb }) },
);

const commandArb: fc.Arbitrary<Command> = fc.oneof(
  { weight: 10, arbitrary: putArb },
  { weight: 3, arbitrary: deleteArb },
  { weight: 4, arbitrary: txnArb(true) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('interleave'),
      subject: subjectArb,
      steps: fc.array(familyStepArb, { minLength: 1, maxLength: 4 }),
      direct: fc.array(familyStepArb, { minLength: 1, maxLength: 3 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant('list'), subject: subjectArb, prefix: fc.constantFrom(...PREFIXES), limit: fc.constantFrom(1, 2, 3, 5, 1000) }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('checkpoint') }) },
  { weight: 1, arbitrary: bulkArb },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('gc'), maxSegments: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('reopen'), ops: fc.array(concurrentWriteArb, { maxLength: 4 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('batch'), ops: fc.array(concurrentWriteArb, { minLength: 2, maxLength: 6 }) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('crash'),
      ops: fc.array(concurrentWriteArb, { maxLength: 6 }),
      gc: fc.constantFrom(false, false, true),
      // A round writes on the first microtask and flushes on the second: cut mostly around there.
      ticks: fc.oneof({ weight: 3, arbitrary: fc.nat({ max: 8 }) }, { weight: 1, arbitrary: fc.nat({ max: 40 }) }),
      keepUnsynced: fc.boolean(),
    }),
  },
);

const planArb: fc.Arbitrary<PlanSpec> = fc.record({
  // Devices are short-lived (every crash and reopen makes a new one), so crash early mostly.
  atWrite: fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 1, max: 12 }) }, { weight: 1, arbitrary: fc.integer({ min: 13, max: 60 }) }),
  keepUnsynced: fc.boolean(),
  tornBytes: fc.option(fc.integer({ min: 0, max: 8192 }), { nil: null }),
});

const scenarioArb: fc.Arbitrary<Scenario> = fc.record({
  subjects: fc.integer({ min: 2, max: 3 }),
  valueReads: fc.constantFrom<ValueReads>(...VALUE_READS),
  plans: fc.array(fc.option(planArb, { nil: null, freq: 3 }), { maxLength: 10 }),
  commands: fc.array(commandArb, { minLength: 10, maxLength: MAX_COMMANDS, size: 'max' }),
});

// ---- the model --------------------------------------------------------------------------------

/** What the tree rules need to know about a subject's keys. */
interface KeyView {
  has(key: string): boolean;
  hasChildren(key: string): boolean;
}

/** The spec's state: per subject, key -> value. */
class Model {
  private readonly data = new Map<string, Map<string, Uint8Array>>();

  constructor(readonly subjects: readonly string[]) {
    for (const s of subjects) this.data.set(s, new Map());
  }

  clone(): Model {
    const m = new Model(this.subjects);
    for (const [s, kv] of this.data) m.data.set(s, new Map(kv));
    return m;
  }

  keys(subject: string): Map<string, Uint8Array> {
    let kv = this.data.get(subject);
    if (kv === undefined) this.data.set(subject, (kv = new Map<string, Uint8Array>()));
    return kv;
  }

  view(subject: string): KeyView {
    const kv = this.keys(subject);
    return {
      has: (k) => kv.has(k),
      hasChildren: (k) => {
        const prefix = `${k}/`;
        for (const c of kv.keys()) if (c.startsWith(prefix)) return true;
        return false;
      },
    };
  }

  apply(effect: Effect): void {
    const kv = this.keys(effect.subject);
    for (const [k, v] of effect.writes) {
      if (v === null) kv.delete(k);
      else kv.set(k, v);
    }
  }
}

/** The keys above `key` under the root: `/state/d1/sub/x` -> `/state/d1`, `/state/d1/sub`. */
function ancestors(key: string): string[] {
  const parts = key.slice(KEY_ROOT.length).split('/');
  const out: string[] = [];
  for (let i = 1; i < parts.length; i++) out.push(KEY_ROOT + parts.slice(0, i).join('/'));
  return out;
}

/** Tree rules for a put: no ancestor may hold a value, the key may not have children. */
function putError(view: KeyView, key: string): ErrorCode | undefined {
  if (ancestors(key).some((a) => view.has(a))) return 'ENOTDIR';
  if (view.hasChildren(key)) return 'EISDIR';
  return undefined;
}

/** A delete needs a value to remove; a key with only children is `EISDIR`. */
function deleteError(view: KeyView, key: string): ErrorCode | undefined {
  if (view.has(key)) return undefined;
  return view.hasChildren(key) ? 'EISDIR' : 'ENOENT';
}

/** A transaction's buffered writes over the state it started from (null: deleted). */
class TxnOverlay implements KeyView {
  readonly writes = new Map<string, Uint8Array | null>();
  private bytes = 0;

  constructor(private readonly base: Map<string, Uint8Array>) {}

  has(k: string): boolean {
    const w = this.writes.get(k);
    return w === undefined ? this.base.has(k) : w !== null;
  }

  hasChildren(k: string): boolean {
    const prefix = `${k}/`;
    for (const [key, w] of this.writes) if (w !== null && key.startsWith(prefix)) return true;
    for (const key of this.base.keys()) if (key.startsWith(prefix) && this.writes.get(key) !== null) return true;
    return false;
  }

  value(k: string): Uint8Array | undefined {
    const w = this.writes.get(k);
    return w === undefined ? this.base.get(k) : (w ?? undefined);
  }

  /** Buffer a put; returns the error the transaction must report instead, if any. */
  put(k: string, v: Uint8Array): ErrorCode | undefined {
    if (v.length > MAX_VALUE_BYTES) return 'EFBIG';
    const previous = this.writes.get(k);
    if (previous === undefined && this.writes.size >= TXN_MAX_KEYS) return 'EFBIG';
    const added = v.length - (previous?.length ?? 0);
    if (this.bytes + added > TXN_MAX_BYTES) return 'EFBIG';
    const err = putError(this, k);
    if (err !== undefined) return err;
    this.writes.delete(k);
    this.writes.set(k, v);
    this.bytes += added;
    return undefined;
  }

  delete(k: string): ErrorCode | undefined {
    const previous = this.writes.get(k);
    if (previous === undefined && this.writes.size >= TXN_MAX_KEYS) return 'EFBIG';
    const err = deleteError(this, k);
    if (err !== undefined) return err;
    this.bytes -= previous?.length ?? 0;
    this.writes.delete(k);
    // Deleting what only this transaction wrote leaves nothing to do for that key.
    if (this.base.has(k)) this.writes.set(k, null);
    return undefined;
  }
}

/** The store checks a transaction's writes again at commit, in order, against the state then. */
function commitError(base: Map<string, Uint8Array>, writes: ReadonlyMap<string, Uint8Array | null>): ErrorCode | undefined {
  const check = new TxnOverlay(base);
  for (const [k, v] of writes) {
    const err = v === null ? check.delete(k) : check.put(k, v);
    if (err !== undefined) return err;
  }
  return undefined;
}

/** A state change: one write or a whole transaction. */
interface Effect {
  subject: string;
  writes: Map<string, Uint8Array | null>;
  txn: boolean;
  label: string;
}

/** A write the store accepted, in log (= call) order; `acked` if its promise resolved. */
interface Item {
  effect: Effect;
  acked: boolean;
}

// ---- checking the store against the model -----------------------------------------------------

interface Resolved {
  ok: true;
  value: unknown;
}

interface Rejected {
  ok: false;
  error: unknown;
}

type Settled = Resolved | Rejected;

/** Run `fn` now; its result, rejection or synchronous throw becomes a settled outcome. */
function attempt(fn: () => unknown): Promise<Settled> {
  try {
    return Promise.resolve(fn()).then(
      (value): Settled => ({ ok: true, value }),
      (error: unknown): Settled => ({ ok: false, error }),
    );
  } catch (error) {
    return Promise.resolve({ ok: false, error });
  }
}

type Role = 'write' | 'begin' | 'step' | 'get' | 'commit' | 'abort';

/** One call made on the store or a transaction, with what the model says it must do. */
interface Issued {
  label: string;
  role: Role;
  /** The error the call must fail with, or undefined if it must succeed. */
  expected: ErrorCode | undefined;
  /** For reads: the value it must return. */
  expectValue: Uint8Array | undefined;
  /** The state change if it succeeds. */
  effect: Effect | undefined;
  /** The device had already lost power when the call was made: it cannot have landed. */
  crashedAtIssue: boolean;
  result: Promise<Settled>;
}

/** A read made in the same tick as a batch of writes. */
interface EarlyRead {
  subject: string;
  key: string;
  got: Promise<Settled>;
}

/** Issues one call when run; undefined when skipped (its transaction never began). */
type Thunk = () => Issued | undefined;

/** Make a call now and record it with the model's prediction (applying the effect if it must succeed). */
type Issue = (fields: Omit<Issued, 'crashedAtIssue' | 'result'>, call: () => unknown) => Issued;

function codeOf(err: unknown): string {
  return err instanceof StatefsError ? err.code : `non-StatefsError ${String(err)}`;
}

function describeError(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function valueBytes(v: ValueSpec): Uint8Array {
  const out = new Uint8Array(v.len);
  let x = (Math.imul(v.seed + 1, 0x9e3779b1) ^ v.len) >>> 0 || 1;
  for (let i = 0; i < out.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** Length and a short hash, so a message can say which value a key holds. */
function show(v: Uint8Array | undefined): string {
  if (v === undefined) return 'nothing';
  return `${v.length}B#${createHash('sha1').update(v).digest('hex').slice(0, 8)}`;
}

function sameValue(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return Buffer.compare(a, b) === 0;
}

function bytewise(keys: Iterable<string>): string[] {
  return [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}

function hasBytePrefix(key: string, prefix: string): boolean {
  const k = Buffer.from(key);
  const p = Buffer.from(prefix);
  return k.length >= p.length && k.subarray(0, p.length).equals(p);
}

/** Differences between two states, as messages (empty when equal). */
function diff(want: Model, got: Model): string[] {
  const out: string[] = [];
  for (const subject of want.subjects) {
    const w = want.keys(subject);
    const g = got.keys(subject);
    for (const [key, a] of w) {
      const b = g.get(key);
      if (!sameValue(a, b)) out.push(`${subject} ${key}: model has ${show(a)}, store has ${show(b)}`);
    }
    for (const [key, b] of g) if (!w.has(key)) out.push(`${subject} ${key}: model has nothing, store has ${show(b)}`);
  }
  return out.sort();
}

function sameState(a: Model, b: Model): boolean {
  for (const subject of a.subjects) {
    const x = a.keys(subject);
    const y = b.keys(subject);
    if (x.size !== y.size) return false;
    for (const [key, v] of x) if (!sameValue(v, y.get(key))) return false;
  }
  return true;
}

/** Everything the store shows, through `list` and `get`; checks the listing order. */
async function readAll(store: Store, subjects: readonly string[]): Promise<Model> {
  const m = new Model(subjects);
  for (const subject of subjects) {
    const page = await store.list(subject, '/', { limit: 10_000 });
    assert.equal(page.next, undefined, `${subject}: a listing of every key has a next page`);
    assert.deepEqual(page.keys, bytewise(new Set(page.keys)), `${subject}: list is not in bytewise order, or repeats a key`);
    for (const key of page.keys) {
      const v = await store.get(subject, key);
      if (v === undefined) assert.fail(`${subject} ${key} is listed but has no value`);
      m.keys(subject).set(key, v);
    }
  }
  return m;
}

/** Values `key` took: before the command, then after each item that wrote it. */
interface KeyHistory {
  values: (Uint8Array | undefined)[];
  /** The item index behind values[i + 1]. */
  items: number[];
  /** Values before this index are superseded by an acknowledged write. */
  floor: number;
}

function keyHistory(m0: Model, items: readonly Item[], subject: string, key: string): KeyHistory {
  const h: KeyHistory = { values: [m0.keys(subject).get(key)], items: [], floor: 0 };
  items.forEach((it, i) => {
    if (it.effect.subject !== subject) return;
    const w = it.effect.writes.get(key);
    if (w === undefined) return;
    h.values.push(w ?? undefined);
    h.items.push(i);
    if (it.acked) h.floor = h.values.length - 1;
  });
  return h;
}

/**
 * Check the state recovered after a crash against the state before the command (`m0`) and the
 * writes it issued (`items`, in log order). Returns the violations (empty if none).
 */
function reconcile(m0: Model, items: readonly Item[], actual: Model): string[] {
  const problems: string[] = [];
  // Per key: the last acknowledged value or one written after it (all of them when none was acknowledged).
  for (const subject of m0.subjects) {
    const ids = new Set([...m0.keys(subject).keys(), ...actual.keys(subject).keys()]);
    for (const it of items) if (it.effect.subject === subject) for (const k of it.effect.writes.keys()) ids.add(k);
    for (const key of bytewise(ids)) {
      const h = keyHistory(m0, items, subject, key);
      const got = actual.keys(subject).get(key);
      const allowed = h.values.slice(h.floor);
      if (!allowed.some((v) => sameValue(v, got))) {
        const writers = h.items.map((i) => `${items[i]?.acked === true ? 'acked' : 'in flight'}: ${items[i]?.effect.label ?? '?'}`);
        problems.push(`${subject} ${key} holds ${show(got)}; allowed: ${allowed.map(show).join(' | ')} (before: ${show(h.values[0])}; writes: ${writers.join('; ') || 'none'})`);
      }
    }
  }
  // In-flight transactions: whole or absent.
  items.forEach((it, t) => {
    if (it.acked || !it.effect.txn) return;
    let landed = true;
    let absent = true;
    for (const key of it.effect.writes.keys()) {
      const h = keyHistory(m0, items, it.effect.subject, key);
      const at = h.items.indexOf(t) + 1;
      const got = actual.keys(it.effect.subject).get(key);
      if (!h.values.slice(at).some((v) => sameValue(v, got))) landed = false;
      if (!h.values.slice(h.floor, at).some((v) => sameValue(v, got))) absent = false;
    }
    if (!landed && !absent) problems.push(`in-flight transaction applied in part: ${it.effect.label}`);
  });
  if (problems.length > 0) return problems;
  // The log is written in order: what survives is the acknowledged writes plus some prefix of the rest.
  const lastAcked = items.findLastIndex((it) => it.acked);
  const state = m0.clone();
  for (const it of items.slice(0, lastAcked + 1)) state.apply(it.effect);
  for (let k = lastAcked + 1; ; k++) {
    if (sameState(state, actual)) return problems;
    const next = items[k];
    if (next === undefined) break;
    state.apply(next.effect);
  }
  problems.push(
    `the recovered state is no prefix of the log (${items.length} writes, last acknowledged #${lastAcked}): ` +
      items.map((it, i) => `#${i} ${it.acked ? 'acked' : 'in flight'} ${it.effect.label}`).join('; '),
  );
  return problems;
}

// ---- the harness ------------------------------------------------------------------------------

interface Stats {
  runs: number;
  steps: number;
  crashes: number;
  powerCuts: number;
  reopens: number;
  inFlight: number;
  inFlightLanded: number;
  gcCycles: number;
  gcMovedBytes: number;
  /** Errors the model predicted and the store reported, by code. */
  expectedErrors: Map<string, number>;
}

const stats: Stats = { runs: 0, steps: 0, crashes: 0, powerCuts: 0, reopens: 0, inFlight: 0, inFlightLanded: 0, gcCycles: 0, gcMovedBytes: 0, expectedErrors: new Map() };

class Harness {
  private planIndex = 0;
  private device: FaultDevice;
  private store: Store | undefined;
  private model: Model;
  private readonly subjects: string[];
  private txnCount = 0;

  constructor(
    private readonly scenario: Scenario,
    image: Uint8Array,
  ) {
    this.subjects = SUBJECTS.slice(0, scenario.subjects);
    this.model = new Model(this.subjects);
    this.device = this.newDevice(image);
  }

  private get open(): Store {
    if (this.store === undefined) assert.fail('the store is not open');
    return this.store;
  }

  async start(): Promise<void> {
    this.store = await Store.openDevice(this.device, { ...OPEN_OPTIONS, valueReads: this.scenario.valueReads });
  }

  async close(): Promise<void> {
    await this.store?.close();
    this.store = undefined;
  }

  private newDevice(image: Uint8Array): FaultDevice {
    const spec = this.scenario.plans[this.planIndex++] ?? null;
    if (spec === null) return new FaultDevice(image);
    const crash: CrashPlan = { atWrite: spec.atWrite, keepUnsynced: spec.keepUnsynced, ...(spec.tornBytes === null ? {} : { tornBytes: spec.tornBytes }) };
    return new FaultDevice(image, { crash });
  }

  private subject(i: number): string {
    return this.subjects[i % this.subjects.length] ?? 'app';
  }

  async step(cmd: Command): Promise<void> {
    if (this.device.crashed) await this.reopen(this.model, []);
    switch (cmd.kind) {
      case 'put':
      case 'delete':
      case 'txn':
      case 'interleave':
        await this.writes([cmd], true);
        break;
      case 'bulk':
        await this.writes([cmd], false);
        break;
      case 'batch':
        await this.writes(cmd.ops, false);
        break;
      case 'crash':
        await this.crash(cmd);
        break;
      case 'list':
        await this.list(cmd);
        break;
      case 'checkpoint':
        await this.checkpoint();
        break;
      case 'gc':
        await this.gc(cmd.maxSegments);
        break;
      case 'reopen':
        await this.closeAndReopen(cmd.ops);
        break;
    }
    await this.checkAgree();
    stats.steps++;
  }

  /** Run writes one after another (`sequential`) or all issued in the same tick. */
  private async writes(ops: readonly WriteCmd[], sequential: boolean): Promise<void> {
    const m0 = this.model;
    const predicted = m0.clone();
    const out: Issued[] = [];
    const thunks = ops.flatMap((op) => this.thunks(op, predicted, out));
    if (sequential) {
      for (const t of thunks) {
        const issued = t();
        if (issued !== undefined) await issued.result;
      }
    } else {
      await this.issueTogether(thunks, m0, out);
    }
    const items = await this.evaluate(out);
    if (this.device.crashed) await this.reopen(m0, items);
    else this.model = predicted;
  }

  /** Issue `ops`, close at once (close drains them: all must be acknowledged), reopen. */
  private async closeAndReopen(ops: readonly WriteCmd[]): Promise<void> {
    const m0 = this.model;
    const predicted = m0.clone();
    const out: Issued[] = [];
    const thunks = ops.flatMap((op) => this.thunks(op, predicted, out));
    const early = this.issueTogether(thunks, m0, out);
    const closed = attempt(() => this.open.close());
    await early;
    const r = await closed;
    if (!r.ok) assert.fail(`close failed: ${describeError(r.error)}`);
    const items = await this.evaluate(out);
    if (this.device.crashed) {
      await this.reopen(m0, items);
      return;
    }
    this.model = predicted;
    await this.reopen(predicted, []);
  }

  private async crash(cmd: CrashCmd): Promise<void> {
    const m0 = this.model;
    const predicted = m0.clone();
    const out: Issued[] = [];
    const thunks = cmd.ops.flatMap((op) => this.thunks(op, predicted, out));
    const early = this.issueTogether(thunks, m0, out);
    const crashedAtIssue = this.device.crashed;
    const gc = cmd.gc ? attempt(() => this.open.gcNow()) : undefined;
    for (let i = 0; i < cmd.ticks; i++) await Promise.resolve();
    if (!this.device.crashed) stats.powerCuts++;
    this.device.powerCut(cmd.keepUnsynced);
    await early;
    if (gc !== undefined) this.checkBackgroundOutcome('gcNow', await gc, crashedAtIssue);
    const items = await this.evaluate(out);
    await this.reopen(m0, items);
  }

  /**
   * Make every call in this tick, then at once read each key they write: nothing can be durable
   * yet, and readers see acknowledged writes only, so the store must still show the state before.
   */
  private issueTogether(thunks: readonly Thunk[], m0: Model, out: readonly Issued[]): Promise<void> {
    for (const t of thunks) t();
    const reads = new Map<string, EarlyRead>();
    for (const it of out) {
      if (it.effect === undefined) continue;
      const { subject } = it.effect;
      for (const key of it.effect.writes.keys()) {
        const id = `${subject}\0${key}`;
        if (!reads.has(id)) reads.set(id, { subject, key, got: attempt(() => this.open.get(subject, key)) });
      }
    }
    const check = async (): Promise<void> => {
      for (const { subject, key, got } of reads.values()) {
        const r = await got;
        if (!r.ok) assert.fail(`get ${subject} ${key} during a batch failed: ${describeError(r.error)}`);
        const want = m0.keys(subject).get(key);
        const value = r.value instanceof Uint8Array ? r.value : undefined;
        if (!sameValue(value, want)) assert.fail(`get ${subject} ${key} right after issuing a batch shows ${show(value)}, not the acknowledged ${show(want)}`);
      }
    };
    return check();
  }

  /**
   * The calls of one write command, each predicted against `predicted` (the state with every
   * accepted write applied, as the store's working index) when it is issued.
   */
  private thunks(op: WriteCmd, predicted: Model, out: Issued[]): Thunk[] {
    const subject = this.subject(op.subject);
    const issue: Issue = (fields, call) => {
      const issued: Issued = { ...fields, crashedAtIssue: this.device.crashed, result: attempt(call) };
      out.push(issued);
      if (fields.expected === undefined && fields.effect !== undefined) predicted.apply(fields.effect);
      return issued;
    };
    switch (op.kind) {
      case 'put':
        return [this.putThunk(subject, op.key, op.value, predicted, issue, '')];
      case 'delete':
        return [this.deleteThunk(subject, op.key, predicted, issue, '')];
      case 'bulk':
        return bulkKeys(op).map((key, i) =>
          op.del ? this.deleteThunk(subject, key, predicted, issue, ' (bulk)') : this.putThunk(subject, key, { len: (op.seed + i) % 64, seed: op.seed + i }, predicted, issue, ' (bulk)'),
        );
      case 'txn':
        return this.txnThunks(subject, op.steps, [], op.commit, predicted, issue);
      case 'interleave':
        return this.txnThunks(subject, op.steps, op.direct, true, predicted, issue);
    }
  }

  private putThunk(subject: string, key: string, spec: ValueSpec, predicted: Model, issue: Issue, note: string): Thunk {
    return () => {
      const value = valueBytes(spec);
      const label = `put ${subject} ${key} ${show(value)}${note}`;
      const expected = value.length > MAX_VALUE_BYTES ? 'EFBIG' : putError(predicted.view(subject), key);
      const effect: Effect = { subject, writes: new Map([[key, value]]), txn: false, label };
      return issue({ label, role: 'write', expected, expectValue: undefined, effect }, () => this.open.put(subject, key, value));
    };
  }

  private deleteThunk(subject: string, key: string, predicted: Model, issue: Issue, note: string): Thunk {
    return () => {
      const label = `delete ${subject} ${key}${note}`;
      const expected = deleteError(predicted.view(subject), key);
      const effect: Effect = { subject, writes: new Map([[key, null]]), txn: false, label };
      return issue({ label, role: 'write', expected, expectValue: undefined, effect }, () => this.open.delete(subject, key));
    };
  }

  /**
   * A transaction: begin, its steps, then (interleaved) direct writes to the store and reads
   * through the transaction, then commit or abort. The commit validates the buffered writes again
   * against the state at that time.
   */
  private txnThunks(
    subject: string,
    steps: readonly TxnStep[],
    direct: readonly TxnStep[],
    commit: boolean,
    predicted: Model,
    issue: Issue,
  ): Thunk[] {
    const name = `txn#${++this.txnCount} ${subject}`;
    const ctx: { txn: Transaction | undefined; overlay: TxnOverlay; steps: string[] } = { txn: undefined, overlay: new TxnOverlay(new Map()), steps: [] };
    const none = { expectValue: undefined, effect: undefined };
    const begin: Thunk = () => {
      ctx.overlay = new TxnOverlay(predicted.keys(subject));
      return issue({ ...none, label: `${name} begin`, role: 'begin', expected: undefined }, () => {
        ctx.txn = this.open.begin(subject);
      });
    };
    const read = (key: string): Thunk => () => {
      const txn = ctx.txn;
      if (txn === undefined) return undefined;
      return issue({ label: `${name} get ${key}`, role: 'get', expected: undefined, expectValue: ctx.overlay.value(key), effect: undefined }, () =>
        txn.get(subject, key),
      );
    };
    const buffered = steps.map((s): Thunk => {
      if (s.op === 'get') return read(s.key);
      return () => {
        const txn = ctx.txn;
        if (txn === undefined) return undefined;
        if (s.op === 'delete') {
          const expected = ctx.overlay.delete(s.key);
          if (expected === undefined) ctx.steps.push(`delete ${s.key}`);
          return issue({ ...none, label: `${name} delete ${s.key}`, role: 'step', expected }, () => txn.delete(subject, s.key));
        }
        const value = valueBytes(s.value);
        const expected = ctx.overlay.put(s.key, value);
        if (expected === undefined) ctx.steps.push(`put ${s.key} ${show(value)}`);
        return issue({ ...none, label: `${name} put ${s.key} ${show(value)}`, role: 'step', expected }, () => txn.put(subject, s.key, value));
      };
    });
    const interleaved = direct.map((s): Thunk => {
      if (s.op === 'get') return read(s.key);
      const write = s.op === 'put' ? this.putThunk(subject, s.key, s.value, predicted, issue, ` (during ${name})`) : this.deleteThunk(subject, s.key, predicted, issue, ` (during ${name})`);
      return () => (ctx.txn === undefined ? undefined : write());
    });
    const end: Thunk = () => {
      const txn = ctx.txn;
      if (txn === undefined) return undefined;
      if (!commit) return issue({ ...none, label: `${name} abort`, role: 'abort', expected: undefined }, () => txn.abort());
      const writes = new Map(ctx.overlay.writes);
      const label = `${name} commit [${ctx.steps.join(', ')}]`;
      const expected = commitError(predicted.keys(subject), writes);
      const effect: Effect | undefined = writes.size > 0 ? { subject, writes, txn: true, label } : undefined;
      return issue({ label, role: 'commit', expected, expectValue: undefined, effect }, () => txn.commit());
    };
    return [begin, ...buffered, ...interleaved, end];
  }

  /** Check every call's outcome against the model; returns the writes the store accepted, in log order. */
  private async evaluate(out: readonly Issued[]): Promise<Item[]> {
    const items: Item[] = [];
    for (const it of out) {
      const r = await it.result;
      if (it.crashedAtIssue) {
        // Anything but an acknowledged write is fine once the power is gone.
        if (r.ok && it.effect !== undefined && it.expected === undefined) assert.fail(`${it.label} was acknowledged after the device lost power`);
        if (!r.ok && !(r.error instanceof StatefsError)) assert.fail(`${it.label} failed with a non-StatefsError: ${describeError(r.error)}`);
        continue;
      }
      if (it.expected !== undefined) {
        if (r.ok) assert.fail(`${it.label}: the model expects ${it.expected}, but the store accepted it`);
        if (codeOf(r.error) !== it.expected) assert.fail(`${it.label}: the model expects ${it.expected}, the store says ${describeError(r.error)}`);
        const kind = it.role === 'commit' ? `${it.expected} at commit` : it.expected;
        stats.expectedErrors.set(kind, (stats.expectedErrors.get(kind) ?? 0) + 1);
        continue;
      }
      if (r.ok) {
        if (it.role === 'get') {
          const got = r.value;
          if (got !== undefined && !(got instanceof Uint8Array)) assert.fail(`${it.label} returned a ${typeof got}`);
          if (!sameValue(got, it.expectValue)) assert.fail(`${it.label}: the model expects ${show(it.expectValue)}, the store returned ${show(got)}`);
        }
        if (it.effect !== undefined) items.push({ effect: it.effect, acked: true });
        continue;
      }
      // Only a write that was in flight when the power went may fail, and only with EIO.
      const inFlight = (it.role === 'write' || it.role === 'commit') && this.device.crashed && codeOf(r.error) === 'EIO';
      if (!inFlight) assert.fail(`${it.label}: the model expects success, the store says ${describeError(r.error)}`);
      if (it.effect !== undefined) items.push({ effect: it.effect, acked: false });
    }
    return items;
  }

  private async list(cmd: ListCmd): Promise<void> {
    const subject = this.subject(cmd.subject);
    const want = bytewise([...this.model.keys(subject).keys()].filter((k) => hasBytePrefix(k, cmd.prefix)));
    const got: string[] = [];
    let after: string | undefined;
    for (let pages = 0; ; pages++) {
      assert.ok(pages <= want.length + 1, `list ${subject} ${cmd.prefix}: too many pages`);
      const page = await this.open.list(subject, cmd.prefix, after === undefined ? { limit: cmd.limit } : { limit: cmd.limit, after });
      assert.ok(page.keys.length <= cmd.limit, `list ${subject} ${cmd.prefix}: a page of ${page.keys.length} keys for limit ${cmd.limit}`);
      if (after !== undefined) assert.ok(page.keys.length > 0, `list ${subject} ${cmd.prefix}: empty page after next=${after}`);
      got.push(...page.keys);
      if (page.next === undefined) break;
      assert.equal(page.keys.length, cmd.limit, `list ${subject} ${cmd.prefix}: a short page has a next`);
      assert.equal(page.next, page.keys.at(-1), `list ${subject} ${cmd.prefix}: next is not the last key of the page`);
      after = page.next;
    }
    assert.deepEqual(got, want, `list ${subject} ${cmd.prefix} (limit ${cmd.limit})`);
  }

  private async checkpoint(): Promise<void> {
    const crashedAtIssue = this.device.crashed;
    this.checkBackgroundOutcome('checkpoint', await attempt(() => this.open.checkpoint()), crashedAtIssue);
    if (this.device.crashed) await this.reopen(this.model, []);
  }

  private async gc(maxSegments: number): Promise<void> {
    const crashedAtIssue = this.device.crashed;
    this.checkBackgroundOutcome('gcNow', await attempt(() => this.open.gcNow({ maxSegments })), crashedAtIssue);
    if (this.device.crashed) await this.reopen(this.model, []);
  }

  /** Checkpoints and GC change nothing visible; they may fail only with EIO, once the power is gone. */
  private checkBackgroundOutcome(what: string, r: Settled, crashedAtIssue: boolean): void {
    if (r.ok) {
      if (typeof r.value === 'object' && r.value !== null && 'movedBytes' in r.value && typeof r.value.movedBytes === 'number') {
        stats.gcCycles++;
        stats.gcMovedBytes += r.value.movedBytes;
      }
      return;
    }
    if (crashedAtIssue ? r.error instanceof StatefsError : this.device.crashed && codeOf(r.error) === 'EIO') return;
    assert.fail(`${what} failed: ${describeError(r.error)}`);
  }

  /**
   * Close the store and open a new one on the durable bytes (after a crash, or a clean reopen),
   * then reconcile the model with what the new store shows.
   */
  private async reopen(m0: Model, items: readonly Item[]): Promise<void> {
    await this.open.close();
    this.store = undefined;
    const crashed = this.device.crashed;
    if (crashed) stats.crashes++;
    this.device = this.newDevice(this.device.diskImage());
    stats.reopens++;
    for (;;) {
      try {
        this.store = await Store.openDevice(this.device, { ...OPEN_OPTIONS, valueReads: this.scenario.valueReads });
        break;
      } catch (err) {
        // An open may write (the stale superblock slot after a crash between a checkpoint's two
        // slot writes): a crash plan can cut that write too. The next open starts from its bytes.
        if (this.device.crashed && codeOf(err) === 'EIO') {
          stats.crashes++;
          this.device = this.newDevice(this.device.diskImage());
          continue;
        }
        assert.fail(`reopening after ${crashed ? 'a crash' : 'a clean close'} failed: ${describeError(err)}`);
      }
    }
    const actual = await readAll(this.store, this.subjects);
    const problems = reconcile(m0, items, actual);
    if (problems.length > 0) {
      assert.fail(`after ${crashed ? 'a crash' : 'a clean reopen'}, the recovered store breaks the rules:\n  ${problems.join('\n  ')}`);
    }
    for (const it of items) {
      if (it.acked) continue;
      stats.inFlight++;
      const landed = [...it.effect.writes].every(([k, v]) => sameValue(actual.keys(it.effect.subject).get(k), v ?? undefined));
      if (landed) stats.inFlightLanded++;
    }
    this.model = actual;
  }

  /**
   * The store and the model agree on every key of every subject, and on absent keys. A background
   * write (a checkpoint, a GC cycle) may meet the crash plan's cut at any moment; from then on the
   * values a store reads on demand fail with `EIO`, as a dead disk's would (values read at open are
   * still served from memory). The check then goes on with the store that a reopen brings back.
   */
  private async checkAgree(): Promise<void> {
    for (;;) {
      const r = await attempt(() => this.agree());
      if (r.ok) return;
      if (!(this.scenario.valueReads === 'on-demand' && this.device.crashed && codeOf(r.error) === 'EIO')) throw r.error;
      await this.reopen(this.model, []);
    }
  }

  private async agree(): Promise<void> {
    const store = this.open;
    const actual = await readAll(store, this.subjects);
    const problems = diff(this.model, actual);
    if (problems.length > 0) assert.fail(`the store disagrees with the model:\n  ${problems.join('\n  ')}`);
    for (const subject of this.subjects) {
      for (const key of KEYS) {
        if (this.model.keys(subject).has(key)) continue;
        const v = await store.get(subject, key);
        if (v !== undefined) assert.fail(`${subject} ${key}: the model has no value, get returns ${show(v)}`);
      }
    }
  }
}

async function runScenario(scenario: Scenario, image: Uint8Array): Promise<void> {
  stats.runs++;
  const h = new Harness(scenario, image);
  await h.start();
  try {
    for (const [i, cmd] of scenario.commands.entries()) {
      try {
        await withTimeout(h.step(cmd), STEP_TIMEOUT_MS, 'the step');
      } catch (err) {
        throw new Error(`step ${i} ${JSON.stringify(cmd)}: ${describeError(err)}`, { cause: err });
      }
    }
  } finally {
    await h.close().catch(() => undefined);
  }
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`${what} did not finish within ${ms} ms`));
    }, ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n)) throw new Error(`${name}=${raw}: expected an integer`);
  return n;
}

test('the store agrees with an in-memory model through random operations, reopens and crashes', async () => {
  console.log(`model: seed ${SEED}, ${NUM_RUNS} runs of up to ${MAX_COMMANDS} commands (STATEFS_SEED, STATEFS_MODEL_RUNS)`);
  const formatted = new MemoryDevice(IMAGE_SIZE);
  await Store.format(formatted, { zeroed: true });
  const image = formatted.bytes;
  const started = Date.now();
  let failedAt: number | undefined;
  const property = fc.asyncProperty(scenarioArb, async (scenario) => {
    // Out of shrinking time: pass every further candidate, so the smallest failure so far is reported.
    if (failedAt !== undefined && Date.now() - failedAt > SHRINK_SECONDS * 1000) return;
    try {
      await runScenario(scenario, image);
    } catch (err) {
      failedAt ??= Date.now();
      throw err;
    }
  });
  try {
    await fc.assert(property, {
      seed: SEED,
      numRuns: NUM_RUNS,
      includeErrorInReport: true,
      ...(REPLAY_PATH === undefined ? {} : { path: REPLAY_PATH }),
    });
  } finally {
    const s = stats;
    console.log(
      `model: seed ${SEED}: ${s.runs} runs, ${s.steps} steps (${(s.steps / Math.max(1, s.runs)).toFixed(1)} per run), ` +
        `predicted errors ${[...s.expectedErrors].map(([c, n]) => `${c} ${n}`).join(', ')}; ${s.reopens} reopens, ${s.crashes} crashes (${s.powerCuts} by powerCut), ` +
        `${s.gcCycles} GC cycles (${s.gcMovedBytes} bytes moved), ` +
        `${s.inFlight} in-flight writes at a crash (${s.inFlightLanded} landed), ${Date.now() - started} ms`,
    );
    if (failedAt !== undefined && Date.now() - failedAt > SHRINK_SECONDS * 1000) {
      console.log(`model: shrinking stopped after ${SHRINK_SECONDS} s (STATEFS_MODEL_SHRINK_SECONDS for a smaller counterexample)`);
    }
  }
});
