import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { connect } from '../src/client/client.js';
import { Store } from '../src/engine/store.js';
import { isStatefsError } from '../src/errors.js';
import { startDaemon, type Daemon, type DaemonOptions } from '../src/server/daemon/daemon.js';
import { savePolicy } from '../src/server/policy/policy-file.js';
import { emptyPolicy, hashToken, newToken } from '../src/server/policy/policy.js';
import { FrameReader } from '../src/server/protocol/frame-reader.js';
import { encodeRequest } from '../src/server/protocol/request-codec.js';
import { decodeResponse } from '../src/server/protocol/response-codec.js';
import { verifyAuditLog } from '../src/server/audit/verify.js';
import { codeOf, memoryImage, MiB, openMemory, withTempDir } from './helpers.js';
import { execute, type DispatchHost } from '../src/server/daemon/dispatch.js';
import { ConnectionTxns } from '../src/server/daemon/connection-txns.js';
import { guardResources } from './hygiene.js';
import { bufferedForSilentPeer } from './silent-peer.js';

guardResources();

// Findings of a review of the daemon against spec section 6 (what it may do to the files around
// it, and what one caller may learn about another's subject).

interface Files {
  image: string;
  socket: string;
  policy: string;
  audit: string;
  tokens: { alice: string; mallory: string };
}

/** alice: read, write, snapshot; mallory: gc only. */
async function prepare(dir: string): Promise<Files> {
  const policy = emptyPolicy();
  const tokens = { alice: newToken(), mallory: newToken() };
  policy.subjects.set('alice', { tokenSha256: hashToken(tokens.alice), rights: ['read', 'write', 'snapshot'], grants: [] });
  policy.subjects.set('mallory', { tokenSha256: hashToken(tokens.mallory), rights: ['gc'], grants: [] });
  const files = { image: join(dir, 'img'), socket: join(dir, 'sock'), policy: join(dir, 'policy.json'), audit: join(dir, 'audit.log'), tokens };
  await savePolicy(files.policy, policy);
  return files;
}

/** The daemon on `f`'s files, an 8 MiB image created on first start. */
function start(f: Files, extra: Partial<DaemonOptions> = {}): Promise<Daemon> {
  return startDaemon({ imagePath: f.image, socketPath: f.socket, policyPath: f.policy, auditPath: f.audit, createSize: 8 * MiB, ...extra });
}

test('statefsd never removes a file at its socket path that is not a socket, not even its own image (EEXIST, file intact)', async () => {
  await withTempDir(async (dir) => {
    const f = await prepare(dir);
    await writeFile(f.socket, 'the user keeps notes here');
    const options = { imagePath: f.image, socketPath: f.socket, policyPath: f.policy, auditPath: f.audit, createSize: 8 * MiB };
    await assert.rejects(startDaemon(options), (err: unknown) => isStatefsError(err) && err.code === 'EEXIST' && err.message.includes('not a socket'));
    assert.equal(await readFile(f.socket, 'utf8'), 'the user keeps notes here');

    // The image named as the socket too (a typo): refused before the image is touched.
    const s = await Store.create(f.image, { size: 8 * MiB });
    await s.put('alice', '/state/kept', 'acknowledged');
    await s.close();
    await assert.rejects(startDaemon({ ...options, socketPath: f.image }), (err: unknown) => isStatefsError(err) && err.code === 'EEXIST');
    const reopened = await Store.open(f.image);
    try {
      assert.equal(Buffer.from((await reopened.get('alice', '/state/kept')) ?? []).toString(), 'acknowledged');
    } finally {
      await reopened.close();
    }
  });
});

test('statefsd creates its socket with mode 0600 whatever the umask', async () => {
  await withTempDir(async (dir) => {
    const f = await prepare(dir);
    const umask = process.umask(0);
    try {
      const daemon = await start(f);
      try {
        assert.equal((await stat(f.socket)).mode & 0o777, 0o600);
      } finally {
        await daemon.close();
      }
    } finally {
      process.umask(umask);
    }
  });
});

