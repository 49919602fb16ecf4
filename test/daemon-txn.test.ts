import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { connect, type Client } from '../src/client/client.js';
import type { Outgoing } from '../src/client/wire.js';
import { Store } from '../src/engine/store.js';
import { isStatefsError } from '../src/errors.js';
import { startDaemon, type Daemon, type DaemonOptions } from '../src/server/daemon/daemon.js';
import { savePolicy } from '../src/server/policy/policy-file.js';
import { emptyPolicy, hashToken, newToken, type Policy } from '../src/server/policy/policy.js';
import { FrameReader } from '../src/server/protocol/frame-reader.js';
import type { Request, Response } from '../src/server/protocol/messages.js';
import { encodeRequest } from '../src/server/protocol/request-codec.js';
import { decodeResponse } from '../src/server/protocol/response-codec.js';
import { codeOf, MiB, withTempDir } from './helpers.js';
import { guardResources } from './hygiene.js';
import { bufferedForSilentPeer } from './silent-peer.js';

guardResources();

// Transactions held by the daemon (TXN_BEGIN … TXN_COMMIT): each op answered as the embedded
// store's Transaction answers it (statefs-v3.md Appendix A item 9 is closed by them).

interface Files {
  socket: string;
  audit: string;
  policy: string;
  tokens: { alice: string; bob: string; root: string; writer: string; ops: string };
}

/**
 * alice: read, write, and a grant to write bob's subject (`aliceWritesBob`: false leaves it
 * out); bob: read, write; root: admin; writer: write only (no read); ops: read, write, admin.
 */
function policyOf(tokens: Files['tokens'], aliceWritesBob = true): Policy {
  const policy = emptyPolicy();
  policy.subjects.set('alice', { tokenSha256: hashToken(tokens.alice), rights: ['read', 'write'], grants: aliceWritesBob ? [{ owner: 'bob', rights: ['write'] }] : [] });
  policy.subjects.set('bob', { tokenSha256: hashToken(tokens.bob), rights: ['read', 'write'], grants: [] });
  policy.subjects.set('root', { tokenSha256: hashToken(tokens.root), rights: ['admin'], grants: [] });
  policy.subjects.set('writer', { tokenSha256: hashToken(tokens.writer), rights: ['write'], grants: [] });
  policy.subjects.set('ops', { tokenSha256: hashToken(tokens.ops), rights: ['read', 'write', 'admin'], grants: [] });
  return policy;
}

async function daemonIn(dir: string, extra: Partial<DaemonOptions> = {}): Promise<{ daemon: Daemon; f: Files }> {
  const tokens = { alice: newToken(), bob: newToken(), root: newToken(), writer: newToken(), ops: newToken() };
  const f = { socket: join(dir, 'sock'), audit: join(dir, 'audit.log'), policy: join(dir, 'policy.json'), tokens };
  await savePolicy(f.policy, policyOf(tokens));
  const daemon = await startDaemon({ imagePath: join(dir, 'img'), socketPath: f.socket, policyPath: f.policy, auditPath: f.audit, createSize: 8 * MiB, ...extra });
  return { daemon, f };
}

const text = (v: Uint8Array | undefined): string | undefined => (v === undefined ? undefined : Buffer.from(v).toString());

