import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { connect } from '../src/client/client.js';
import { fsck } from '../src/engine/fsck.js';
import { Store } from '../src/engine/store.js';
import { startDaemon } from '../src/server/daemon/daemon.js';
import { savePolicy } from '../src/server/policy/policy-file.js';
import { emptyPolicy, hashToken, newToken } from '../src/server/policy/policy.js';
import { DEFAULT_MAX_FRAME, FRAME_VERSION, HEADER_SIZE, KIND_REQUEST } from '../src/server/protocol/frame.js';
import { FrameReader } from '../src/server/protocol/frame-reader.js';
import { opByte } from '../src/server/protocol/ops.js';
import { encodeRequest } from '../src/server/protocol/request-codec.js';
import { decodeResponse } from '../src/server/protocol/response-codec.js';
import { MiB, rng, text, withTempDir } from './helpers.js';

const DEFAULT_FRAMES = 100_000;
const seed = Number(process.env.STATEFS_SEED ?? 12345); // fixed by default so CI runs are repeatable
const envFrames = Number(process.env.STATEFS_FUZZ_FRAMES ?? 0);
const targetFrames = Number.isFinite(envFrames) && envFrames > DEFAULT_FRAMES ? envFrames : DEFAULT_FRAMES;
const CONCURRENCY = 64;
const DRIBBLED = 6;
const HANG_MS = 10_000;
console.log(`daemon-fuzz: STATEFS_SEED=${seed} target frames=${targetFrames}`);

const rand = rng(seed);
const int = (n: number): number => Math.floor(rand() * n);
function pick<T>(xs: readonly T[]): T {
  const x = xs[int(xs.length)];
  if (x === undefined) throw new Error('pick from an empty list');
  return x;
}
const randomBytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256)));

// ---- frame building ----------------------------------------------------------------------------

function header(length: number, version: number, kind: number, requestId: number, op: number): Buffer {
  const b = Buffer.alloc(HEADER_SIZE);
  b.writeUInt32LE(length >>> 0, 0);
  b.writeUInt8(version & 0xff, 4);
  b.writeUInt8(kind & 0xff, 5);
  b.writeUInt32LE(requestId >>> 0, 6);
  b.writeUInt8(op & 0xff, 10);
  return b;
}

function frame(op: number, body: Buffer, version = FRAME_VERSION, kind: number = KIND_REQUEST): Buffer {
  return Buffer.concat([header(7 + body.length, version, kind, 1 + int(0xfffffffe), op), body]);
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n & 0xffff, 0);
  return b;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0, 0);
  return b;
}

const str = (bytes: Buffer): Buffer => Buffer.concat([u16(bytes.length), bytes]);
const ok = (s: string): Buffer => str(Buffer.from(s, 'utf8'));
const blob = (bytes: Buffer): Buffer => Buffer.concat([u32(bytes.length), bytes]);

const BAD_UTF8: readonly number[][] = [[0xff], [0x80], [0xc3, 0x28], [0xc0, 0xaf], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xfe, 0xfe]];

/** An otherwise valid UTF-8 string with an invalid sequence somewhere in it. */
function badUtf8(): Buffer {
  const pre = Buffer.from(`/state/${'x'.repeat(int(6))}`, 'utf8');
  const post = Buffer.from('y'.repeat(int(4)), 'utf8');
  return str(Buffer.concat([pre, Buffer.from(pick(BAD_UTF8)), post]));
}

interface Malformed {
  kind: string;
  bytes: Buffer;
}

