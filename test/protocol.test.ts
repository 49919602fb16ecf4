import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ERROR_CODES, StatefsError, type ErrorCode } from '../src/errors.js';
import { HEADER_SIZE, encodeFrame, type Frame } from '../src/server/protocol/frame.js';
import { FrameReader } from '../src/server/protocol/frame-reader.js';
import type { OkResponse, Request, TxnWireOp } from '../src/server/protocol/messages.js';
import { OP_NAMES, opByte } from '../src/server/protocol/ops.js';
import { decodeRequest, encodeRequest } from '../src/server/protocol/request-codec.js';
import { decodeResponse, encodeResponse, errorResponse } from '../src/server/protocol/response-codec.js';
import { guardResources } from './hygiene.js';

guardResources();

const seed = Number(process.env.STATEFS_SEED ?? Date.now() % 0x7fffffff);
console.log(`protocol: STATEFS_SEED=${seed}`);

function one(frames: Frame[]): Frame {
  assert.equal(frames.length, 1);
  const [f] = frames;
  assert.ok(f);
  return f;
}

function readOne(bytes: Uint8Array): Frame {
  return one(new FrameReader().push(bytes));
}

// ---- arbitraries ---------------------------------------------------------------------------

/** fc.record builds null-prototype objects; deepStrictEqual wants plain ones. */
function plain<T extends object>(arb: fc.Arbitrary<T>): fc.Arbitrary<T> {
  return arb.map((x) => ({ ...x }));
}

const str = fc.string({ unit: 'binary', maxLength: 12 });
const u64 = fc.nat({ max: Number.MAX_SAFE_INTEGER });
const id = fc.nat({ max: 0xffff_ffff });
const bytes = fc.uint8Array({ maxLength: 40 });
const strs = fc.array(str, { maxLength: 5 });
const optStr = fc.option(str, { nil: undefined });

const txnOp: fc.Arbitrary<TxnWireOp> = fc.oneof(
  plain(fc.record({ key: str, value: bytes })).map(({ key, value }): TxnWireOp => ({ type: 'put', key, value })),
  str.map((key): TxnWireOp => ({ type: 'delete', key })),
);

const requestArb: fc.Arbitrary<Request> = fc.oneof(
  fc.tuple(id, str).map(([requestId, token]): Request => ({ op: 'HELLO', requestId, token })),
  fc.tuple(id, str, str, bytes).map(([requestId, subject, key, value]): Request => ({ op: 'PUT', requestId, subject, key, value })),
  fc.tuple(id, str, str, fc.constantFrom('GET' as const, 'DELETE' as const)).map(([requestId, subject, key, op]): Request => ({ op, requestId, subject, key })),
  fc.tuple(id, str, str, fc.option(fc.integer({ min: 1, max: 0xffff_ffff }), { nil: undefined }), optStr).map(([requestId, subject, prefix, limit, after]): Request => {
    const req = { op: 'LIST' as const, requestId, subject, prefix };
    const withLimit = limit === undefined ? req : { ...req, limit };
    return after === undefined ? withLimit : { ...withLimit, after };
  }),
  fc.tuple(id, str, fc.array(txnOp, { maxLength: 6 })).map(([requestId, subject, ops]): Request => ({ op: 'TXN', requestId, subject, ops })),
  fc
    .tuple(id, str, str, fc.constantFrom('SNAPSHOT' as const, 'DELETE_SNAP' as const, 'RESTORE_SNAP' as const, 'VERIFY_SNAP' as const))
    .map(([requestId, subject, name, op]): Request => ({ op, requestId, subject, name })),
  fc.tuple(id, str, fc.boolean()).map(([requestId, subject, details]): Request => ({ op: 'LIST_SNAPS', requestId, subject, details })),
  fc.tuple(id, str, str, str).map(([requestId, subject, a, b]): Request => ({ op: 'DIFF_SNAPS', requestId, subject, a, b })),
  fc.tuple(id, str, str, str, str).map(([requestId, caller, owner, name, path]): Request => ({ op: 'MOUNT', requestId, caller, owner, name, path })),
  fc.tuple(id, str, str).map(([requestId, caller, path]): Request => ({ op: 'UMOUNT', requestId, caller, path })),
  fc.tuple(id, str).map(([requestId, caller]): Request => ({ op: 'LIST_MOUNTS', requestId, caller })),
  fc.tuple(id, fc.option(fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), { nil: undefined }), fc.constantFrom('GC_NOW' as const, 'GC_PLAN' as const)).map(([requestId, maxBytes, op]): Request => (maxBytes === undefined ? { op, requestId } : { op, requestId, maxBytes })),
  fc.tuple(id, fc.constantFrom('SYNC' as const, 'STAT' as const, 'REOPEN' as const)).map(([requestId, op]): Request => ({ op, requestId })),
  fc.tuple(id, id, str, fc.constantFrom('TXN_BEGIN' as const, 'TXN_COMMIT' as const, 'TXN_ABORT' as const)).map(([requestId, txn, subject, op]): Request => ({ op, requestId, txn, subject })),
  fc.tuple(id, id, str, str, bytes).map(([requestId, txn, subject, key, value]): Request => ({ op: 'TXN_PUT', requestId, txn, subject, key, value })),
  fc.tuple(id, id, str, str, fc.constantFrom('TXN_DELETE' as const, 'TXN_GET' as const)).map(([requestId, txn, subject, key, op]): Request => ({ op, requestId, txn, subject, key })),
  fc
    .tuple(id, str, fc.array(plain(fc.record({ key: str, value: bytes })), { maxLength: 5 }))
    .map(([requestId, subject, entries]): Request => ({ op: 'PUT_MANY', requestId, subject, entries })),
);

