import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { connect, type Client } from '../../src/client/client.js';
import { fsck } from '../../src/engine/fsck.js';
import { checkSubject } from '../../src/engine/names.js';
import { Store } from '../../src/engine/store.js';
import { isStatefsError } from '../../src/errors.js';
import { verifyAuditLog } from '../../src/server/audit/verify.js';
import { startDaemon } from '../../src/server/daemon/daemon.js';
import { savePolicy } from '../../src/server/policy/policy-file.js';
import { emptyPolicy, hashToken, newToken } from '../../src/server/policy/policy.js';
import { DEFAULT_MAX_FRAME, HEADER_SIZE } from '../../src/server/protocol/frame.js';
import { FrameReader } from '../../src/server/protocol/frame-reader.js';
import type { Request, Response } from '../../src/server/protocol/messages.js';
import type { OpName } from '../../src/server/protocol/ops.js';
import { encodeRequest } from '../../src/server/protocol/request-codec.js';
import { decodeResponse } from '../../src/server/protocol/response-codec.js';
import { MiB, rng, text, withTempDir } from '../helpers.js';
import { guardResources } from '../hygiene.js';
import { recordFigures } from './counters.js';
import { decodeStream, int, loadCorpus, mutate, pick, type Rand } from './frames.js';
import { heapAfterGc } from './heap.js';
import { byMode, countFromEnv, seedFromEnv } from './mode.js';

guardResources();

const seed = seedFromEnv(12345);
const targetFrames = countFromEnv('STATEFS_FUZZ_SOCKET_FRAMES', byMode(100_000, 300_000));
const CONCURRENCY = 64;
const DRIBBLED = 6;
const STALLED = 8;
const FLOOD = 400;
const MAX_CONNECTIONS = 200;
const FRAME_TIMEOUT_MS = 1_000;
const HANG_MS = 15_000;
/** Growth allowed over the whole fuzz (daemon and clients share this process): heap after a full GC, and RSS. */
const HEAP_BOUND = 16 * MiB;
const RSS_BOUND = 128 * MiB;
console.log(`socket-fuzz: STATEFS_SEED=${seed} STATEFS_FUZZ_SOCKET_FRAMES=${targetFrames}`);

/** The fuzz connects as mallory, who may only read her own keys: nothing she sends can change the image. */
const FUZZER = 'mallory';
const READS: ReadonlySet<OpName> = new Set<OpName>(['GET', 'LIST', 'LIST_SNAPS', 'DIFF_SNAPS', 'VERIFY_SNAP', 'LIST_MOUNTS', 'STAT', 'TXN_GET']);

function subjectsOf(req: Exclude<Request, { op: 'HELLO' }>): string[] {
  switch (req.op) {
    case 'MOUNT':
      return [req.caller, req.owner];
    case 'UMOUNT':
    case 'LIST_MOUNTS':
      return [req.caller];
    case 'SYNC':
    case 'STAT':
    case 'GC_NOW':
    case 'GC_PLAN':
    case 'REOPEN':
      return [];
    default:
      return [req.subject];
  }
}

// ---- what the daemon must answer ---------------------------------------------------------------

type Want = 'EPERM' | 'not-EPERM' | 'EINVAL' | 'ENOTSUP' | 'ENAMETOOLONG';

interface Expected {
  requestId: number;
  op: OpName | undefined;
  want: Want;
  /** Answered before the daemon reads on (a refusal); the others are answered after the store or the audit log. */
  sync: boolean;
  /** Allowed but not required (the partial-frame timeout answer of a session left incomplete). */
  optional: boolean;
}

interface Model {
  expected: Expected[];
  /** Requests the daemon must deny, each with one EPERM line in the audit log. */
  denials: number;
  /** The daemon answers a refusal and closes the connection. */
  fatal: boolean;
  /** Bytes of an unfinished frame are left at the daemon. */
  incomplete: boolean;
}

const HELLO_ID = 1;

/** The code `checkSubject` gives the first malformed name of `subjects`, if one is. */
function nameError(subjects: readonly string[]): 'EINVAL' | 'ENAMETOOLONG' | undefined {
  for (const subject of subjects) {
    try {
      checkSubject(subject, 'fuzz');
    } catch (err) {
      return isStatefsError(err) && err.code === 'ENAMETOOLONG' ? 'ENAMETOOLONG' : 'EINVAL';
    }
  }
  return undefined;
}

