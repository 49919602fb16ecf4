import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { connect, type Client, type ConnectOptions } from '../src/client/client.js';
import { Store } from '../src/engine/store.js';
import { StatefsError, isStatefsError, type ErrorCode } from '../src/errors.js';
import { verifyAuditLog } from '../src/server/audit/verify.js';
import { startDaemon, type Daemon } from '../src/server/daemon/daemon.js';
import { loadPolicy, savePolicy } from '../src/server/policy/policy-file.js';
import { emptyPolicy, hashToken, newToken } from '../src/server/policy/policy.js';
import { FrameReader } from '../src/server/protocol/frame-reader.js';
import { decodeResponse } from '../src/server/protocol/response-codec.js';
import { MiB, text, withTempDir } from './helpers.js';
import { guardResources } from './hygiene.js';

const STATEFSD = fileURLToPath(new URL('../src/cli/statefsd.js', import.meta.url));
const STATEFS = fileURLToPath(new URL('../src/cli/statefs.js', import.meta.url));

guardResources();

interface Setup {
  image: string;
  socket: string;
  policy: string;
  audit: string;
  aliceToken: string;
  bobToken: string;
}

/** alice: read/write/snapshot/mount with a read+mount grant on bob; bob: read/write/snapshot. */
async function prepare(dir: string): Promise<Setup> {
  const policy = emptyPolicy();
  const aliceToken = newToken();
  const bobToken = newToken();
  policy.subjects.set('alice', { tokenSha256: hashToken(aliceToken), rights: ['read', 'write', 'snapshot', 'mount'], grants: [{ owner: 'bob', rights: ['read', 'mount'] }] });
  policy.subjects.set('bob', { tokenSha256: hashToken(bobToken), rights: ['read', 'write', 'snapshot'], grants: [], quota: { soft: 20_000, hard: 40_000 } });
  const setup = { image: join(dir, 'img'), socket: join(dir, 'sock'), policy: join(dir, 'policy.json'), audit: join(dir, 'audit.log'), aliceToken, bobToken };
  await savePolicy(setup.policy, policy);
  return setup;
}

function start(s: Setup): Promise<Daemon> {
  return startDaemon({ imagePath: s.image, socketPath: s.socket, policyPath: s.policy, auditPath: s.audit, createSize: 8 * MiB });
}

async function codeOf(promise: Promise<unknown>): Promise<ErrorCode | 'OK'> {
  try {
    await promise;
    return 'OK';
  } catch (err) {
    if (isStatefsError(err)) return err.code;
    throw err;
  }
}

/** The API both `Store` and `Client` offer; the scenario runs against either. */
type Api = Pick<Store, 'put' | 'get' | 'delete' | 'snapshot' | 'deleteSnap' | 'mountSnap'>;

/** Error codes of a fixed sequence: alice reads bob's snapshot through a mount (grant). */
async function errorScenario(alice: Api, bob: Api): Promise<(ErrorCode | 'OK')[]> {
  return [
    await codeOf(bob.put('bob', '/state/x', 'one')),
    await codeOf(bob.snapshot('bob', 's1')),
    await codeOf(bob.snapshot('bob', 's1')),
    await codeOf(alice.mountSnap('alice', 'bob', 's1', '/mnt/b')),
    await codeOf(alice.put('alice', '/mnt/b/x', 'two')),
    await codeOf(bob.deleteSnap('bob', 'nope')),
    await codeOf(bob.delete('bob', '/state/missing')),
    await codeOf(bob.put('bob', '/state/x/child', 'c')),
    await codeOf(bob.put('bob', '/state/dir/leaf', 'l')),
    await codeOf(bob.put('bob', '/state/dir', 'd')),
    await codeOf(bob.put('bob', '/state/big', new Uint8Array(65_537))),
    await codeOf(bob.put('bob', 'state/no-slash', 'v')),
    await codeOf(bob.put('bob', `/state/${'k'.repeat(250)}`, 'v')),
    await codeOf(bob.snapshot('bob', 'n'.repeat(65))),
    await codeOf(bob.deleteSnap('bob', 's1')),
  ];
}