const gcResult = plain(fc.record({ freedBytes: u64, movedBytes: u64, scannedBytes: u64, remainingGarbageBytes: u64, segmentsFreed: u64 }));
const pin = plain(fc.record({ subject: str, name: str, exclusiveBytes: u64 }));
const snapInfo = fc.tuple(str, u64, u64, u64, u64, fc.option(str, { nil: undefined })).map(([name, id, keys, bytes, exclusiveBytes, digest]) => {
  const base = { name, id, keys, bytes, exclusiveBytes };
  return digest === undefined ? base : { ...base, digest };
});
const storeStat = plain(fc.record({
  capacity: u64,
  segmentSize: u64,
  segments: u64,
  segmentsUsed: u64,
  segmentsFree: u64,
  usedBytes: u64,
  liveBytes: u64,
  garbageBytes: u64,
  freeBytes: u64,
  subjects: fc.array(plain(fc.record({ subject: str, keys: u64, liveBytes: u64, snapshotOnlyBytes: u64, usedBytes: u64, snapshots: u64 })), { maxLength: 3 }),
  snapshots: fc.array(pin, { maxLength: 3 }),
}));
const emptyOk = fc.constantFrom(
  ...(['PUT', 'DELETE', 'SYNC', 'TXN', 'SNAPSHOT', 'DELETE_SNAP', 'RESTORE_SNAP', 'MOUNT', 'UMOUNT', 'REOPEN', 'TXN_BEGIN', 'TXN_PUT', 'TXN_DELETE', 'TXN_COMMIT', 'TXN_ABORT', 'PUT_MANY'] as const),
);