test('GC_PLAN names snapshots only of subjects the caller may read, as STAT does', async () => {
  await withTempDir(async (dir) => {
    const f = await prepare(dir);
    const daemon = await start(f);
    const alice = await connect({ socket: f.socket, token: f.tokens.alice });
    const mallory = await connect({ socket: f.socket, token: f.tokens.mallory });
    try {
      await alice.put('alice', '/state/secret', 'x'.repeat(1000));
      await alice.snapshot('alice', 'pre-layoff-2025');
      await alice.delete('alice', '/state/secret'); // the snapshot alone pins the record now
      const plan = await mallory.gcPlan();
      assert.deepEqual(plan.pinnedBySnapshots, [], 'mallory may run GC but not read alice');
    } finally {
      await alice.close();
      await mallory.close();
      await daemon.close();
    }
    const s = await Store.open(f.image);
    try {
      const pins = (await s.gcPlan()).pinnedBySnapshots.map((p) => `${p.subject}/${p.name}`);
      assert.deepEqual(pins, ['alice/pre-layoff-2025'], 'the snapshot does pin a record, so the filter is what hid it');
    } finally {
      await s.close();
    }
  });
});

test('a request with an unknown op is answered ENOTSUP with its request id and op byte echoed', async () => {
  await withTempDir(async (dir) => {
    const f = await prepare(dir);
    const daemon = await start(f);
    try {
      const frame = Buffer.from(encodeRequest({ op: 'SYNC', requestId: 42 }));
      frame[10] = 99; // no op has this byte
      const raw = createConnection(f.socket);
      await once(raw, 'connect');
      const reader = new FrameReader();
      const frames: ReturnType<FrameReader['push']> = [];
      raw.on('data', (chunk: Buffer) => frames.push(...reader.push(chunk)));
      raw.write(frame);
      await once(raw, 'close');
      const [answer] = frames;
      assert.ok(answer !== undefined);
      assert.equal(answer.requestId, 42);
      assert.equal(answer.op, 99);
      assert.equal(Buffer.from(answer.body).readUInt16LE(0), 12, 'status 12: ENOTSUP');
      const res = decodeResponse(answer); // a client decodes it: an error for no op it knows
      assert.ok(res.status === 'error');
      assert.equal(res.op, undefined);
      assert.equal(res.error.code, 'ENOTSUP');
    } finally {
      await daemon.close();
    }
  });
});

test('statefsd logs the audit log head once the log is closed, as verify computes it', async () => {
  await withTempDir(async (dir) => {
    const f = await prepare(dir);
    const logged: string[] = [];
    const daemon = await start(f, { log: (m) => logged.push(m) });
    const alice = await connect({ socket: f.socket, token: f.tokens.alice });
    await alice.snapshot('alice', 's1'); // an audited act
    await alice.close();
    await daemon.close();
    const { head, lines } = await verifyAuditLog(f.audit);
    assert.ok(lines >= 1);
    assert.ok(logged.includes(`audit log closed, head ${head.seq}:${head.hash}`), logged.join('\n'));
  });
});

test('a peer that pipelines GETs and never reads the answers cannot make the daemon buffer them all', async () => {
  await withTempDir(async (dir) => {
    const f = await prepare(dir);
    const daemon = await start(f, { maxInFlight: 4 });
    const alice = await connect({ socket: f.socket, token: f.tokens.alice });
    await alice.put('alice', '/state/v', new Uint8Array(65_536));
    const frames = [encodeRequest({ op: 'HELLO', requestId: 1, token: f.tokens.alice })];
    for (let i = 2; i < 2_200; i++) frames.push(encodeRequest({ op: 'GET', requestId: i, subject: 'alice', key: '/state/v' }));
    const { grew, raw } = await bufferedForSilentPeer(f.socket, frames); // ~60 KiB of requests for ~140 MB of answers
    try {
      assert.ok(grew < 32 * MiB, `answers buffered for a peer that does not read: ${Math.round(grew / MiB)} MiB`);
      // The daemon still serves others meanwhile.
      assert.equal((await alice.get('alice', '/state/v'))?.length, 65_536);
    } finally {
      raw.destroy();
      await alice.close();
      await daemon.close();
    }
  });
});