/** The daemon's answers to `payload` on a connection that did (or did not) first say HELLO as the fuzzer. */
function model(authed: boolean, payload: Uint8Array): Model {
  const r = decodeStream(payload, DEFAULT_MAX_FRAME);
  const m: Model = { expected: [], denials: 0, fatal: false, incomplete: r.end.kind === 'incomplete' };
  if (authed) m.expected.push({ requestId: HELLO_ID, op: 'HELLO', want: 'not-EPERM', sync: true, optional: false });
  for (const { req } of r.decoded) {
    const at = { requestId: req.requestId, op: req.op, optional: false };
    if (req.op === 'HELLO') {
      if (authed) {
        m.expected.push({ ...at, want: 'EINVAL', sync: true }); // already authenticated
        continue;
      }
      // No corpus or mutated token is the fuzzer's: unknown, denied, audited, closed.
    } else if (authed) {
      // A malformed subject name gets the store's own code before the policy is asked, unaudited.
      const malformed = nameError(subjectsOf(req));
      if (malformed !== undefined) {
        m.expected.push({ ...at, want: malformed, sync: false });
        continue;
      }
      const allowed = READS.has(req.op) && subjectsOf(req).every((s) => s === FUZZER);
      m.expected.push({ ...at, want: allowed ? 'not-EPERM' : 'EPERM', sync: false });
      if (!allowed) m.denials++;
      continue;
    }
    m.expected.push({ ...at, want: 'EPERM', sync: true });
    m.denials++;
    m.fatal = true;
    m.incomplete = false;
    return m;
  }
  if (r.end.kind === 'refused') {
    m.expected.push({ requestId: r.end.requestId, op: r.end.op, want: r.end.code, sync: true, optional: false });
    m.fatal = true;
  }
  if (m.incomplete) m.expected.push({ requestId: 0, op: undefined, want: 'EINVAL', sync: true, optional: true });
  return m;
}

function satisfies(res: Response, e: Expected): boolean {
  if (res.requestId !== e.requestId || res.op !== e.op) return false;
  const code = res.status === 'error' ? res.error.code : 'OK';
  return e.want === 'not-EPERM' ? code !== 'EPERM' : code === e.want;
}

// ---- one raw connection ------------------------------------------------------------------------

interface Observed {
  responses: Response[];
  undecodable: number;
  /** The daemon closed its side before we closed ours. */
  daemonEnded: boolean;
  hung: boolean;
}

interface Plan {
  what: string;
  hello: Uint8Array | undefined;
  payload: Uint8Array;
  /** Frames the fuzz counts for this session. */
  frames: number;
  dribbleMs: number;
  /** Destroy the connection right after writing (a peer that vanishes mid-frame). */
  destroy: boolean;
  /** Leave the partial frame until the daemon's frame timeout answers and closes. */
  stall: boolean;
  /** Once answered, keep the connection open until this settles. */
  hold?: Promise<void>;
}

/**
 * `settled` resolves true once `done()` holds (checked whenever `poke` is called), or false after
 * HANG_MS. `cancel` drops the timer, so that finished sessions hold no memory.
 */
function until(done: () => boolean): { poke: () => void; settled: Promise<boolean>; cancel: () => void } {
  let resolve: (v: boolean) => void = () => undefined;
  const settled = new Promise<boolean>((r) => {
    resolve = r;
  });
  const timer = setTimeout(() => {
    resolve(false);
  }, HANG_MS);
  const poke = (): void => {
    if (done()) {
      clearTimeout(timer);
      resolve(true);
    }
  };
  return { poke, settled, cancel: () => { clearTimeout(timer); } };
}