/** Frames that are complete but must be refused (each expects an error response). */
const COMPLETE: readonly (() => Malformed)[] = [
  () => {
    const length = pick([0, 1, 6, DEFAULT_MAX_FRAME - 3, DEFAULT_MAX_FRAME + int(1000), 0x7fffffff, 0xffffffff, DEFAULT_MAX_FRAME + int(0xf0000000)]);
    return { kind: 'huge-length', bytes: Buffer.concat([header(length, FRAME_VERSION, KIND_REQUEST, 1, opByte('PUT')), randomBytes(int(16))]) };
  },
  () => ({ kind: 'unknown-version', bytes: frame(opByte('GET'), Buffer.concat([ok('alice'), ok('/state/base')]), pick([0, 2, 3, 0x7f, 0xff, 2 + int(250)])) }),
  () => ({ kind: 'unknown-kind', bytes: frame(opByte('GET'), Buffer.concat([ok('alice'), ok('/state/base')]), FRAME_VERSION, pick([0, 2, 3, 0xff, 3 + int(250)])) }),
  () => ({ kind: 'unknown-op', bytes: frame(pick([0, 21, 22, 0x7f, 0xff, 21 + int(235)]), Buffer.concat([ok('alice'), ok('/state/k'), blob(randomBytes(int(8)))])) }),
  () => {
    const bodies: (() => [number, Buffer])[] = [
      () => [opByte('HELLO'), badUtf8()],
      () => [opByte('PUT'), Buffer.concat([ok('alice'), badUtf8(), blob(randomBytes(int(8)))])],
      () => [opByte('PUT'), Buffer.concat([badUtf8(), ok('/state/k'), blob(randomBytes(int(8)))])],
      () => [opByte('GET'), Buffer.concat([ok('alice'), badUtf8()])],
      () => [opByte('DELETE'), Buffer.concat([ok('alice'), badUtf8()])],
      () => [opByte('LIST'), Buffer.concat([ok('alice'), badUtf8(), u32(0), Buffer.from([0])])],
      () => [opByte('SNAPSHOT'), Buffer.concat([ok('alice'), badUtf8()])],
      () => [opByte('MOUNT'), Buffer.concat([ok('alice'), ok('alice'), ok('s'), badUtf8()])],
      () => [opByte('TXN'), Buffer.concat([ok('alice'), u32(1), Buffer.from([1]), badUtf8(), blob(randomBytes(4))])],
    ];
    const [op, body] = pick(bodies)();
    return { kind: 'bad-utf8', bytes: frame(op, body) };
  },
  () => {
    const bodies: (() => [number, Buffer])[] = [
      () => [opByte('PUT'), Buffer.concat([ok('alice'), u16(1000), Buffer.from('abc')])],
      () => [opByte('PUT'), Buffer.concat([ok('alice'), ok('/state/k'), u32(0xffffffff), randomBytes(4)])],
      () => [opByte('PUT'), Buffer.alloc(0)],
      () => [opByte('GET'), Buffer.concat([ok('alice'), ok('/state/base'), randomBytes(1 + int(8))])],
      () => [opByte('SYNC'), randomBytes(1 + int(8))],
      () => [opByte('LIST_SNAPS'), Buffer.concat([ok('alice'), Buffer.from([2 + int(254)])])],
      () => [opByte('LIST'), Buffer.concat([ok('alice'), ok('/'), u32(0), Buffer.from([2 + int(254)])])],
      () => [opByte('TXN'), Buffer.concat([ok('alice'), u32(0xffffffff)])],
      () => [opByte('TXN'), Buffer.concat([ok('alice'), u32(1), Buffer.from([3 + int(253)]), ok('/state/k')])],
      () => [opByte('GC_NOW'), Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])],
      () => [opByte('GC_PLAN'), Buffer.from([0, 0, 0, 0, 0, 0, 0x20, 0])],
      () => [opByte('STAT'), Buffer.from([0])],
    ];
    const [op, body] = pick(bodies)();
    return { kind: 'bad-body', bytes: frame(op, body) };
  },
];

/** Random bytes: may be refused, or leave the daemon waiting for a body until the peer ends. */
const randomFrame = (): Malformed => ({ kind: 'random-bytes', bytes: randomBytes(1 + int(64)) });

/** A valid request cut short (inside the header or the body). */
function truncated(): Malformed {
  const full = Buffer.from(encodeRequest({ op: 'PUT', requestId: 7, subject: 'alice', key: '/state/truncated', value: randomBytes(int(64)) }));
  const inHeader = rand() < 0.5;
  const cut = inHeader ? 1 + int(HEADER_SIZE - 1) : HEADER_SIZE + int(full.length - HEADER_SIZE);
  return { kind: inHeader ? 'truncated-header' : 'truncated-body', bytes: full.subarray(0, cut) };
}