test('a mount grant taken away by a policy reload takes the mount away too, and the owner may delete the snapshot again', async () => {
  await withTempDir(async (dir) => {
    const f = await prepare(dir);
    const bobToken = newToken();
    const withGrant = emptyPolicy();
    withGrant.subjects.set('alice', { tokenSha256: hashToken(f.tokens.alice), rights: ['read', 'write', 'snapshot'], grants: [] });
    withGrant.subjects.set('bob', { tokenSha256: hashToken(bobToken), rights: ['read', 'write', 'mount'], grants: [{ owner: 'alice', rights: ['read', 'mount'] }] });
    await savePolicy(f.policy, withGrant);
    const daemon = await start(f);
    const alice = await connect({ socket: f.socket, token: f.tokens.alice });
    const bob = await connect({ socket: f.socket, token: bobToken });
    try {
      await alice.put('alice', '/state/secret', 'S1');
      await alice.snapshot('alice', 's');
      await bob.mountSnap('bob', 'alice', 's', '/mnt/x');
      assert.equal(Buffer.from((await bob.get('bob', '/mnt/x/secret')) ?? []).toString(), 'S1');

      const revoked = emptyPolicy();
      for (const [subject, entry] of withGrant.subjects) revoked.subjects.set(subject, { ...entry, grants: [] });
      await savePolicy(f.policy, revoked);
      await daemon.reloadPolicy();
      assert.deepEqual(await bob.listMounts('bob'), []);
      await assert.rejects(bob.get('bob', '/mnt/x/secret'), (err: unknown) => isStatefsError(err) && err.code === 'ENOENT');
      await alice.deleteSnap('alice', 's'); // no longer EBUSY
    } finally {
      await alice.close();
      await bob.close();
      await daemon.close();
    }
    assert.match(await readFile(f.audit, 'utf8'), /"op":"UMOUNT".*"target":"bob:\/mnt\/x"|"target":"bob:\/mnt\/x".*"op":"UMOUNT"/);
  });
});