async function session(socketPath: string, plan: Plan, m: Model, onAnswered: () => void = () => undefined): Promise<Observed> {
  const out: Observed = { responses: [], undecodable: 0, daemonEnded: false, hung: false };
  const sock: Socket = createConnection(socketPath);
  const reader = new FrameReader();
  let weEnded = false;
  let closed = false;
  const required = m.expected.filter((e) => !e.optional).length;
  const finished = until(() => closed || out.daemonEnded || (!plan.stall && !m.fatal && out.responses.length >= required));
  sock.on('data', (chunk: Buffer) => {
    try {
      for (const f of reader.push(chunk)) out.responses.push(decodeResponse(f));
    } catch {
      out.undecodable += 1;
    }
    finished.poke();
  });
  sock.on('end', () => {
    if (!weEnded) out.daemonEnded = true;
    finished.poke();
  });
  sock.on('error', () => undefined); // EPIPE / ECONNRESET after the daemon closed: expected
  const gone = once(sock, 'close').then(() => {
    closed = true;
    finished.poke();
  });
  await once(sock, 'connect');
  const bytes = plan.hello === undefined ? plan.payload : Buffer.concat([plan.hello, plan.payload]);
  if (plan.dribbleMs > 0) {
    for (let i = 0; i < bytes.length && !sock.destroyed && sock.writable; i++) {
      sock.write(bytes.subarray(i, i + 1));
      await delay(plan.dribbleMs);
    }
  } else {
    sock.write(bytes);
  }
  if (plan.destroy) {
    finished.cancel();
    sock.destroy();
    await gone;
    return out;
  }
  finished.poke(); // nothing may be owed at all
  out.hung = !(await finished.settled);
  onAnswered();
  await plan.hold;
  weEnded = true;
  sock.end();
  const timer = new AbortController();
  const ended = await Promise.race([gone.then(() => true), delay(HANG_MS, false, { signal: timer.signal }).catch(() => false)]);
  timer.abort(); // a finished session holds no timer
  if (!ended) {
    out.hung = true;
    sock.destroy();
    await gone;
  }
  return out;
}

// ---- checks ------------------------------------------------------------------------------------

interface Totals {
  framesWritten: number;
  sessions: number;
  denials: number;
  responses: number;
  eperm: number;
  kinds: Map<string, number>;
  violations: string[];
}

function check(totals: Totals, plan: Plan, m: Model, o: Observed): void {
  totals.sessions += 1;
  totals.framesWritten += plan.frames;
  totals.denials += m.denials;
  totals.kinds.set(plan.what, (totals.kinds.get(plan.what) ?? 0) + 1);
  totals.responses += o.responses.length;
  totals.eperm += o.responses.filter((r) => r.status === 'error' && r.error.code === 'EPERM').length;
  if (plan.destroy) return; // nothing is owed to a peer that left
  const seen = o.responses.map((r) => `${r.op ?? '(connection)'}#${r.requestId}:${r.status === 'error' ? r.error.code : 'OK'}`);
  const where = `${plan.what} (${plan.hello === undefined ? 'no HELLO' : 'after HELLO'}; answers ${seen.join(' ')}; ${o.daemonEnded ? 'closed by the daemon' : 'left open'}) ${Buffer.from(plan.payload.subarray(0, 96)).toString('hex')}`;
  const fail = (why: string): void => {
    totals.violations.push(`${why}: ${where}`);
  };
  if (o.hung) fail('hang');
  if (o.undecodable > 0) fail('undecodable response');
  // Match each answer to what it may answer: a refusal first, since it cannot be lost.
  const open = [...m.expected].sort((a, b) => Number(b.sync) - Number(a.sync));
  for (const res of o.responses) {
    const i = open.findIndex((e) => satisfies(res, e));
    if (i < 0) {
      const code = res.status === 'error' ? res.error.code : 'OK';
      fail(`unexpected response ${res.op ?? '(connection)'} #${res.requestId} ${code}; expected ${JSON.stringify(m.expected)}`);
      continue;
    }
    open.splice(i, 1);
  }
  // A refusal is answered at once; other answers may be lost only when the daemon closed the
  // connection. A dribbled stream may outlast the partial-frame timeout (a slow machine stretches
  // the delays between its bytes): then the frames after the cut are never seen.
  const cut = plan.dribbleMs > 0 && o.responses.some((r) => r.requestId === 0 && r.op === undefined && r.error.code === 'EINVAL');
  const missing = cut ? [] : open.filter((e) => !e.optional && (e.sync || !o.daemonEnded));
  if (missing.length > 0) fail(`no answer to ${JSON.stringify(missing)}`);
  if ((m.fatal || plan.stall) && !o.daemonEnded) fail('the daemon did not close the connection');
  if (!m.fatal && !m.incomplete && !cut && o.daemonEnded) fail('the daemon closed the connection without a refusal');
}

// ---- plans -------------------------------------------------------------------------------------

/** A large valid PUT cut short; the connection is destroyed right after it. */
function midFrame(rand: Rand, hello: Uint8Array): Plan {
  const full = encodeRequest({ op: 'PUT', requestId: 9, subject: FUZZER, key: '/state/midframe', value: Buffer.alloc(32 * 1024 + int(rand, 32 * 1024), 0x61) });
  return { what: 'mid-frame-destroy', hello, payload: full.subarray(0, HEADER_SIZE + int(rand, full.length - HEADER_SIZE)), frames: 1, dribbleMs: 0, destroy: true, stall: false };
}