const okArb: fc.Arbitrary<OkResponse> = fc.oneof(
  fc.tuple(id, str).map(([requestId, subject]): OkResponse => ({ status: 'ok', op: 'HELLO', requestId, subject })),
  fc
    .tuple(id, fc.option(bytes, { nil: undefined }), fc.constantFrom('GET' as const, 'TXN_GET' as const))
    .map(([requestId, value, op]): OkResponse => (value === undefined ? { status: 'ok', op, requestId } : { status: 'ok', op, requestId, value })),
  fc.tuple(id, strs, optStr).map(([requestId, keys, next]): OkResponse => ({ status: 'ok', op: 'LIST', requestId, page: next === undefined ? { keys } : { keys, next } })),
  fc.tuple(id, strs).map(([requestId, names]): OkResponse => ({ status: 'ok', op: 'LIST_SNAPS', requestId, details: false, names })),
  fc.tuple(id, fc.array(snapInfo, { maxLength: 3 })).map(([requestId, infos]): OkResponse => ({ status: 'ok', op: 'LIST_SNAPS', requestId, details: true, infos })),
  fc.tuple(id, strs, strs, strs).map(([requestId, added, removed, changed]): OkResponse => ({ status: 'ok', op: 'DIFF_SNAPS', requestId, diff: { added, removed, changed } })),
  fc.tuple(id, str).map(([requestId, digest]): OkResponse => ({ status: 'ok', op: 'VERIFY_SNAP', requestId, digest })),
  fc.tuple(id, fc.array(plain(fc.record({ path: str, owner: str, name: str })), { maxLength: 3 })).map(([requestId, mounts]): OkResponse => ({ status: 'ok', op: 'LIST_MOUNTS', requestId, mounts })),
  fc.tuple(id, gcResult).map(([requestId, result]): OkResponse => ({ status: 'ok', op: 'GC_NOW', requestId, result })),
  fc
    .tuple(id, gcResult, fc.array(id, { maxLength: 4 }), fc.array(pin, { maxLength: 3 }))
    .map(([requestId, result, segments, pinnedBySnapshots]): OkResponse => ({ status: 'ok', op: 'GC_PLAN', requestId, plan: { ...result, segments, pinnedBySnapshots } })),
  fc.tuple(id, storeStat).map(([requestId, stat]): OkResponse => ({ status: 'ok', op: 'STAT', requestId, stat })),
  fc.tuple(id, emptyOk).map(([requestId, op]): OkResponse => ({ status: 'ok', op, requestId })),
);

// ---- round trips ---------------------------------------------------------------------------

test('every request op round-trips', () => {
  const seen = new Set<string>();
  fc.assert(
    fc.property(requestArb, (req) => {
      seen.add(req.op);
      assert.deepEqual(decodeRequest(readOne(encodeRequest(req))), req);
    }),
    { seed, numRuns: 3000 },
  );
  assert.deepEqual([...seen].sort(), [...OP_NAMES].sort());
});

test('every ok response round-trips', () => {
  const seen = new Set<string>();
  fc.assert(
    fc.property(okArb, (res) => {
      seen.add(res.op);
      assert.deepEqual(decodeResponse(readOne(encodeResponse(res))), res);
    }),
    { seed, numRuns: 3000 },
  );
  assert.deepEqual([...seen].sort(), [...OP_NAMES].sort());
});

test('error responses rebuild a StatefsError with the same code, number and message', () => {
  const codes = Object.keys(ERROR_CODES).filter((c): c is ErrorCode => c in ERROR_CODES);
  for (const code of codes) {
    for (const op of [...OP_NAMES, undefined]) {
      const err = new StatefsError(code, `something about ${code} ✓`, { op: 'put' });
      const res = decodeResponse(readOne(errorResponse(7, op, err)));
      assert.equal(res.status, 'error');
      assert.equal(res.requestId, 7);
      assert.equal(res.op, op);
      assert.ok(res.error instanceof StatefsError);
      assert.equal(res.error.code, code);
      assert.equal(res.error.errno, ERROR_CODES[code]);
      assert.equal(res.error.message, err.message);
    }
  }
});

test('a status that does not match its code string is EINVAL', () => {
  const good = errorResponse(1, 'GET', StatefsError.ENOENT('k'));
  const bad = good.slice();
  bad[HEADER_SIZE] = ERROR_CODES.EPERM; // status byte now says EPERM, code string says ENOENT
  assert.throws(() => decodeResponse(readOne(bad)), (e: unknown) => e instanceof StatefsError && e.code === 'EINVAL');
});

test('the frame layout matches the doc byte by byte', () => {
  const bytes = encodeRequest({ op: 'GET', requestId: 0x01020304, subject: 'a', key: '/k' });
  assert.deepEqual([...bytes], [14, 0, 0, 0, 1, 1, 4, 3, 2, 1, opByte('GET'), 1, 0, 0x61, 2, 0, 0x2f, 0x6b]);
});