/** The first part of a large valid PUT; the connection is destroyed right after it. */
function midFrame(): Malformed {
  const full = Buffer.from(encodeRequest({ op: 'PUT', requestId: 9, subject: 'alice', key: '/state/midframe', value: Buffer.alloc(64 * 1024 + int(64 * 1024), 0x61) }));
  return { kind: 'disconnect-mid-frame', bytes: full.subarray(0, 1 + int(full.length - 1)) };
}

// ---- one raw connection ------------------------------------------------------------------------

interface Outcome {
  okResponses: number;
  errorResponses: number;
  undecodable: number;
  hung: boolean;
}

interface Plan {
  hello: Buffer | undefined;
  frames: Malformed[];
  expectError: boolean;
  finish: 'end' | 'destroy';
  dribbleMs: number;
}

async function session(socketPath: string, plan: Plan): Promise<Outcome> {
  const out: Outcome = { okResponses: 0, errorResponses: 0, undecodable: 0, hung: false };
  const sock = createConnection(socketPath);
  const reader = new FrameReader();
  sock.on('data', (chunk: Buffer) => {
    try {
      for (const f of reader.push(chunk)) {
        const res = decodeResponse(f);
        if (res.status === 'error') out.errorResponses += 1;
        else if (res.op !== 'HELLO') out.okResponses += 1;
      }
    } catch {
      out.undecodable += 1;
    }
  });
  sock.on('error', () => undefined); // EPIPE / ECONNRESET after the daemon closed: expected
  const closed = once(sock, 'close').then(() => undefined);
  await once(sock, 'connect');
  const payload = Buffer.concat([...(plan.hello === undefined ? [] : [plan.hello]), ...plan.frames.map((f) => f.bytes)]);
  if (plan.dribbleMs > 0) {
    for (let i = 0; i < payload.length && !sock.destroyed && sock.writable; i++) {
      sock.write(payload.subarray(i, i + 1));
      await delay(plan.dribbleMs);
    }
  } else {
    sock.write(payload);
  }
  if (plan.finish === 'destroy') sock.destroy();
  else sock.end();
  const timer = delay(HANG_MS, 'hung' as const, { ref: false });
  const result = await Promise.race([closed, timer]);
  if (result === 'hung') {
    out.hung = true;
    sock.destroy();
  }
  return out;
}

// ---- the test ----------------------------------------------------------------------------------

interface Totals {
  framesWritten: number;
  connections: number;
  firstKinds: Map<string, number>;
  failures: string[];
}

function planOne(helloFrame: Buffer): Plan {
  const hello = rand() < 0.5 ? helloFrame : undefined;
  const r = rand();
  if (r < 0.1) return { hello, frames: [truncated()], expectError: false, finish: 'end', dribbleMs: 0 };
  if (r < 0.15) return { hello, frames: [midFrame()], expectError: false, finish: 'destroy', dribbleMs: 0 };
  const count = 1 + int(8);
  const first = rand() < 0.2 ? randomFrame() : pick(COMPLETE)();
  const rest = Array.from({ length: count - 1 }, () => (rand() < 0.3 ? randomFrame() : pick(COMPLETE)()));
  return { hello, frames: [first, ...rest], expectError: first.kind !== 'random-bytes', finish: 'end', dribbleMs: 0 };
}

function check(totals: Totals, plan: Plan, outcome: Outcome): void {
  const first = plan.frames[0]?.kind ?? '(none)';
  totals.connections += 1;
  totals.framesWritten += plan.frames.length;
  totals.firstKinds.set(first, (totals.firstKinds.get(first) ?? 0) + 1);
  const what = `${first} (${plan.hello === undefined ? 'no HELLO' : 'after HELLO'}${plan.dribbleMs > 0 ? ', dribbled' : ''})`;
  if (outcome.hung) totals.failures.push(`hang: ${what}`);
  if (outcome.okResponses > 0) totals.failures.push(`accepted: ${what}`);
  if (outcome.undecodable > 0) totals.failures.push(`undecodable response: ${what}`);
  if (plan.expectError && outcome.errorResponses === 0) totals.failures.push(`no error response: ${what}`);
}