function mutants(rand: Rand, bases: readonly Uint8Array[], hello: Uint8Array, count: number): Plan {
  const parts = Array.from({ length: count }, () => (rand() < 0.1 ? pick(rand, bases) : mutate(rand, pick(rand, bases), bases).bytes));
  return { what: 'mutants', hello: rand() < 0.8 ? hello : undefined, payload: Buffer.concat(parts), frames: count, dribbleMs: 0, destroy: false, stall: false };
}

function plan(rand: Rand, bases: readonly Uint8Array[], hello: Uint8Array): Plan {
  if (rand() < 0.05) return midFrame(rand, hello);
  return mutants(rand, bases, hello, 1 + int(rand, 8));
}

/** A valid frame cut inside its header or body, left there. */
function stalled(rand: Rand, hello: Uint8Array): Plan {
  const full = encodeRequest({ op: 'GET', requestId: 5, subject: FUZZER, key: '/state/stalled' });
  return { what: 'stalled-partial-frame', hello, payload: full.subarray(0, 1 + int(rand, full.length - 1)), frames: 1, dribbleMs: 0, destroy: false, stall: true };
}

// ---- the daemon under fuzz ---------------------------------------------------------------------

interface Fixture {
  socket: string;
  audit: string;
  image: string;
  ownerToken: string;
  fuzzerToken: string;
}

/** Runs `fn` against a fresh daemon, then `afterClose` once the daemon has closed. */
async function withDaemon(fn: (f: Fixture) => Promise<void>, afterClose: (f: Fixture) => Promise<void>): Promise<void> {
  await withTempDir(async (dir) => {
    const policy = emptyPolicy();
    const ownerToken = newToken();
    const fuzzerToken = newToken();
    policy.subjects.set('alice', { tokenSha256: hashToken(ownerToken), rights: ['read', 'write', 'snapshot', 'mount', 'gc', 'admin'], grants: [] });
    policy.subjects.set(FUZZER, { tokenSha256: hashToken(fuzzerToken), rights: ['read'], grants: [] });
    const f = { socket: join(dir, 'sock'), audit: join(dir, 'audit.log'), image: join(dir, 'img'), ownerToken, fuzzerToken };
    const policyPath = join(dir, 'policy.json');
    await savePolicy(policyPath, policy);
    const daemon = await startDaemon({
      imagePath: f.image,
      socketPath: f.socket,
      policyPath,
      auditPath: f.audit,
      createSize: 8 * MiB,
      maxConnections: MAX_CONNECTIONS,
      frameTimeoutMs: FRAME_TIMEOUT_MS,
    });
    try {
      await fn(f);
    } finally {
      await daemon.close();
    }
    await afterClose(f);
  });
}

/** subject, op and result of every audit line. */
async function auditLines(path: string): Promise<{ subject: string; op: string; result: string }[]> {
  const lines = (await readFile(path, 'utf8')).split('\n').slice(0, -1);
  return lines.map((l) => {
    const rec: unknown = JSON.parse(l);
    if (typeof rec !== 'object' || rec === null || !('subject' in rec) || !('op' in rec) || !('result' in rec)) throw new Error(`audit line ${l}`);
    const { subject, op, result } = rec;
    if (typeof subject !== 'string' || typeof op !== 'string' || typeof result !== 'string') throw new Error(`audit line ${l}`);
    return { subject, op, result };
  });
}

/** What the fuzz must leave exactly as it was: alice's keys and values, and no snapshots or mounts. */
async function contents(client: Client): Promise<unknown> {
  const keys = (await client.list('alice')).keys;
  const values = await Promise.all(keys.map(async (k) => text(await client.get('alice', k))));
  return { keys, values, snaps: await client.listSnaps('alice'), mounts: await client.listMounts('alice') };
}