test('a client transaction answers each op as the embedded store does: a refused op leaves the others to commit, and get reads through it', async () => {
  await withTempDir(async (dir) => {
    const { daemon, f } = await daemonIn(dir);
    const client = await connect({ socket: f.socket, token: f.tokens.alice });
    const embedded = await Store.create(join(dir, 'embedded'), { size: 8 * MiB });
    try {
      for (const api of [embedded, client]) {
        await api.put('alice', '/state/old', 'before');
        const txn = api.begin('alice');
        const codes = {
          put: await codeOf(txn.put('alice', '/state/a', 'A')),
          deleteMissing: await codeOf(txn.delete('alice', '/state/missing')),
          putUnderMntWithNoMount: await codeOf(txn.put('alice', '/mnt/x/k', 'v')),
          putOutsideState: await codeOf(txn.put('alice', '/etc/k', 'v')),
          putUnderAValue: await codeOf(txn.put('alice', '/state/a/b', 'v')),
          deleteOld: await codeOf(txn.delete('alice', '/state/old')),
          otherSubject: await codeOf(txn.put('bob', '/state/k', 'v')),
          malformedSubject: await codeOf(txn.put('Not A Subject', '/state/k', 'v')),
        };
        const reads = {
          own: text(await txn.get('alice', '/state/a')),
          deleted: text(await txn.get('alice', '/state/old')),
          absent: text(await txn.get('alice', '/state/missing')),
          outsideSeesNothing: text(await api.get('alice', '/state/a')),
        };
        const commit = await codeOf(txn.commit());
        const after = { a: text(await api.get('alice', '/state/a')), old: text(await api.get('alice', '/state/old')) };
        const side = api === client ? 'client' : 'embedded';
        assert.deepEqual(
          codes,
          { put: 'OK', deleteMissing: 'ENOENT', putUnderMntWithNoMount: 'EINVAL', putOutsideState: 'EINVAL', putUnderAValue: 'ENOTDIR', deleteOld: 'OK', otherSubject: 'EXDEV', malformedSubject: 'EINVAL' },
          side,
        );
        assert.deepEqual(reads, { own: 'A', deleted: undefined, absent: undefined, outsideSeesNothing: undefined }, side);
        assert.equal(commit, 'OK', side);
        assert.deepEqual(after, { a: 'A', old: undefined }, side);
        assert.equal(await codeOf(txn.get('alice', '/state/a')), 'EBADF', `${side}: a finished transaction`);
      }
    } finally {
      await client.close();
      await embedded.close();
      await daemon.close();
    }
  });
});

test('pipelined ops of a client transaction reach the daemon in order: 32 puts sent without waiting all commit', async () => {
  await withTempDir(async (dir) => {
    const { daemon, f } = await daemonIn(dir);
    const client = await connect({ socket: f.socket, token: f.tokens.alice });
    try {
      const txn = client.begin('alice');
      const sent = [];
      for (let i = 0; i < 32; i++) sent.push(txn.put('alice', `/state/p/${i}`, `v${i}`));
      sent.push(txn.put('alice', '/state/p/0', 'last write wins'));
      sent.push(txn.commit()); // sent before any answer came back
      await Promise.all(sent);
      const page = await client.list('alice', '/state/p/', { limit: 100 });
      assert.equal(page.keys.length, 32);
      assert.equal(text(await client.get('alice', '/state/p/0')), 'last write wins');
      assert.equal(text(await client.get('alice', '/state/p/31')), 'v31');
    } finally {
      await client.close();
      await daemon.close();
    }
  });
});