test('reads through a mount need a read grant on the snapshot owner; a mount needs read with mount; a revoked token ends its open connections (review of the daemon)', async () => {
  await withTempDir(async (dir) => {
    const f = await prepare(dir);
    const tokens = { bob: newToken(), carol: newToken(), dave: newToken() };
    const policy = emptyPolicy();
    // alice may mount bob's snapshots; carol reads alice (not bob); dave may only mount bob's.
    policy.subjects.set('alice', { tokenSha256: hashToken(f.tokens.alice), rights: ['read', 'write', 'snapshot', 'mount'], grants: [{ owner: 'bob', rights: ['read', 'mount'] }] });
    policy.subjects.set('bob', { tokenSha256: hashToken(tokens.bob), rights: ['read', 'write', 'snapshot'], grants: [] });
    policy.subjects.set('carol', { tokenSha256: hashToken(tokens.carol), rights: ['read'], grants: [{ owner: 'alice', rights: ['read'] }] });
    policy.subjects.set('dave', { tokenSha256: hashToken(tokens.dave), rights: ['read', 'mount'], grants: [{ owner: 'bob', rights: ['mount'] }] });
    await savePolicy(f.policy, policy);
    const daemon = await start(f);
    const alice = await connect({ socket: f.socket, token: f.tokens.alice });
    const bob = await connect({ socket: f.socket, token: tokens.bob });
    const carol = await connect({ socket: f.socket, token: tokens.carol });
    const dave = await connect({ socket: f.socket, token: tokens.dave });
    try {
      await bob.put('bob', '/state/secret', 'bob-secret');
      await bob.snapshot('bob', 's1');
      await alice.put('alice', '/state/own', 'alice-data');
      await alice.mountSnap('alice', 'bob', 's1', '/mnt/b');
      assert.equal(Buffer.from((await alice.get('alice', '/mnt/b/secret')) ?? []).toString(), 'bob-secret', 'the mount holder reads it');
      assert.equal(Buffer.from((await carol.get('alice', '/state/own')) ?? []).toString(), 'alice-data', "carol reads alice's own keys");
      assert.equal(await codeOf(carol.get('bob', '/state/secret')), 'EPERM');
      assert.equal(await codeOf(carol.get('alice', '/mnt/b/secret')), 'EPERM', "bob's data through alice's mount: no grant on bob");
      assert.equal(await codeOf(carol.list('alice', '/mnt/b/')), 'EPERM');
      assert.equal(await codeOf(dave.mountSnap('dave', 'bob', 's1', '/mnt/b')), 'EPERM', 'a mount grant without read mounts nothing');

      // LIST_MOUNTS shows carol only mounts of owners she may read (review: bob's snapshot name).
      assert.deepEqual(await carol.listMounts('alice'), []);
      assert.deepEqual((await alice.listMounts('alice')).map((m) => m.owner), ['bob']);

      // bob's token is replaced while his connection holds all 8 of his transaction slots: the
      // reload ends that connection and gives the slots back (review: a client that kept talking
      // kept them), and nothing it sends after is done.
      const held = Array.from({ length: 8 }, () => bob.begin('bob'));
      for (const [i, t] of held.entries()) await t.put('bob', `/state/t${String(i)}`, 'x');
      const newBobToken = newToken();
      const replaced = emptyPolicy();
      for (const [subject, entry] of policy.subjects) replaced.subjects.set(subject, subject === 'bob' ? { ...entry, tokenSha256: hashToken(newBobToken) } : entry);
      await savePolicy(f.policy, replaced);
      await daemon.reloadPolicy();
      assert.notEqual(await codeOf(bob.put('bob', '/state/after', 'x')), 'OK');
      const bob2 = await connect({ socket: f.socket, token: newBobToken });
      try {
        const fresh = Array.from({ length: 8 }, () => bob2.begin('bob'));
        for (const [i, t] of fresh.entries()) await t.put('bob', `/state/n${String(i)}`, 'y');
        for (const t of fresh) await t.abort();
      } finally {
        await bob2.close();
      }
      assert.equal(Buffer.from((await alice.get('alice', '/state/own')) ?? []).toString(), 'alice-data', "the others' connections go on");
    } finally {
      for (const c of [alice, bob, carol, dave]) await c.close().catch(() => undefined);
      await daemon.close();
    }
    const audit = await readFile(f.audit, 'utf8');
    assert.match(audit, /"subject":"carol","op":"GET".*"result":"EPERM"/, 'the refused read through the mount is audited');
    const s = await Store.open(f.image);
    try {
      assert.equal(await s.get('bob', '/state/after'), undefined, 'the revoked connection wrote nothing');
    } finally {
      await s.close();
    }
  });
});

test('the client refuses what the embedded store refuses before it reaches the wire: a key with a lone surrogate, a String object, a value that is not bytes', async () => {
  await withTempDir(async (dir) => {
    const f = await prepare(dir);
    const daemon = await start(f);
    const alice = await connect({ socket: f.socket, token: f.tokens.alice });
    const embedded = await Store.create(join(dir, 'embedded'), { size: 8 * MiB });
    try {
      // Two different bad keys used to become the one key /state/\uFFFDx on the wire.
      const bad: [string, (c: Pick<Store, 'put' | 'get' | 'delete' | 'list'>) => Promise<unknown>][] = [
        ['put lone high surrogate', (c) => c.put('alice', '/state/\uD800x', 'v')],
        ['get lone low surrogate', (c) => c.get('alice', '/state/\uDC00x')],
        ['delete lone surrogate', (c) => c.delete('alice', '/state/\uDC00x')],
        ['list prefix with a lone surrogate', (c) => c.list('alice', '/state/\uD800')],
        ['String object key', (c) => c.put('alice', new String('/state/so') as unknown as string, 'v')],
        ['array value', (c) => c.put('alice', '/state/a', [1, 2, 3] as unknown as Uint8Array)],
        ['Uint16Array value', (c) => c.put('alice', '/state/a', new Uint16Array([1, 2]) as unknown as Uint8Array)],
        // A malformed subject is EINVAL before any policy question (the daemon said EPERM).
        ['subject with a capital', (c) => c.put('Alice', '/state/a', 'v')],
        ['empty subject', (c) => c.get('', '/state/a')],
      ];
      for (const [what, call] of bad) {
        assert.equal(await codeOf(call(embedded)), 'EINVAL', `embedded: ${what}`);
        assert.equal(await codeOf(call(alice)), 'EINVAL', `client: ${what}`);
      }
      // The wire bounds a GC cycle by bytes only: other bounds are refused, not dropped.
      assert.equal(await codeOf(alice.gcNow({ maxSegments: 1 } as { maxBytes?: number })), 'ENOTSUP');
      assert.equal(await codeOf(alice.gcPlan({ maxBytes: -1 })), 'EINVAL');
      const txn = alice.begin('alice');
      assert.equal(await codeOf(txn.put('alice', '/state/t', { length: 1, 0: 7 } as unknown as Uint8Array)), 'EINVAL');
      await txn.abort();
      assert.deepEqual((await alice.list('alice')).keys, [], 'nothing was written');
    } finally {
      await embedded.close();
      await alice.close();
      await daemon.close();
    }
  });
});