test('daemon: KV, pipelining, rights, audit, error codes, bad frames, reopen', async () => {
  await withTempDir(async (dir) => {
    const s = await prepare(dir);
    const daemon = await start(s);
    const clients: Client[] = [];
    try {
      const alice = await connect({ socket: s.socket, token: s.aliceToken });
      const bob = await connect({ socket: s.socket, token: s.bobToken });
      clients.push(alice, bob);
      assert.equal(alice.subject, 'alice');

      // Round trip.
      await alice.put('alice', '/state/a', 'hello');
      assert.equal(text(await alice.get('alice', '/state/a')), 'hello');
      assert.deepEqual((await alice.list('alice', '/state')).keys, ['/state/a']);
      assert.equal(await alice.get('alice', '/state/none'), undefined);

      // 64 concurrent puts on one connection.
      const keys = Array.from({ length: 64 }, (_, i) => `/state/many/k${i}`);
      await Promise.all(keys.map((k, i) => alice.put('alice', k, `v${i}`)));
      const values = await Promise.all(keys.map((k) => alice.get('alice', k)));
      assert.deepEqual(values.map(text), keys.map((_, i) => `v${i}`));
      // putMany through the client: the same method as Store's, pipelined puts.
      await alice.putMany('alice', [['/state/bulk/a', 'A'], ['/state/bulk/b', new Uint8Array([66])]]);
      assert.deepEqual((await Promise.all(['/state/bulk/a', '/state/bulk/b'].map((k) => alice.get('alice', k)))).map(text), ['A', 'B']);

      // STAT shows per-subject lines only for subjects the caller may read (alice has a grant on
      // bob; bob has none on alice).
      await bob.put('bob', '/state/b', 'bee');
      assert.deepEqual((await alice.stat()).subjects.map((x) => x.subject), ['alice', 'bob']);
      assert.deepEqual((await bob.stat()).subjects.map((x) => x.subject), ['bob']);

      // A transaction is one request.
      const txn = alice.begin('alice');
      await txn.put('alice', '/state/t1', 'a');
      await txn.put('alice', '/state/t2', 'b');
      await txn.commit();
      assert.equal(text(await alice.get('alice', '/state/t2')), 'b');

      // Denials: outside the caller's rights, and another subject without a grant.
      assert.equal(await codeOf(bob.gcNow()), 'EPERM');
      assert.equal(await codeOf(bob.get('alice', '/state/a')), 'EPERM');
      assert.equal(await codeOf(alice.get('bob', '/state/none')), 'OK'); // granted
      const audit = await verifyAuditLog(s.audit);
      const lines = (await readFile(s.audit, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.equal(lines.length, audit.lines);
      assert.ok(lines.some((l) => l.subject === 'bob' && l.op === 'GC_NOW' && l.result === 'EPERM'));
      assert.ok(lines.some((l) => l.subject === 'bob' && l.op === 'GET' && l.target === 'alice' && l.result === 'EPERM'));

      // A policy reload (SIGHUP in statefsd) applies to the next request, and is audited.
      const reloaded = await loadPolicy(s.policy);
      const bobPolicy = reloaded.subjects.get('bob');
      assert.ok(bobPolicy !== undefined);
      reloaded.subjects.set('bob', { ...bobPolicy, rights: [...bobPolicy.rights, 'gc'] });
      await savePolicy(s.policy, reloaded);
      await daemon.reloadPolicy();
      assert.equal(await codeOf(bob.gcNow()), 'OK');
      await writeFile(s.policy, '{ not json');
      await assert.rejects(daemon.reloadPolicy(), (err: unknown) => err instanceof StatefsError && err.code === 'EINVAL');
      assert.equal(await codeOf(bob.gcNow()), 'OK', 'a bad file keeps the old policy');
      await savePolicy(s.policy, reloaded);
      assert.match(await readFile(s.audit, 'utf8'), /"op":"POLICY_RELOAD","result":"OK"/);

      // Quotas come from the policy: bob's hard quota is 40,000 bytes; denials are audited.
      assert.equal(await codeOf(bob.put('bob', '/state/huge', new Uint8Array(50_000))), 'EDQUOTA');
      await bob.put('bob', '/state/fits', new Uint8Array(30_000)); // over soft: accepted
      const quotaLines = (await readFile(s.audit, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.ok(quotaLines.some((l) => l.subject === 'bob' && l.op === 'PUT' && l.result === 'EDQUOTA'));

      // Same codes as the embedded store.
      const wire = await errorScenario(alice, bob);
      const embedded = await Store.create(join(dir, 'embedded'), { size: 8 * MiB, grants: { alice: ['bob'] } });
      try {
        assert.deepEqual(wire, await errorScenario(embedded, embedded));
      } finally {
        await embedded.close();
      }
      assert.deepEqual(wire, ['OK', 'OK', 'EEXIST', 'OK', 'EROFS', 'ENOENT', 'ENOENT', 'ENOTDIR', 'OK', 'EISDIR', 'EFBIG', 'EINVAL', 'ENAMETOOLONG', 'ENAMETOOLONG', 'EBUSY']);

      // Isolation: without a grant, bob can neither read, list, snapshot, mount nor gc alice's
      // data; every denial is audited.
      const denied = [
        await codeOf(bob.get('alice', '/state/a')),
        await codeOf(bob.list('alice', '/state/')),
        await codeOf(bob.snapshot('alice', 'steal')),
        await codeOf(bob.listSnaps('alice')),
        await codeOf(bob.mountSnap('bob', 'alice', 'steal', '/mnt/steal')),
        await codeOf(bob.diffSnaps('alice', '@live', '@live')),
      ];
      assert.deepEqual(denied, ['EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM']);
      const denials = (await readFile(s.audit, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      for (const op of ['GET', 'LIST', 'SNAPSHOT', 'LIST_SNAPS', 'MOUNT', 'DIFF_SNAPS']) {
        assert.ok(denials.some((l) => l.subject === 'bob' && l.op === op && l.result === 'EPERM'), `${op} denial audited`);
      }
      assert.equal(text(await alice.get('alice', '/mnt/b/x')), 'one');
      const auditText = await readFile(s.audit, 'utf8');
      assert.match(auditText, /"op":"SNAPSHOT"/);
      assert.match(auditText, /"op":"MOUNT"/);

      // A malformed frame: EINVAL connection-level error, then the connection closes.
      const raw = createConnection(s.socket);
      await once(raw, 'connect');
      const reader = new FrameReader();
      const frames: ReturnType<FrameReader['push']> = [];
      raw.on('data', (chunk: Buffer) => frames.push(...reader.push(chunk)));
      raw.write(Buffer.from([3, 0, 0, 0, 1, 1, 0, 0, 0, 0, 2]));
      await once(raw, 'close');
      const [first] = frames;
      assert.ok(first !== undefined);
      const res = decodeResponse(first);
      assert.equal(res.status, 'error');
      assert.equal(res.requestId, 0);
      assert.equal(res.op, undefined);
      assert.equal(res.error.code, 'EINVAL');

      // A wrong token is EPERM; the daemon still serves a new client.
      assert.equal(await codeOf(connect({ socket: s.socket, token: 'wrong' })), 'EPERM');
      const again = await connect({ socket: s.socket, token: s.aliceToken });
      clients.push(again);
      assert.equal(text(await again.get('alice', '/state/a')), 'hello');
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      await daemon.close();
    }

    const store = await Store.open(s.image);
    try {
      assert.equal(text(await store.get('alice', '/state/a')), 'hello');
      assert.equal(text(await store.get('alice', '/state/many/k63')), 'v63');
      assert.equal(text(await store.get('alice', '/state/t1')), 'a');
    } finally {
      await store.close();
    }
    await verifyAuditLog(s.audit);
  });
});

test('client: values it returns stay intact while later answers are read, small or spanning many reads', async () => {
  // The client reads every answer into one buffer it reuses; what it hands out must be copies.
  await withTempDir(async (dir) => {
    const s = await prepare(dir);
    const daemon = await start(s);
    try {
      const c = await connect({ socket: s.socket, token: s.aliceToken });
      const small = (n: number): Uint8Array => new Uint8Array(100).fill(n);
      const big = (n: number): Uint8Array => new Uint8Array(65_536).map((_, i) => (i + n) % 251); // frames over the 64 KiB read buffer
      const bigKeys = [0, 1, 2, 3, 4].map((n) => `/state/big${n}`);
      await Promise.all([c.put('alice', '/state/a', small(1)), c.put('alice', '/state/b', small(2)), ...bigKeys.map((k, n) => c.put('alice', k, big(n)))]);
      const [a, b, ...bigs] = await Promise.all([c.get('alice', '/state/a'), c.get('alice', '/state/b'), ...bigKeys.map((k) => c.get('alice', k))]);
      const later = await Promise.all(Array.from({ length: 50 }, () => c.get('alice', '/state/b'))); // more reads reuse the buffer
      assert.deepEqual(a, small(1));
      assert.deepEqual(b, small(2));
      assert.equal(bigs.length, 5);
      bigs.forEach((v, n) => {
        assert.deepEqual(v, big(n));
      });
      for (const v of later) assert.deepEqual(v, small(2));
      await c.close();
    } finally {
      await daemon.close();
    }
  });
});

test('daemon: EAGAIN beyond maxInFlight on one connection', async () => {
  await withTempDir(async (dir) => {
    const s = await prepare(dir);
    const daemon = await startDaemon({ imagePath: s.image, socketPath: s.socket, policyPath: s.policy, auditPath: s.audit, createSize: 8 * MiB, maxInFlight: 2 });
    const alice = await connect({ socket: s.socket, token: s.aliceToken });
    try {
      const codes = await Promise.all(Array.from({ length: 16 }, (_, i) => codeOf(alice.put('alice', `/state/k${i}`, 'v'))));
      assert.ok(codes.includes('EAGAIN'), codes.join(','));
      assert.ok(codes.every((c) => c === 'OK' || c === 'EAGAIN'), codes.join(','));
    } finally {
      await alice.close();
      await daemon.close();
    }
  });
});

test('daemon: connections over maxConnections get EAGAIN and are closed even when the peer keeps talking; close() still resolves', async () => {
  await withTempDir(async (dir) => {
    const s = await prepare(dir);
    const daemon = await startDaemon({ imagePath: s.image, socketPath: s.socket, policyPath: s.policy, auditPath: s.audit, createSize: 8 * MiB, maxConnections: 1 });
    const alice = await connect({ socket: s.socket, token: s.aliceToken });
    try {
      // Regression: a refused peer that sent bytes was never read, so its socket never closed and
      // daemon.close() waited for it forever.
      const extra = createConnection(s.socket);
      const got: Buffer[] = [];
      extra.on('data', (b: Buffer) => got.push(b));
      const closed = once(extra, 'close');
      await once(extra, 'connect');
      extra.write(Buffer.from([40, 0, 0, 0, 1, 1]));
      await once(extra, 'end');
      const [answer] = new FrameReader().push(Buffer.concat(got));
      assert.ok(answer !== undefined);
      const res = decodeResponse(answer);
      assert.ok(res.status === 'error' && res.requestId === 0);
      assert.equal(res.error.code, 'EAGAIN');
      extra.end();
      await closed;
      await alice.put('alice', '/state/still', 'served'); // the connection within the limit is unaffected
    } finally {
      await alice.close();
      await daemon.close();
    }
  });
});

test('statefsd and statefs serve: a child process serves, SIGTERM exits 0 with every write on the image', async () => {
  for (const command of [[STATEFSD], [STATEFS, 'serve']]) {
    await withTempDir(async (dir) => {
      const s = await prepare(dir);
      const child = spawn(process.execPath, [...command, '--image', s.image, '--socket', s.socket, '--policy', s.policy, '--audit', s.audit, '--create-size', '8MiB'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString('utf8');
      });
      child.stdout.resume();
      const exited = once(child, 'exit');
      const deadline = Date.now() + 10_000;
      while (!stderr.includes('listening')) {
        assert.ok(Date.now() < deadline && child.exitCode === null, `${command.join(' ')} did not start: ${stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const client = await connect({ socket: s.socket, token: s.bobToken });
      await client.put('bob', '/state/x', 'y');
      assert.equal(text(await client.get('bob', '/state/x')), 'y');
      await client.close();
      child.kill('SIGTERM');
      const [code] = (await exited) as [number | null];
      assert.equal(code, 0, stderr);
      assert.match(stderr, /"name":"statefsd".*"msg":"closed"/, 'the same JSON log lines');
      const store = await Store.open(s.image);
      try {
        assert.equal(text(await store.get('bob', '/state/x')), 'y');
      } finally {
        await store.close();
      }
    });
  }
});

test('daemon --value-reads on-demand: GETs read checkpointed values from the image; a damaged one is EINTEGRITY and the connection goes on', async () => {
  await withTempDir(async (dir) => {
    const s = await prepare(dir);
    const store = await Store.create(s.image, { size: 8 * MiB });
    const value = (i: number): string => `value ${String(i)} `.repeat(80); // over a PUTRUN's 640 bytes: a PUT record each
    await store.putMany('bob', Array.from({ length: 200 }, (_, i) => [`/state/k${String(i)}`, value(i)] as const));
    await store.checkpoint(); // it holds the values: the daemon's open reads none of them
    await store.close();
    const image = await readFile(s.image);
    const at = image.indexOf(Buffer.from(value(7)));
    assert.ok(at > 0 && image.indexOf(Buffer.from(value(7)), at + 1) === -1, 'value 7 is in the image once');
    image[at + 3] = (image[at + 3] ?? 0) ^ 0x20;
    await writeFile(s.image, image);
    const daemon = await startDaemon({ imagePath: s.image, socketPath: s.socket, policyPath: s.policy, auditPath: s.audit, valueReads: 'on-demand' });
    const client = await connect({ socket: s.socket, token: s.bobToken });
    try {
      await assert.rejects(client.get('bob', '/state/k7'), (err: unknown) => isStatefsError(err) && err.code === 'EINTEGRITY');
      for (let i = 0; i < 200; i++) if (i !== 7) assert.equal(text(await client.get('bob', `/state/k${String(i)}`)), value(i));
      await client.put('bob', '/state/k7', 'fresh');
      assert.equal(text(await client.get('bob', '/state/k7')), 'fresh');
    } finally {
      await client.close();
      await daemon.close();
    }
  });
});

test('daemon: loopback TCP only when asked, and only on a loopback address', async () => {
  await withTempDir(async (dir) => {
    const s = await prepare(dir);
    await assert.rejects(
      startDaemon({ imagePath: s.image, socketPath: s.socket, policyPath: s.policy, auditPath: s.audit, createSize: 8 * MiB, listen: { host: '0.0.0.0', port: 0 } }),
      (err: unknown) => isStatefsError(err) && err.code === 'EINVAL',
    );
    const plain = await start(s);
    assert.equal(plain.tcpPort, undefined);
    await plain.close();
    const daemon = await startDaemon({ imagePath: s.image, socketPath: s.socket, policyPath: s.policy, auditPath: s.audit, listen: { host: '127.0.0.1', port: 0 } });
    try {
      const port = daemon.tcpPort;
      assert.ok(port !== undefined && port > 0);
      const c = await connect({ host: '127.0.0.1', port, token: s.aliceToken });
      await c.put('alice', '/state/tcp', 'over tcp');
      assert.equal(text(await c.get('alice', '/state/tcp')), 'over tcp');
      await c.close();
      await assert.rejects(connect({ token: s.aliceToken }), (err: unknown) => isStatefsError(err) && err.code === 'EINVAL');
    } finally {
      await daemon.close();
    }
  });
});

test('daemon: a half-sent frame times out with EINVAL; an idle connection is closed', async () => {
  await withTempDir(async (dir) => {
    const s = await prepare(dir);
    const daemon = await startDaemon({ imagePath: s.image, socketPath: s.socket, policyPath: s.policy, auditPath: s.audit, createSize: 8 * MiB, frameTimeoutMs: 200, idleTimeoutMs: 400 });
    try {
      const slow = createConnection(s.socket);
      await once(slow, 'connect');
      const got: Buffer[] = [];
      slow.on('data', (b: Buffer) => got.push(b));
      slow.write(Buffer.from([40, 0, 0, 0, 1])); // 5 bytes of a 44-byte frame, then silence
      await once(slow, 'close');
      const frames = new FrameReader().push(Buffer.concat(got));
      const answer = frames[0] === undefined ? undefined : decodeResponse(frames[0]);
      assert.ok(answer?.status === 'error', 'an error frame before the close');
      assert.equal(answer.error.code, 'EINVAL');
      const idle = createConnection(s.socket);
      await once(idle, 'connect');
      const t0 = Date.now();
      await once(idle, 'close');
      assert.ok(Date.now() - t0 >= 300, 'closed after the idle timeout, not at once');
      const c = await connect({ socket: s.socket, token: s.aliceToken }); // the daemon still serves
      await c.put('alice', '/state/after', 'x');
      await c.close();
    } finally {
      await daemon.close();
    }
  });
});

test('connect without a token is EINVAL saying so (not a wire encoding error); an empty or non-string token too', async () => {
  await withTempDir(async (dir) => {
    const s = await prepare(dir);
    const daemon = await start(s);
    try {
      const missing = [{ socket: s.socket }, { socket: s.socket, token: '' }, { socket: s.socket, token: undefined }] as unknown as ConnectOptions[];
      for (const options of missing) {
        await assert.rejects(connect(options), (err: unknown) => {
          assert.ok(isStatefsError(err) && err.code === 'EINVAL', String(err));
          assert.match(err.message, /^EINVAL: invalid: connect: no token given \(pass \{ token \}/);
          assert.equal(err.op, 'connect');
          return true;
        });
      }
      await assert.rejects(connect({ socket: s.socket, token: 42 as unknown as string }), (err: unknown) => isStatefsError(err) && err.code === 'EINVAL' && err.message.includes('token must be a string'));
    } finally {
      await daemon.close();
    }
  });
});

test('a client is AsyncDisposable: `await using` closes it at the end of the block, as a Store', async () => {
  await withTempDir(async (dir) => {
    const s = await prepare(dir);
    const daemon = await start(s);
    try {
      let kept: Client | undefined;
      {
        await using c = await connect({ socket: s.socket, token: s.aliceToken });
        await c.put('alice', '/state/disposed', 'yes');
        kept = c;
      }
      await assert.rejects(kept.get('alice', '/state/disposed'), (err: unknown) => isStatefsError(err) && err.code === 'EBADF');
      const again = await connect({ socket: s.socket, token: s.aliceToken });
      try {
        assert.equal(text(await again.get('alice', '/state/disposed')), 'yes');
      } finally {
        await again.close();
      }
    } finally {
      await daemon.close();
    }
  });
});