test(`socket fuzz: ${targetFrames} corpus mutants, partial, stalled and dribbled frames and a connection flood never crash or hang the daemon; every denial is audited; nothing changes; memory bounded`, { timeout: 600_000 }, async () => {
  const rand = rng(seed);
  const corpus = loadCorpus();
  const bases = corpus.filter((e) => e.bytes.length <= 1024 && e.maxFrame === DEFAULT_MAX_FRAME).map((e) => e.bytes);
  const totals: Totals = { framesWritten: 0, sessions: 0, denials: 0, responses: 0, eperm: 0, kinds: new Map(), violations: [] };
  let heapGrowth = 0;
  let rssGrowth = 0;
  let floodRefused = 0;
  let auditedDenials = 0;
  await withDaemon(async (f) => {
    const hello = encodeRequest({ op: 'HELLO', requestId: HELLO_ID, token: f.fuzzerToken });
    const run = async (p: Plan): Promise<void> => {
      const m = model(p.hello !== undefined, p.payload);
      // A stalled frame must get the partial-frame timeout's answer; a dribbled one may.
      if (p.stall) m.expected = m.expected.map((e) => (e.optional ? { ...e, optional: false } : e));
      if (p.dribbleMs > 0 && !m.incomplete) m.expected.push({ requestId: 0, op: undefined, want: 'EINVAL', sync: true, optional: true });
      check(totals, p, m, await session(f.socket, p, m));
    };
    const owner = await connect({ socket: f.socket, token: f.ownerToken });
    let before: unknown;
    try {
      await owner.put('alice', '/state/base', 'base');
      await owner.put('alice', '/state/other', 'other');
      before = await contents(owner);
    } finally {
      await owner.close();
    }

    // 1. The regression corpus, each entry on its own connection, as it is and after HELLO.
    for (const e of corpus.filter((c) => c.maxFrame === DEFAULT_MAX_FRAME)) {
      for (const h of [hello, undefined]) await run({ what: `corpus ${e.file}`, hello: h, payload: e.bytes, frames: 1, dribbleMs: 0, destroy: false, stall: false });
    }

    // 2. Mutants from 64 connections at a time, with dribbled and stalled connections alongside.
    const heapBefore = heapAfterGc();
    const rssBefore = process.memoryUsage().rss;
    const started = performance.now();
    const dribbles = Array.from({ length: DRIBBLED }, (_, i) => run({ ...mutants(rand, bases, hello, 1), what: 'dribbled', dribbleMs: 1 + (i % 3) }));
    const stalls = Array.from({ length: STALLED }, () => run(stalled(rand, hello)));
    const worker = async (): Promise<void> => {
      while (totals.framesWritten < targetFrames && totals.violations.length < 10) await run(plan(rand, bases, hello));
    };
    await Promise.all([...dribbles, ...stalls, ...Array.from({ length: CONCURRENCY }, worker)]);
    const seconds = (performance.now() - started) / 1000;

    // 3. A connection flood: twice the daemon's limit open at once. The ones over it get EAGAIN and are closed.
    const denied = encodeRequest({ op: 'PUT', requestId: 2, subject: FUZZER, key: '/state/flood', value: Buffer.from('x') });
    let answered = 0;
    let release: () => void = () => undefined;
    const hold = new Promise<void>((resolve) => {
      release = resolve;
    });
    const flood = await Promise.all(
      Array.from({ length: FLOOD }, async () => {
        const p: Plan = { what: 'flood', hello, payload: denied, frames: 1, dribbleMs: 0, destroy: false, stall: false, hold };
        const o = await session(f.socket, p, model(true, denied), () => {
          if (++answered === FLOOD) release();
        });
        return { p, o };
      }),
    );
    for (const { p, o } of flood) {
      const refused = o.responses.length === 1 && o.responses[0]?.status === 'error' && o.responses[0].requestId === 0 && o.responses[0].error.code === 'EAGAIN';
      if (refused) {
        floodRefused++;
        totals.framesWritten += p.frames;
        totals.sessions++;
        if (!o.daemonEnded) totals.violations.push('flood: a refused connection was left open');
      } else {
        check(totals, p, model(true, denied), o);
      }
    }
    heapGrowth = heapAfterGc() - heapBefore;
    rssGrowth = process.memoryUsage().rss - rssBefore;
    console.log(
      `socket-fuzz: seed=${seed} frames=${totals.framesWritten} sessions=${totals.sessions} responses=${totals.responses} ` +
        `denials=${totals.denials} (EPERM answers seen ${totals.eperm}) flood refused=${floodRefused}/${FLOOD} in ${seconds.toFixed(1)} s + flood`,
    );
    console.log(`socket-fuzz: sessions by kind ${JSON.stringify(Object.fromEntries([...totals.kinds].filter(([k]) => !k.startsWith('corpus')).sort()))}`);
    console.log(`socket-fuzz: growth: heap after GC ${(heapGrowth / MiB).toFixed(1)} MiB (bound ${HEAP_BOUND / MiB}), RSS ${(rssGrowth / MiB).toFixed(1)} MiB (bound ${RSS_BOUND / MiB})`);

    // The daemon still serves its owner, and nothing the fuzzer sent changed anything.
    const after = await connect({ socket: f.socket, token: f.ownerToken });
    try {
      assert.deepEqual(await contents(after), before, `seed ${seed}: the fuzz changed the image`);
      await after.put('alice', '/state/final', 'after the fuzz');
      assert.equal(text(await after.get('alice', '/state/final')), 'after the fuzz');
    } finally {
      await after.close();
    }
  }, async (f) => {
    // Every denial the fuzz caused has its line, and there is no other line: the fuzzer can do nothing else.
    await verifyAuditLog(f.audit);
    const lines = await auditLines(f.audit);
    const other = lines.filter((l) => l.result !== 'EPERM' || (l.subject !== FUZZER && l.subject !== '(unauthenticated)'));
    assert.deepEqual(other.slice(0, 5), [], `seed ${seed}: ${other.length} audit lines that are not a denial of the fuzzer`);
    auditedDenials = lines.length;
    const report = await fsck(f.image);
    assert.equal(report.exitCode, 0, JSON.stringify(report.findings));
    const store = await Store.open(f.image);
    try {
      assert.deepEqual((await store.list('alice')).keys, ['/state/base', '/state/final', '/state/other']);
      assert.deepEqual((await store.list(FUZZER)).keys, []);
    } finally {
      await store.close();
    }
  });
  console.log(`socket-fuzz: audit lines ${auditedDenials}, denials the model predicts ${totals.denials}`);
  recordFigures('protocol-fuzz-socket', { seed, fuzzFrames: totals.framesWritten, violations: totals.violations.length, heapGrowthBytes: heapGrowth, rssGrowthBytes: rssGrowth });
  assert.deepEqual(totals.violations.slice(0, 10), [], `seed ${seed}: ${totals.violations.length} violations`);
  assert.equal(auditedDenials, totals.denials, `seed ${seed}: audit lines against denials`);
  assert.ok(totals.denials > 0);
  assert.ok(totals.framesWritten >= targetFrames);
  assert.ok(floodRefused >= FLOOD - MAX_CONNECTIONS, `only ${floodRefused} of ${FLOOD} flood connections were refused`);
  assert.ok(heapGrowth < HEAP_BOUND, `heap grew by ${heapGrowth} bytes`);
  assert.ok(rssGrowth < RSS_BOUND, `RSS grew by ${rssGrowth} bytes`);
});