test('a name too long for the wire is ENAMETOOLONG from the client, as from the embedded store', async () => {
  await withTempDir(async (dir) => {
    const f = await prepare(dir);
    const daemon = await start(f);
    const alice = await connect({ socket: f.socket, token: f.tokens.alice });
    try {
      const huge = `/state/${'k'.repeat(70_000)}`;
      for (const call of [() => alice.put('alice', huge, 'v'), () => alice.get('alice', huge), () => alice.snapshot('alice', 's'.repeat(70_000))]) {
        await assert.rejects(call(), (err: unknown) => isStatefsError(err) && err.code === 'ENAMETOOLONG');
      }
      const wide = `/state/${'é'.repeat(40_000)}`; // 80,000 bytes of UTF-8 in 40,007 chars
      await assert.rejects(alice.put('alice', wide, 'v'), (err: unknown) => isStatefsError(err) && err.code === 'ENAMETOOLONG');
    } finally {
      await alice.close();
      await daemon.close();
    }
    const s = await Store.open(f.image);
    try {
      await assert.rejects(s.put('alice', `/state/${'k'.repeat(70_000)}`, 'v'), (err: unknown) => isStatefsError(err) && err.code === 'ENAMETOOLONG');
    } finally {
      await s.close();
    }
  });
});

test('GC cycles the store runs of itself are in the audit log, with what they freed', async () => {
  await withTempDir(async (dir) => {
    const f = await prepare(dir);
    const markers: string[] = [];
    const daemon = await start(f, { onMarker: (m) => markers.push(m) });
    const alice = await connect({ socket: f.socket, token: f.tokens.alice });
    try {
      const keys = 6_000;
      for (let i = 0; i < keys; i += 100) await Promise.all(Array.from({ length: 100 }, (_, j) => alice.put('alice', `/state/k${i + j}`, new Uint8Array(1000).fill(j))));
      for (let i = 0; i < keys; i += 100) await Promise.all(Array.from({ length: 100 }, (_, j) => ((i + j) % 4 === 0 ? Promise.resolve() : alice.delete('alice', `/state/k${i + j}`))));
      for (let i = 0; i < 200; i++) await alice.put('alice', `/state/z${i}`, new Uint8Array(1000));
    } finally {
      await alice.close();
      await daemon.close();
    }
    assert.ok(markers.some((m) => m.startsWith('statefs: compact progress')), 'automatic GC ran');
    const cycles = (await readFile(f.audit, 'utf8')).split('\n').filter((line) => line.includes('"op":"GC"'));
    assert.ok(cycles.length > 0, 'each automatic cycle is audited');
    for (const line of cycles) assert.match(line, /"subject":"\(daemon\)".*"freedBytes":\d+/);
  });
});