test('oversized frames: EFBIG when encoding, EINVAL as soon as the length is read', () => {
  const big = { op: 'PUT' as const, requestId: 1, subject: 's', key: '/k', value: new Uint8Array(2000) };
  assert.throws(() => encodeRequest(big, 1024), (e: unknown) => e instanceof StatefsError && e.code === 'EFBIG');
  const reader = new FrameReader(1024);
  assert.throws(() => reader.push(encodeRequest(big).subarray(0, 4)), (e: unknown) => e instanceof StatefsError && e.code === 'EINVAL');
  assert.equal(reader.buffered, 0);
  assert.throws(() => reader.push(new Uint8Array(1)), (e: unknown) => e instanceof StatefsError && e.code === 'EINVAL'); // sticky
});

test('an unknown version is ENOTSUP at its byte; an unknown op is ENOTSUP on decode', () => {
  const frame = encodeRequest({ op: 'SYNC', requestId: 1 });
  const v2 = frame.slice();
  v2[4] = 2;
  const reader = new FrameReader();
  assert.deepEqual(reader.push(v2.subarray(0, 4)), []);
  assert.throws(() => reader.push(v2.subarray(4, 5)), (e: unknown) => e instanceof StatefsError && e.code === 'ENOTSUP');
  const op99 = frame.slice();
  op99[10] = 99;
  assert.throws(() => decodeRequest(readOne(op99)), (e: unknown) => e instanceof StatefsError && e.code === 'ENOTSUP');
});

test('invalid UTF-8 and trailing bytes are EINVAL', () => {
  const body = new Uint8Array([1, 0, 0x73, 2, 0, 0xc3, 0x28]); // subject "s", key = bad UTF-8
  assert.throws(() => decodeRequest(readOne(encodeFrame(1, 1, opByte('GET'), body))), (e: unknown) => e instanceof StatefsError && e.code === 'EINVAL');
  const trailing = new Uint8Array([1, 0, 0x73, 1, 0, 0x6b, 0]);
  assert.throws(() => decodeRequest(readOne(encodeFrame(1, 1, opByte('GET'), trailing))), (e: unknown) => e instanceof StatefsError && e.code === 'EINVAL');
});

// ---- streaming -----------------------------------------------------------------------------

const stream = [
  encodeRequest({ op: 'PUT', requestId: 1, subject: 'svc', key: '/a', value: new Uint8Array([1, 2, 3]) }),
  encodeRequest({ op: 'SYNC', requestId: 2 }),
  encodeRequest({ op: 'LIST', requestId: 3, subject: 'svc', prefix: '/', limit: 10, after: '/a' }),
];
const joined = new Uint8Array(stream.reduce((n, f) => n + f.length, 0));
stream.reduce((at, f) => (joined.set(f, at), at + f.length), 0);
const expectedIds = [1, 2, 3];

test('FrameReader: every split point of a three-frame stream', () => {
  for (let cut = 0; cut <= joined.length; cut++) {
    const reader = new FrameReader();
    const frames = [...reader.push(joined.subarray(0, cut)), ...reader.push(joined.subarray(cut))];
    assert.deepEqual(
      frames.map((f) => decodeRequest(f).requestId),
      expectedIds,
    );
    assert.equal(reader.buffered, 0);
  }
});

test('FrameReader: frames completed before a framing error in the same chunk are delivered; the error follows', () => {
  // Regression (found by the socket fuzz): the whole chunk was refused, so a request pipelined
  // before a bad frame was answered or dropped depending on how the stream happened to be cut.
  const bad = encodeRequest({ op: 'SYNC', requestId: 9 });
  bad[4] = 2; // unknown version
  const chunk = new Uint8Array([...joined, ...bad]);
  const reader = new FrameReader();
  assert.deepEqual(
    reader.push(chunk).map((f) => decodeRequest(f).requestId),
    expectedIds,
  );
  assert.ok(reader.failure instanceof StatefsError);
  assert.equal(reader.failure.code, 'ENOTSUP');
  assert.throws(() => reader.push(new Uint8Array([0])), (e: unknown) => e === reader.failure); // sticky
  const alone = new FrameReader();
  assert.throws(() => alone.push(bad), (e: unknown) => e instanceof StatefsError && e.code === 'ENOTSUP'); // nothing before it: thrown at once
  assert.equal(alone.failure?.code, 'ENOTSUP');
});

test('FrameReader: one byte at a time', () => {
  const reader = new FrameReader();
  const frames: Frame[] = [];
  for (const b of joined) frames.push(...reader.push(new Uint8Array([b])));
  assert.deepEqual(
    frames.map((f) => decodeRequest(f).requestId),
    expectedIds,
  );
});