test('slow partial frames: a frame trickled in byte by byte is refused once it is FRAME_TIMEOUT old, however steadily its bytes arrive', async () => {
  await withDaemon(async (f) => {
    // Regression: the partial-frame timer restarted on every byte, so a peer sending one byte a
    // little more often than the timeout held its connection (and up to a frame of memory) forever.
    const hello = encodeRequest({ op: 'HELLO', requestId: HELLO_ID, token: f.fuzzerToken });
    const frame = encodeRequest({ op: 'GET', requestId: 7, subject: FUZZER, key: '/state/slow-loris/key' });
    const sock = createConnection(f.socket);
    const reader = new FrameReader();
    const answers: Response[] = [];
    sock.on('data', (chunk: Buffer) => answers.push(...reader.push(chunk).map(decodeResponse)));
    sock.on('error', () => undefined);
    const closedByDaemon = once(sock, 'end');
    await once(sock, 'connect');
    sock.write(hello);
    const byteEvery = FRAME_TIMEOUT_MS / 4;
    const started = Date.now();
    let sent = 0;
    for (; sent < frame.length && sock.writable && !sock.readableEnded; sent++) {
      sock.write(frame.subarray(sent, sent + 1));
      await delay(byteEvery);
    }
    await Promise.race([closedByDaemon, delay(3 * FRAME_TIMEOUT_MS)]);
    const after = Date.now() - started;
    sock.destroy();
    assert.ok(sent < frame.length, `the whole frame went through (${sent} bytes in ${after} ms)`);
    // Cut at the deadline (with room for a loaded machine), long before the frame could complete.
    assert.ok(after >= FRAME_TIMEOUT_MS && after < 3 * FRAME_TIMEOUT_MS, `closed ${after} ms after the first byte`);
    assert.deepEqual(answers.map((a) => [a.op ?? '(connection)', a.status === 'error' ? a.error.code : 'OK']), [['HELLO', 'OK'], ['(connection)', 'EINVAL']]);
  }, () => Promise.resolve());
});