test('client transactions and list give the embedded store codes at the call: EBADF, EFBIG, EINVAL for limit 0', async () => {
  await withTempDir(async (dir) => {
    const f = await prepare(dir);
    const daemon = await start(f);
    const client = await connect({ socket: f.socket, token: f.tokens.alice });
    const embeddedPath = join(dir, 'embedded');
    const embedded = await Store.create(embeddedPath, { size: 8 * MiB });
    try {
      for (const api of [embedded, client]) {
        const committed = api.begin('alice');
        await committed.put('alice', '/state/t', 'v');
        await committed.commit();
        const aborted = api.begin('alice');
        await aborted.abort();
        const big = api.begin('alice');
        const puts: string[] = [];
        for (let i = 0; i < 33; i++) puts.push(await codeOf(big.put('alice', `/state/k${i}`, 'v')));
        const large = api.begin('alice');
        const codes = {
          abortAfterCommit: await codeOf(committed.abort()),
          secondAbort: await codeOf(aborted.abort()),
          key33: puts[32],
          keys1to32: puts.slice(0, 32).every((c) => c === 'OK'),
          commitOf32: await codeOf(big.commit()),
          bytesOver: [await codeOf(large.put('alice', '/state/b1', new Uint8Array(65_536))), await codeOf(large.put('alice', '/state/b2', new Uint8Array(65_536))), await codeOf(large.put('alice', '/state/b3', new Uint8Array(1)))],
          limit0: await codeOf(api.list('alice', '/state/', { limit: 0 })),
        };
        await large.abort();
        assert.deepEqual(codes, { abortAfterCommit: 'EBADF', secondAbort: 'EBADF', key33: 'EFBIG', keys1to32: true, commitOf32: 'OK', bytesOver: ['OK', 'OK', 'EFBIG'], limit0: 'EINVAL' }, api === client ? 'client' : 'embedded');
      }
      assert.equal((await client.list('alice', '/state/', { limit: 100 })).keys.length, 33, '/state/t and the 32 keys');
    } finally {
      await client.close();
      await embedded.close();
      await daemon.close();
    }
  });
});

test('a peer that sends its pipelined GETs and half-closes gets every answer, however many wait for it', async () => {
  await withTempDir(async (dir) => {
    const f = await prepare(dir);
    const daemon = await start(f);
    const alice = await connect({ socket: f.socket, token: f.tokens.alice });
    try {
      await alice.put('alice', '/state/v', new Uint8Array(65_536));
      const raw = createConnection(f.socket);
      await once(raw, 'connect');
      const reader = new FrameReader();
      const frames: ReturnType<FrameReader['push']> = [];
      raw.on('data', (chunk: Buffer) => frames.push(...reader.push(chunk)));
      const requests = [encodeRequest({ op: 'HELLO', requestId: 1, token: f.tokens.alice })];
      for (let i = 2; i <= 101; i++) requests.push(encodeRequest({ op: 'GET', requestId: i, subject: 'alice', key: '/state/v' }));
      raw.end(Buffer.concat(requests)); // ~6.5 MB of answers, far over what waits before reading stops
      await once(raw, 'close');
      assert.deepEqual(
        frames.map((fr) => fr.requestId),
        Array.from({ length: 101 }, (_, i) => i + 1),
      );
    } finally {
      await alice.close();
      await daemon.close();
    }
  });
});

test('a request that waited for the store (behind a REOPEN) is checked again when it runs: a reload meanwhile that took its right away makes it EPERM, not done (review)', async () => {
  const store = await openMemory(await memoryImage());
  try {
    let open = (): void => undefined;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const host: DispatchHost = { use: async (fn) => gate.then(() => fn(store)), useNow: () => undefined, ready: () => undefined, reopen: () => Promise.resolve() };
    let allowed = true;
    const put = execute(host, { op: 'PUT', requestId: 7, subject: 'bob', key: '/state/late', value: new Uint8Array([1]) }, new ConnectionTxns(), () => true, () => allowed);
    allowed = false; // the reload, while the PUT waits
    open();
    assert.equal(await codeOf(put), 'EPERM');
    assert.equal(await store.get('bob', '/state/late'), undefined, 'nothing was written');
  } finally {
    await store.close();
  }
});