test('transactions a connection leaves open are aborted when it closes: nothing written, and their slots come back', async () => {
  await withTempDir(async (dir) => {
    const { daemon, f } = await daemonIn(dir);
    const leaver = await connect({ socket: f.socket, token: f.tokens.alice });
    const other = await connect({ socket: f.socket, token: f.tokens.alice });
    try {
      // 8 open transactions per subject: the leaver takes them all.
      const held = Array.from({ length: 8 }, () => leaver.begin('alice'));
      await Promise.all(held.map((t, i) => t.put('alice', `/state/held/${i}`, 'never committed')));
      const refused = other.begin('alice');
      assert.equal(await codeOf(refused.put('alice', '/state/x', 'v')), 'EAGAIN', 'every slot is held');
      assert.equal(await codeOf(refused.commit()), 'EAGAIN', 'the begin refusal is what every op reports');
      await leaver.close();
      // The daemon sees the close asynchronously: retry until a slot is free (bounded).
      let code = 'EAGAIN';
      for (let i = 0; i < 50 && code === 'EAGAIN'; i++) {
        const t = other.begin('alice');
        code = await codeOf(t.put('alice', '/state/after', 'v'));
        if (code === 'OK') await t.commit();
        else await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.equal(code, 'OK', 'a slot came back after the close');
      const again = Array.from({ length: 8 }, () => other.begin('alice'));
      assert.deepEqual(await Promise.all(again.map((t, i) => codeOf(t.put('alice', `/state/again/${i}`, 'v')))), Array(8).fill('OK'), 'all 8 slots came back');
      await Promise.all(again.map((t) => t.abort()));
      assert.deepEqual((await other.list('alice', '/state/', { limit: 100 })).keys, ['/state/after']);
    } finally {
      await other.close();
      await leaver.close();
      await daemon.close();
    }
  });
});

test('a REOPEN ends the transactions open on the daemon: their ops and commit are EBADF and nothing of them is written', async () => {
  await withTempDir(async (dir) => {
    const { daemon, f } = await daemonIn(dir);
    const alice = await connect({ socket: f.socket, token: f.tokens.alice });
    const root = await connect({ socket: f.socket, token: f.tokens.root });
    try {
      const txn = alice.begin('alice');
      await txn.put('alice', '/state/before-reopen', 'v');
      await root.reopen();
      assert.equal(await codeOf(txn.put('alice', '/state/after-reopen', 'v')), 'EBADF');
      assert.equal(await codeOf(txn.commit()), 'EBADF');
      assert.deepEqual((await alice.list('alice', '/state/')).keys, []);
      const next = alice.begin('alice'); // the reopened store takes new ones
      await next.put('alice', '/state/k', 'v');
      await next.commit();
      assert.equal(text(await alice.get('alice', '/state/k')), 'v');
    } finally {
      await alice.close();
      await root.close();
      await daemon.close();
    }
  });
});

test('txn.abort() after a failed commit resolves, embedded and through the client, whatever failed it: tree rules at commit, a closed store, a REOPEN', async () => {
  await withTempDir(async (dir) => {
    const { daemon, f } = await daemonIn(dir);
    const client = await connect({ socket: f.socket, token: f.tokens.alice });
    const root = await connect({ socket: f.socket, token: f.tokens.root });
    const embeddedPath = join(dir, 'embedded');
    let embedded = await Store.create(embeddedPath, { size: 8 * MiB });
    try {
      for (const side of ['embedded', 'client'] as const) {
        const api = side === 'embedded' ? embedded : client;
        // Refused at commit by the tree rules: /state/a holds a value by then.
        const first = api.begin('alice');
        await first.put('alice', '/state/a', 'x');
        const child = api.begin('alice');
        await child.put('alice', '/state/a/c', 'x');
        await first.commit();
        const tree = {
          commit: await codeOf(child.commit()),
          abort: await codeOf(child.abort()),
          abortAgain: await codeOf(child.abort()),
          put: await codeOf(child.put('alice', '/state/b', 'v')),
          commitAgain: await codeOf(child.commit()),
        };
        // A commit under way or done is not the caller's to abort.
        const ok = api.begin('alice');
        await ok.put('alice', '/state/ok', 'v');
        const committing = ok.commit();
        const abortWhileCommitting = await codeOf(ok.abort());
        await committing;
        const abortAfterCommit = await codeOf(ok.abort());
        // The store under the transaction goes away: closed and opened again, or a daemon REOPEN.
        const ended = api.begin('alice');
        await ended.put('alice', '/state/ended', 'v');
        if (side === 'embedded') {
          await embedded.close();
          embedded = await Store.open(embeddedPath);
        } else {
          await root.reopen();
        }
        const reopened = { commit: await codeOf(ended.commit()), abort: await codeOf(ended.abort()) };
        assert.deepEqual(
          { tree, abortWhileCommitting, abortAfterCommit, reopened },
          {
            tree: { commit: 'ENOTDIR', abort: 'OK', abortAgain: 'OK', put: 'EBADF', commitAgain: 'EBADF' },
            abortWhileCommitting: 'EBADF',
            abortAfterCommit: 'EBADF',
            reopened: { commit: 'EBADF', abort: 'OK' },
          },
          side,
        );
        const now = side === 'embedded' ? embedded : client;
        assert.deepEqual((await now.list('alice', '/state/')).keys, ['/state/a', '/state/ok'], `${side}: nothing of the failed commits`);
      }
    } finally {
      await client.close();
      await root.close();
      await embedded.close();
      await daemon.close();
    }
  });
});

/** A raw protocol connection: send requests, get their answers (in request order; the daemon may answer in any). */
async function rawConnection(socket: string): Promise<{ ask: (reqs: Request[]) => Promise<Response[]>; raw: Socket }> {
  const raw = createConnection(socket);
  await once(raw, 'connect');
  const reader = new FrameReader();
  const answers: Response[] = [];
  let wake: (() => void) | undefined;
  raw.on('data', (chunk: Buffer) => {
    for (const frame of reader.push(chunk)) answers.push(decodeResponse(frame));
    wake?.();
  });
  const ask = async (reqs: Request[]): Promise<Response[]> => {
    const from = answers.length;
    raw.write(Buffer.concat(reqs.map((r) => encodeRequest(r))));
    while (answers.length < from + reqs.length) {
      const closed = once(raw, 'close');
      await Promise.race([new Promise<void>((resolve) => (wake = resolve)), closed]);
      if (raw.destroyed && answers.length < from + reqs.length) assert.fail('the daemon closed the connection');
    }
    const byId = new Map(answers.slice(from).map((a) => [a.requestId, a]));
    return reqs.map((q) => byId.get(q.requestId) ?? assert.fail(`no answer to request ${q.requestId}`));
  };
  return { ask, raw };
}

const codes = (answers: Response[]): string[] => answers.map((a) => (a.status === 'ok' ? 'OK' : a.error.code));

test('the transaction ops on the wire: numbers increase per connection, unknown is ENOENT, finished is EBADF, commit names its subject, TXN_GET needs read', async () => {
  await withTempDir(async (dir) => {
    const { daemon, f } = await daemonIn(dir);
    const { ask, raw } = await rawConnection(f.socket);
    const w = await rawConnection(f.socket);
    try {
      let id = 1;
      const r = (req: Outgoing): Request => ({ ...req, requestId: id++ });
      assert.deepEqual(codes(await ask([r({ op: 'HELLO', token: f.tokens.alice })])), ['OK']);
      const answers = await ask([
        r({ op: 'TXN_PUT', txn: 1, subject: 'alice', key: '/state/k', value: new Uint8Array(1) }), // never begun
        r({ op: 'TXN_BEGIN', txn: 0, subject: 'alice' }), // numbers start at 1
        r({ op: 'TXN_BEGIN', txn: 5, subject: 'alice' }),
        r({ op: 'TXN_BEGIN', txn: 5, subject: 'alice' }), // not above the last
        r({ op: 'TXN_BEGIN', txn: 3, subject: 'alice' }),
        r({ op: 'TXN_PUT', txn: 5, subject: 'alice', key: '/state/k', value: Buffer.from('v') }),
        r({ op: 'TXN_GET', txn: 5, subject: 'alice', key: '/state/k' }),
        r({ op: 'TXN_COMMIT', txn: 5, subject: 'bob' }), // alice may write bob's subject, but it is not this transaction's: still open after it
        r({ op: 'TXN_COMMIT', txn: 5, subject: 'alice' }),
        r({ op: 'TXN_PUT', txn: 5, subject: 'alice', key: '/state/k2', value: new Uint8Array(1) }), // finished
        r({ op: 'TXN_ABORT', txn: 4, subject: 'alice' }), // below the highest, never open: finished as far as the daemon knows
        r({ op: 'TXN_ABORT', txn: 9, subject: 'alice' }), // above: never begun
      ]);
      assert.deepEqual(codes(answers), ['ENOENT', 'EINVAL', 'OK', 'EINVAL', 'EINVAL', 'OK', 'OK', 'EXDEV', 'OK', 'EBADF', 'EBADF', 'ENOENT']);
      const got = answers[6];
      assert.ok(got?.status === 'ok' && got.op === 'TXN_GET');
      assert.equal(text(got.value), 'v');
      // Asked once the commit was answered (a GET pipelined behind it may be answered first).
      const [read] = await ask([r({ op: 'GET', subject: 'alice', key: '/state/k' })]);
      assert.ok(read?.status === 'ok' && read.op === 'GET');
      assert.equal(text(read.value), 'v', 'the commit wrote it');

      // writer may write but not read: TXN_GET is EPERM (and audited), its puts commit.
      assert.deepEqual(codes(await w.ask([{ op: 'HELLO', requestId: 1, token: f.tokens.writer }])), ['OK']);
      const writer = await w.ask([
        { op: 'TXN_BEGIN', requestId: 2, txn: 1, subject: 'writer' },
        { op: 'TXN_PUT', requestId: 3, txn: 1, subject: 'writer', key: '/state/w', value: new Uint8Array(1) },
        { op: 'TXN_GET', requestId: 4, txn: 1, subject: 'writer', key: '/state/w' },
        { op: 'TXN_BEGIN', requestId: 5, txn: 2, subject: 'alice' },
        { op: 'TXN_COMMIT', requestId: 6, txn: 1, subject: 'writer' },
      ]);
      assert.deepEqual(codes(writer), ['OK', 'OK', 'EPERM', 'EPERM', 'OK']);
      const audit = await readFile(f.audit, 'utf8');
      assert.match(audit, /"subject":"writer","op":"TXN_GET","target":"writer","result":"EPERM"/);
      assert.match(audit, /"subject":"writer","op":"TXN_BEGIN","target":"alice","result":"EPERM"/);
    } finally {
      raw.destroy();
      w.raw.destroy();
      await daemon.close();
    }
  });
});

test('a client whose begin was refused reports that refusal from its ops, and the refused begin leaves nothing open', async () => {
  await withTempDir(async (dir) => {
    const { daemon, f } = await daemonIn(dir);
    const client: Client = await connect({ socket: f.socket, token: f.tokens.writer });
    try {
      const denied = client.begin('alice'); // writer may not write alice's subject
      assert.equal(await codeOf(denied.put('alice', '/state/k', 'v')), 'EPERM');
      assert.equal(await codeOf(denied.get('alice', '/state/k')), 'EPERM');
      assert.equal(await codeOf(denied.abort()), 'EPERM');
      assert.equal(await codeOf(denied.abort()), 'EBADF', 'aborted (locally) once already');
      const own = client.begin('writer');
      await own.put('writer', '/state/k', 'v');
      await own.commit();
    } finally {
      await client.close();
      await daemon.close();
    }
  });
});

test('requests of one connection run in the order read however REOPENs pile up: a transaction begun between two reopens is ended by the second, and holds no slot', async () => {
  await withTempDir(async (dir) => {
    const { daemon, f } = await daemonIn(dir);
    const { ask, raw } = await rawConnection(f.socket);
    try {
      let id = 1;
      const r = (req: Outgoing): Request => ({ ...req, requestId: id++ });
      assert.deepEqual(codes(await ask([r({ op: 'HELLO', token: f.tokens.ops })])), ['OK']);
      // One chunk: the second REOPEN is asked while the TXN_BEGIN still waits for the first.
      const answers = await ask([
        r({ op: 'REOPEN' }),
        r({ op: 'TXN_BEGIN', txn: 1, subject: 'ops' }),
        r({ op: 'REOPEN' }),
        r({ op: 'TXN_PUT', txn: 1, subject: 'ops', key: '/state/t', value: Buffer.from('v') }),
        r({ op: 'TXN_COMMIT', txn: 1, subject: 'ops' }),
      ]);
      assert.deepEqual(codes(answers), ['OK', 'OK', 'OK', 'EBADF', 'EBADF'], 'the begin ran between the reopens, the put and commit after the second');
      const begins = await ask(Array.from({ length: 8 }, (_, i) => r({ op: 'TXN_BEGIN', txn: 10 + i, subject: 'ops' })));
      assert.deepEqual(codes(begins), Array(8).fill('OK'), 'no transaction left open to hold a slot');
      await ask(Array.from({ length: 8 }, (_, i) => r({ op: 'TXN_ABORT', txn: 10 + i, subject: 'ops' })));
      const puts = await ask([
        r({ op: 'REOPEN' }),
        r({ op: 'PUT', subject: 'ops', key: '/state/x', value: Buffer.from('first') }),
        r({ op: 'REOPEN' }),
        r({ op: 'PUT', subject: 'ops', key: '/state/x', value: Buffer.from('second') }),
      ]);
      assert.deepEqual(codes(puts), ['OK', 'OK', 'OK', 'OK']);
      const [x] = await ask([r({ op: 'GET', subject: 'ops', key: '/state/x' })]);
      assert.ok(x?.status === 'ok' && x.op === 'GET');
      assert.equal(text(x.value), 'second', 'the later write is the one kept');
    } finally {
      raw.destroy();
      await daemon.close();
    }
  });
});

test('the in-flight limit never cuts a pipelined transaction: its ops take no slot, and a commit it refuses aborts the transaction', async () => {
  await withTempDir(async (dir) => {
    const { daemon, f } = await daemonIn(dir, { maxInFlight: 3 });
    const client = await connect({ socket: f.socket, token: f.tokens.alice });
    const other = await connect({ socket: f.socket, token: f.tokens.alice });
    try {
      // Three durable puts fill the limit in the same turn as 30 transaction puts and the commit.
      const busy = [client.put('alice', '/state/o1', 'x'), client.put('alice', '/state/o2', 'x'), client.put('alice', '/state/o3', 'x')];
      const txn = client.begin('alice');
      const puts = Array.from({ length: 30 }, (_, i) => codeOf(txn.put('alice', `/state/t/${i}`, 'v')));
      const commit = codeOf(txn.commit());
      await Promise.all(busy);
      assert.deepEqual(await Promise.all(puts), Array(30).fill('OK'), 'no op refused for the limit');
      const committed = await commit;
      const keys = (await client.list('alice', '/state/t/', { limit: 100 })).keys.length;
      // The commit itself waits for the disk and takes a slot: refused (EAGAIN) here, nothing written.
      assert.ok((committed === 'OK' && keys === 30) || (committed === 'EAGAIN' && keys === 0), `commit ${committed}, ${keys} keys`);

      // A commit refused at the limit aborts the transaction: all 8 slots stay free.
      for (let i = 0; i < 8; i++) {
        const t = client.begin('alice');
        await t.put('alice', `/state/r/${i}`, 'v');
        // The client writes its first request of a turn at once and the rest of the turn together:
        // a GET (answered on the spot, no slot) goes first, so the three puts and the commit reach
        // the daemon in one write and the puts hold every slot when it reads the commit.
        const lead = client.get('alice', '/state/none');
        const others = [client.put('alice', `/state/p${i}a`, 'x'), client.put('alice', `/state/p${i}b`, 'x'), client.put('alice', `/state/p${i}c`, 'x')];
        assert.equal(await codeOf(t.commit()), 'EAGAIN');
        await Promise.all(others);
        assert.equal(await lead, undefined);
      }
      const fresh = Array.from({ length: 8 }, () => other.begin('alice'));
      assert.deepEqual(await Promise.all(fresh.map((t, i) => codeOf(t.put('alice', `/state/f/${i}`, 'v')))), Array(8).fill('OK'));
      await Promise.all(fresh.map((t) => t.abort()));
      assert.deepEqual((await client.list('alice', '/state/r/')).keys, [], 'nothing of the refused commits');
    } finally {
      await client.close();
      await other.close();
      await daemon.close();
    }
  });
});

test('rights taken away mid-transaction: a refused commit aborts it (slot back), and a refused write makes the commit fail even once the right is back', async () => {
  await withTempDir(async (dir) => {
    const { daemon, f } = await daemonIn(dir);
    const alice = await connect({ socket: f.socket, token: f.tokens.alice });
    const bob = await connect({ socket: f.socket, token: f.tokens.bob });
    const reload = async (aliceWritesBob: boolean): Promise<void> => {
      await savePolicy(f.policy, policyOf(f.tokens, aliceWritesBob));
      await daemon.reloadPolicy();
    };
    try {
      // alice holds all 8 of bob's slots, then loses her grant: her commits are EPERM and abort.
      const held = Array.from({ length: 8 }, () => alice.begin('bob'));
      assert.deepEqual(await Promise.all(held.map((t, i) => codeOf(t.put('bob', `/state/h/${i}`, 'v')))), Array(8).fill('OK'));
      await reload(false);
      assert.deepEqual(await Promise.all(held.map((t) => codeOf(t.commit()))), Array(8).fill('EPERM'));
      assert.deepEqual(await Promise.all(held.map((t) => codeOf(t.abort()))), Array(8).fill('OK'), 'abort after a failed commit, as embedded');
      const own = bob.begin('bob');
      assert.equal(await codeOf(own.put('bob', '/state/own', 'v')), 'OK', "bob's slots are free again");
      await own.commit();

      // A write refused while the grant is gone fails the commit after it is back: the
      // transaction is not what alice sent.
      await reload(true);
      const t = alice.begin('bob');
      assert.equal(await codeOf(t.put('bob', '/state/a', '1')), 'OK');
      await reload(false);
      assert.equal(await codeOf(t.put('bob', '/state/b', '2')), 'EPERM');
      await reload(true);
      const failed = await t.commit().then(
        () => undefined,
        (err: unknown) => err,
      );
      assert.ok(isStatefsError(failed) && failed.code === 'EPERM', String(failed));
      assert.match(failed.message, /refused one of its writes/);
      assert.deepEqual((await bob.list('bob', '/state/')).keys, ['/state/own'], 'nothing of the failed transaction');
    } finally {
      await alice.close();
      await bob.close();
      await daemon.close();
    }
  });
});

test('a refusal that comes while the TXN_BEGIN still waits behind a REOPEN is kept for it: a refused write fails the commit, a refused commit finishes it', async () => {
  await withTempDir(async (dir) => {
    const { daemon, f } = await daemonIn(dir, { maxInFlight: 2 });
    const { ask, raw } = await rawConnection(f.socket);
    const other = await connect({ socket: f.socket, token: f.tokens.ops });
    try {
      let id = 1;
      const r = (req: Outgoing): Request => ({ ...req, requestId: id++ });
      assert.deepEqual(codes(await ask([r({ op: 'HELLO', token: f.tokens.ops })])), ['OK']);
      // REOPEN and the waiting TXN_BEGIN take both in-flight slots: the TXN_PUT is refused.
      const first = await ask([r({ op: 'REOPEN' }), r({ op: 'TXN_BEGIN', txn: 1, subject: 'ops' }), r({ op: 'TXN_PUT', txn: 1, subject: 'ops', key: '/state/k1', value: Buffer.from('v1') })]);
      assert.deepEqual(codes(first), ['OK', 'OK', 'EAGAIN']);
      const rest = await ask([r({ op: 'TXN_PUT', txn: 1, subject: 'ops', key: '/state/k2', value: Buffer.from('v2') }), r({ op: 'TXN_COMMIT', txn: 1, subject: 'ops' })]);
      assert.deepEqual(codes(rest), ['OK', 'EAGAIN'], 'the commit of a transaction that lost a write fails with that refusal');
      assert.deepEqual((await other.list('ops', '/state/')).keys, [], 'nothing of it written');

      // A commit refused while its begin waits: the transaction is finished when the begin runs.
      const second = await ask([r({ op: 'REOPEN' }), r({ op: 'TXN_BEGIN', txn: 2, subject: 'ops' }), r({ op: 'TXN_COMMIT', txn: 2, subject: 'ops' })]);
      assert.deepEqual(codes(second), ['OK', 'OK', 'EAGAIN']);
      assert.deepEqual(codes(await ask([r({ op: 'TXN_GET', txn: 2, subject: 'ops', key: '/state/k' })])), ['EBADF']);
      const slots = Array.from({ length: 8 }, () => other.begin('ops'));
      assert.deepEqual(await Promise.all(slots.map((t) => codeOf(t.put('ops', '/state/s', 'v')))), Array(8).fill('OK'), 'no slot held by it');
      await Promise.all(slots.map((t) => t.abort()));
    } finally {
      raw.destroy();
      await other.close();
      await daemon.close();
    }
  });
});

test('pipelined transaction ops from a peer that never reads cannot make the daemon buffer their answers (the 1 MiB bound holds for them too)', async () => {
  await withTempDir(async (dir) => {
    const { daemon, f } = await daemonIn(dir);
    const alice = await connect({ socket: f.socket, token: f.tokens.alice });
    await alice.put('alice', '/state/v', new Uint8Array(65_536));
    const frames = [encodeRequest({ op: 'HELLO', requestId: 1, token: f.tokens.alice }), encodeRequest({ op: 'TXN_BEGIN', requestId: 2, txn: 1, subject: 'alice' })];
    for (let i = 3; i < 1_800; i++) frames.push(encodeRequest({ op: 'TXN_GET', requestId: i, txn: 1, subject: 'alice', key: '/state/v' }));
    const { grew, raw } = await bufferedForSilentPeer(f.socket, frames); // ~60 KiB of requests for ~115 MB of answers
    try {
      assert.ok(grew < 32 * MiB, `answers buffered for a peer that does not read: ${Math.round(grew / MiB)} MiB`);
      assert.equal((await alice.get('alice', '/state/v'))?.length, 65_536, 'others are served meanwhile');
    } finally {
      raw.destroy();
      await alice.close();
      await daemon.close();
    }
  });
});