test('daemon fuzz: malformed frames never crash or hang the daemon, nothing is written, fsck is clean', async () => {
  const rejections: unknown[] = [];
  const onRejection = (reason: unknown): void => {
    rejections.push(reason);
  };
  process.on('unhandledRejection', onRejection);
  try {
    await withTempDir(async (dir) => {
      const policy = emptyPolicy();
      const token = newToken();
      policy.subjects.set('alice', { tokenSha256: hashToken(token), rights: ['read', 'write', 'snapshot', 'mount', 'gc', 'admin'], grants: [] });
      const paths = { image: join(dir, 'img'), socket: join(dir, 'sock'), policy: join(dir, 'policy.json'), audit: join(dir, 'audit.log') };
      await savePolicy(paths.policy, policy);
      const daemon = await startDaemon({ imagePath: paths.image, socketPath: paths.socket, policyPath: paths.policy, auditPath: paths.audit, createSize: 8 * MiB });
      const helloFrame = Buffer.from(encodeRequest({ op: 'HELLO', requestId: 1, token }));
      const totals: Totals = { framesWritten: 0, connections: 0, firstKinds: new Map(), failures: [] };
      let heapBefore = 0;
      let heapAfter = 0;
      try {
        const setup = await connect({ socket: paths.socket, token });
        await setup.put('alice', '/state/base', 'base');
        const keysBefore = (await setup.list('alice')).keys.length;
        await setup.close();

        heapBefore = process.memoryUsage().heapUsed;
        const started = performance.now();
        // A few connections dribble a malformed frame one byte at a time, alongside the rest.
        const dribbles = Array.from({ length: DRIBBLED }, (_, i) => {
          const plan: Plan = { hello: i % 2 === 0 ? helloFrame : undefined, frames: [pick(COMPLETE)()], expectError: true, finish: 'end', dribbleMs: 1 + (i % 3) };
          return session(paths.socket, plan).then((o) => {
            check(totals, plan, o);
          });
        });
        const worker = async (): Promise<void> => {
          while (totals.framesWritten < targetFrames && totals.failures.length === 0) {
            const plan = planOne(helloFrame);
            check(totals, plan, await session(paths.socket, plan));
          }
        };
        await Promise.all([...dribbles, ...Array.from({ length: CONCURRENCY }, worker)]);
        const seconds = (performance.now() - started) / 1000;
        heapAfter = process.memoryUsage().heapUsed;
        console.log(
          `daemon-fuzz: seed=${seed} frames written=${totals.framesWritten} connections (first malformed frame parsed)=${totals.connections} ` +
            `in ${seconds.toFixed(1)} s (${Math.round(totals.framesWritten / seconds)} frames/s, ${Math.round(totals.connections / seconds)} conn/s)`,
        );
        console.log(`daemon-fuzz: first-frame kinds ${JSON.stringify(Object.fromEntries([...totals.firstKinds].sort()))}`);
        console.log(`daemon-fuzz: heapUsed before=${(heapBefore / MiB).toFixed(1)} MiB after=${(heapAfter / MiB).toFixed(1)} MiB`);
        assert.deepEqual(totals.failures.slice(0, 10), [], `seed ${seed}: ${totals.failures.length} failures`);
        assert.ok(totals.framesWritten >= targetFrames);

        // The daemon still serves a well-formed client; nothing was written for a rejected frame.
        const client = await connect({ socket: paths.socket, token });
        try {
          assert.equal((await client.list('alice')).keys.length, keysBefore, `seed ${seed}: keys changed by rejected frames`);
          await client.put('alice', '/state/final', 'after the fuzz');
          assert.equal(text(await client.get('alice', '/state/final')), 'after the fuzz');
          assert.deepEqual((await client.list('alice')).keys, ['/state/base', '/state/final']);
        } finally {
          await client.close();
        }
      } finally {
        await daemon.close();
      }
      assert.ok(heapAfter < heapBefore + 200 * MiB, `heap grew from ${heapBefore} to ${heapAfter}`);

      const report = await fsck(paths.image);
      assert.equal(report.exitCode, 0, JSON.stringify(report.findings));
      const store = await Store.open(paths.image);
      try {
        assert.deepEqual((await store.list('alice')).keys, ['/state/base', '/state/final']);
      } finally {
        await store.close();
      }
    });
    await delay(10);
    assert.deepEqual(rejections, [], `seed ${seed}: unhandled rejections`);
  } finally {
    process.off('unhandledRejection', onRejection);
  }
});