test('FrameReader: a frame whole in its chunk is a view of the chunk, not a copy; decoding copies what it keeps', () => {
  const value = new Uint8Array([1, 2, 3, 4, 5]);
  const chunk = new Uint8Array([...encodeRequest({ op: 'PUT', requestId: 5, subject: 'svc', key: '/k', value }), ...encodeRequest({ op: 'SYNC', requestId: 6 })]);
  const frames = new FrameReader().push(chunk);
  assert.equal(frames.length, 2);
  for (const f of frames) assert.equal(f.body.buffer, chunk.buffer);
  const req = decodeRequest(one(frames.slice(0, 1)));
  assert.ok(req.op === 'PUT');
  chunk.fill(0xee); // the socket's buffer may be reused: the decoded request must not change
  assert.deepEqual([...req.value], [...value]);
  assert.equal(req.key, '/k');
  // A frame cut across chunks is still assembled in a buffer of its own.
  const split = encodeRequest({ op: 'GET', requestId: 7, subject: 'svc', key: '/k' });
  const reader = new FrameReader();
  assert.equal(reader.push(split.subarray(0, 13)).length, 0);
  const tail = split.slice(13);
  const [late] = reader.push(tail);
  assert.ok(late !== undefined && late.body.buffer !== tail.buffer && late.body.buffer !== split.buffer);
  assert.equal(decodeRequest(late).requestId, 7);
});

test('strings on the wire: ASCII and UTF-8 alike, the 65,535-byte limit counted in bytes', () => {
  const get = (key: string): Request => ({ op: 'GET', requestId: 1, subject: 'svc', key });
  for (const key of ['/plain', '/caf\u00e9', '/ascii-then-\u{1F600}', '\u00e9first', '']) {
    const back = decodeRequest(readOne(encodeRequest(get(key))));
    assert.ok(back.op === 'GET');
    assert.equal(back.key, key);
  }
  // A lone surrogate has no UTF-8 form: encoded it would become U+FFFD, another key. Refused.
  for (const key of ['/lone-\uD800', '/lone-\uDC00x', '\uD800']) {
    assert.throws(() => encodeRequest(get(key)), (e: unknown) => e instanceof StatefsError && e.code === 'EINVAL', JSON.stringify(key));
  }
  const big = 2 * 1024 * 1024;
  // Too long for its u16 length: the code the store gives a name too long.
  const isTooLong = (e: unknown): boolean => e instanceof StatefsError && e.code === 'ENAMETOOLONG';
  assert.equal(encodeRequest(get('a'.repeat(65_535)), big).length > 65_535, true);
  assert.throws(() => encodeRequest(get('a'.repeat(65_536)), big), isTooLong);
  assert.ok(encodeRequest(get('\u00e9'.repeat(32_767)), big).length > 65_534); // 65,534 bytes
  assert.throws(() => encodeRequest(get('\u00e9'.repeat(32_768)), big), isTooLong); // 65,536 bytes, though only 32,768 chars
  assert.throws(() => encodeRequest(get('a'.repeat(65_000) + '\u00e9'.repeat(300)), big), isTooLong); // ASCII at first, over in UTF-8
});

// ---- the doc -------------------------------------------------------------------------------

test('protocol.md lists every op code and every status number as the code does', async () => {
  const { readFile } = await import('node:fs/promises');
  const doc = await readFile(new URL('../../docs/storage/protocol.md', import.meta.url), 'utf8');
  const opSection = doc.slice(doc.indexOf('## 3. Operations'), doc.indexOf('### Records'));
  const ops = [...opSection.matchAll(/^\| (\d+) \| `([A-Z_]+)` \|/gm)].map((m) => [Number(m[1]), m[2]]);
  assert.deepEqual(
    ops,
    OP_NAMES.map((name) => [opByte(name), name]),
  );
  const statuses = [...doc.matchAll(/\| (\d+) \| `(E[A-Z]+)` \|/g)].map((m) => [m[2], Number(m[1])]);
  assert.deepEqual(
    statuses.sort((a, b) => Number(a[1]) - Number(b[1])),
    Object.entries(ERROR_CODES),
  );
});
