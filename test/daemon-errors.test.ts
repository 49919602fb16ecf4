import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { connect, type Client } from '../src/client/client.js';
import { Store } from '../src/engine/store.js';
import { ERROR_CODES, isStatefsError, type ErrorCode, type StatefsError } from '../src/errors.js';
import { savePolicy } from '../src/server/policy/policy-file.js';
import { emptyPolicy, hashToken, newToken, type Right } from '../src/server/policy/policy.js';
import { OP_NAMES } from '../src/server/protocol/ops.js';
import { runStatefs, startStatefsd, type CliRun } from './daemon-process.js';
import { MiB, text, withTempDir } from './helpers.js';
import { crc32cOf } from './record-encoder.js';

/*
 * Every error code of spec section 7, produced end to end: a real statefsd child process, the
 * client library, and `statefs ... --connect <socket> --token <t>` (exit status 1, the
 * `statefs: CODE: ` line on stderr, and the code in --json), each compared with what the embedded
 * Store gives for the same operation. The last test checks the results against the table in
 * docs/storage/protocol.md ("Error codes through the daemon").
 */

/** What each code was proven through; filled by the tests below, checked by the last one. */
interface Proof {
  /** The client got it rebuilt from a daemon response frame (it crossed the wire). */
  wire: boolean;
  client: boolean;
  cli: boolean;
}
const proven = new Map<ErrorCode, Proof>();

function mark(code: ErrorCode, what: Partial<Proof>): void {
  const p = proven.get(code) ?? { wire: false, client: false, cli: false };
  proven.set(code, { wire: p.wire || what.wire === true, client: p.client || what.client === true, cli: p.cli || what.cli === true });
}

async function errorOf(attempt: Promise<unknown>): Promise<StatefsError | undefined> {
  try {
    await attempt;
    return undefined;
  } catch (err) {
    if (isStatefsError(err)) return err;
    throw err;
  }
}

/**
 * A client call failed with `code`. `from: 'daemon'`: the error came in a response frame (its
 * `op` is the request's op name, or undefined for a connection-level frame); `'client'`: the
 * client library raised it itself (an op such as `txn.put` or `client`).
 */
function clientError(code: ErrorCode, err: StatefsError | undefined, from: 'daemon' | 'client'): StatefsError {
  assert.ok(err !== undefined, `${code}: the client call succeeded`);
  assert.equal(err.code, code, err.message);
  assert.equal(err.errno, ERROR_CODES[code]);
  const fromWire = err.op === undefined || (OP_NAMES as readonly string[]).includes(err.op);
  assert.equal(fromWire, from === 'daemon', `${code}: op ${String(err.op)}`);
  mark(code, { client: true, wire: fromWire });
  return err;
}

async function viaClient(code: ErrorCode, attempt: Promise<unknown>, from: 'daemon' | 'client'): Promise<StatefsError> {
  return clientError(code, await errorOf(attempt), from);
}

/** The embedded store gives the same code for the same operation. */
async function viaEmbedded(code: ErrorCode, attempt: Promise<unknown>): Promise<StatefsError> {
  const err = await errorOf(attempt);
  assert.ok(err !== undefined, `${code}: the embedded call succeeded`);
  assert.equal(err.code, code, err.message);
  return err;
}

/** `statefs <args> --json` fails with `code`: exit 1, `statefs: CODE: ...` on stderr, the code in JSON. */
async function viaCli(code: ErrorCode, args: readonly string[], prefix: readonly string[] = []): Promise<CliRun> {
  const run = await runStatefs([...args, '--json'], prefix);
  const where = `statefs ${args.join(' ')}: ${run.stderr}`;
  assert.equal(run.status, 1, where);
  assert.match(run.stderr, new RegExp(`^statefs: ${code}: [^\\n]+\\n$`), where);
  const json: unknown = JSON.parse(run.stdout);
  assert.deepEqual(json, { error: { code, message: run.stderr.slice(`statefs: ${code}: `.length, -1) } }, where);
  if (args.includes('--connect')) mark(code, { cli: true });
  return run;
}

interface Subject {
  name: string;
  token: string;
  rights: Right[];
  grants?: { owner: string; rights: Right[] }[];
  quota?: { soft: number; hard: number };
}

async function writePolicy(path: string, subjects: readonly Subject[]): Promise<void> {
  const policy = emptyPolicy();
  for (const s of subjects) {
    policy.subjects.set(s.name, { tokenSha256: hashToken(s.token), rights: s.rights, grants: s.grants ?? [], ...(s.quota === undefined ? {} : { quota: s.quota }) });
  }
  await savePolicy(path, policy);
}

function subject(name: string, rights: Right[], extra: Pick<Subject, 'grants' | 'quota'> = {}): Subject {
  return { name, token: newToken(), rights, ...extra };
}

function daemonArgs(dir: string, image: string, extra: readonly string[] = []): string[] {
  return ['--image', image, '--socket', join(dir, 'sock'), '--policy', join(dir, 'policy.json'), '--audit', join(dir, 'audit.log'), ...extra];
}

/** `--connect <socket> --token <t>` for `who`. */
const connectAs = (dir: string, who: Subject): string[] => ['--connect', join(dir, 'sock'), '--token', who.token];

/** Every place `needle` occurs in the file gets one byte changed (a CRC can no longer match). */
async function damageEveryCopy(path: string, needle: Uint8Array): Promise<number> {
  const bytes = await readFile(path);
  const fh = await open(path, 'r+');
  let copies = 0;
  try {
    for (let at = bytes.indexOf(needle); at >= 0; at = bytes.indexOf(needle, at + 1)) {
      const target = at + Math.floor(needle.length / 2);
      await fh.write(Uint8Array.of((bytes[target] ?? 0) ^ 0xff), 0, 1, target);
      copies++;
    }
    await fh.datasync();
  } finally {
    await fh.close();
  }
  return copies;
}

/** The operations the error scenario uses, offered alike by `Store` and `Client`. */
type Api = Pick<Store, 'put' | 'delete' | 'snapshot' | 'deleteSnap' | 'mountSnap' | 'verifySnapshot'>;

test('daemon errors: policy, key tree, names, sizes, quotas, snapshots, integrity and limits through the client and the CLI', async () => {
  await withTempDir(async (dir) => {
    const alice = subject('alice', ['read', 'write', 'snapshot', 'mount'], { grants: [{ owner: 'bob', rights: ['read', 'mount'] }] });
    const bob = subject('bob', ['read', 'write', 'snapshot'], { quota: { soft: 20_000, hard: 40_000 } });
    const carol = subject('carol', ['read', 'write', 'snapshot']);
    await writePolicy(join(dir, 'policy.json'), [alice, bob, carol]);
    const image = join(dir, 'img');
    const daemon = await startStatefsd(daemonArgs(dir, image, ['--create-size', '8MiB', '--max-connections', '12']));
    const embedded = await Store.create(join(dir, 'embedded'), { size: 8 * MiB, grants: { alice: ['bob'] }, quotas: { bob: { soft: 20_000, hard: 40_000 } } });
    const clients: Client[] = [];
    try {
      const open = async (who: Subject): Promise<Client> => {
        const c = await connect({ socket: join(dir, 'sock'), token: who.token });
        clients.push(c);
        return c;
      };
      const [a, b, c] = [await open(alice), await open(bob), await open(carol)];

      // The same state on both sides: bob's keys and snapshot s1 (alice mounts it), carol's c1.
      const probe = randomBytes(4096); // the value whose bytes the integrity case damages
      const setup = async (api: { alice: Api; bob: Api; carol: Api }): Promise<void> => {
        await api.bob.put('bob', '/state/x', 'one');
        await api.bob.put('bob', '/state/dir/leaf', 'leaf');
        await api.bob.put('bob', '/state/probe', probe);
        await api.bob.snapshot('bob', 's1');
        await api.alice.mountSnap('alice', 'bob', 's1', '/mnt/b');
        await api.carol.put('carol', '/state/c', 'c');
        await api.carol.snapshot('carol', 'c1');
      };
      await setup({ alice: a, bob: b, carol: c });
      await setup({ alice: embedded, bob: embedded, carol: embedded });

      const big = join(dir, 'big.bin');
      const huge = join(dir, 'huge.bin');
      await writeFile(big, new Uint8Array(65_537));
      await writeFile(huge, new Uint8Array(50_000));
      const longKey = `/state/${'k'.repeat(250)}`;
      const cases: { code: ErrorCode; who: Subject; op: (api: Api) => Promise<unknown>; cli: string[] }[] = [
        { code: 'ENOENT', who: bob, op: (api) => api.delete('bob', '/state/missing'), cli: ['del', 'bob', '/state/missing'] },
        { code: 'EPERM', who: alice, op: (api) => api.mountSnap('alice', 'carol', 'c1', '/mnt/c'), cli: ['mount', 'alice', 'carol', 'c1', '/mnt/c'] },
        { code: 'EROFS', who: alice, op: (api) => api.put('alice', '/mnt/b/x', 'two'), cli: ['put', 'alice', '/mnt/b/x', 'two'] },
        { code: 'ENOTDIR', who: bob, op: (api) => api.put('bob', '/state/x/child', 'c'), cli: ['put', 'bob', '/state/x/child', 'c'] },
        { code: 'EISDIR', who: bob, op: (api) => api.put('bob', '/state/dir', 'd'), cli: ['put', 'bob', '/state/dir', 'd'] },
        { code: 'EEXIST', who: bob, op: (api) => api.snapshot('bob', 's1'), cli: ['snapshot', 'bob', 's1'] },
        { code: 'EFBIG', who: carol, op: (api) => api.put('carol', '/state/big', new Uint8Array(65_537)), cli: ['put', 'carol', '/state/big', '--file', big] },
        { code: 'EINVAL', who: carol, op: (api) => api.put('carol', 'state/no-slash', 'v'), cli: ['put', 'carol', 'state/no-slash', 'v'] },
        { code: 'ENAMETOOLONG', who: carol, op: (api) => api.put('carol', longKey, 'v'), cli: ['put', 'carol', longKey, 'v'] },
        { code: 'EBUSY', who: bob, op: (api) => api.deleteSnap('bob', 's1'), cli: ['snap-rm', 'bob', 's1'] },
        { code: 'EDQUOTA', who: bob, op: (api) => api.put('bob', '/state/huge', new Uint8Array(50_000)), cli: ['put', 'bob', '/state/huge', '--file', huge] },
      ];
      const byName = new Map<string, Client>([
        ['alice', a],
        ['bob', b],
        ['carol', c],
      ]);
      for (const k of cases) {
        const client = byName.get(k.who.name);
        assert.ok(client !== undefined);
        await viaEmbedded(k.code, k.op(embedded));
        await viaClient(k.code, k.op(client), 'daemon');
      }
      // None of these changes anything: the CLI runs go three at a time (3 clients, 3 runs and at most 3 closing: under 12 connections).
      for (let i = 0; i < cases.length; i += 3) {
        await Promise.all(cases.slice(i, i + 3).map((k) => viaCli(k.code, [...k.cli, ...connectAs(dir, k.who)])));
      }

      // EINTEGRITY: damage the probe value's record on both images while they are open; verify
      // re-reads the snapshot's records from the device.
      assert.ok((await damageEveryCopy(image, probe)) >= 1, 'the probe value is on the daemon image');
      assert.ok((await damageEveryCopy(join(dir, 'embedded'), probe)) >= 1, 'the probe value is on the embedded image');
      await viaEmbedded('EINTEGRITY', embedded.verifySnapshot('bob', 's1'));
      await viaClient('EINTEGRITY', b.verifySnapshot('bob', 's1'), 'daemon');
      await viaCli('EINTEGRITY', ['verify', 'bob', 's1', ...connectAs(dir, bob)]);
      await viaCli('EINTEGRITY', ['verify', 'bob', 's1', '--image', image]); // read-only, beside the daemon

      // EXDEV: a transaction op for another subject. The client refuses it before sending (it
      // knows the transaction's subject); the daemon's own EXDEV is in test/daemon-txn.test.ts.
      await viaEmbedded('EXDEV', embedded.begin('carol').put('bob', '/state/z', 'v'));
      await viaClient('EXDEV', c.begin('carol').put('bob', '/state/z', 'v'), 'client');
      const crossOps = join(dir, 'cross.json');
      await writeFile(crossOps, JSON.stringify([{ op: 'put', key: '/state/mine', value: 'v' }, { op: 'put', subject: 'bob', key: '/state/z', value: 'v' }]));
      await viaCli('EXDEV', ['txn', 'carol', crossOps, ...connectAs(dir, carol)]);

      // EAGAIN (1): the open-transaction limit (8 per subject). 40 transactions begun at once hold
      // more than 8 open; the refused begins are reported by the puts that follow them.
      const burst = async (api: Pick<Store, 'begin'> | Client, n: number): Promise<(StatefsError | undefined)[]> =>
        Promise.all(
          Array.from({ length: n }, (_, i) =>
            errorOf(
              (async () => {
                const txn = api.begin('carol');
                await txn.put('carol', `/state/t/${i}`, 'v');
                await txn.commit();
              })(),
            ),
          ),
        );
      for (const [side, errors] of [
        ['embedded', await burst(embedded, 40)],
        ['daemon', await burst(c, 40)],
      ] as const) {
        const refused = errors.filter((e) => e !== undefined);
        assert.ok(refused.length > 0, `${side}: some transactions over the limit`);
        for (const e of refused) {
          assert.equal(e.code, 'EAGAIN', e.message);
          assert.match(e.message, /open transactions/);
        }
        if (side === 'daemon') clientError('EAGAIN', refused[0], 'daemon');
      }

      // EAGAIN (2): the connection limit (--max-connections 12), connection-level, refused at
      // HELLO. Connect until the daemon refuses, then the CLI is refused too.
      let refusal: StatefsError | undefined;
      for (let i = 0; i < 20 && refusal === undefined; i++) {
        refusal = await errorOf(open(alice));
      }
      assert.ok(refusal !== undefined, 'the daemon refused a connection over its limit');
      clientError('EAGAIN', refusal, 'daemon');
      assert.match(refusal.message, /more than 12 connections/);
      await viaCli('EAGAIN', ['get', 'alice', '/state/none', ...connectAs(dir, alice)]);

      // EBADF: a finished transaction and a closed client live in the client library.
      const t1 = embedded.begin('carol');
      await t1.put('carol', '/state/once', 'v');
      await t1.commit();
      await viaEmbedded('EBADF', t1.commit());
      const t2 = c.begin('carol');
      await t2.put('carol', '/state/once', 'v');
      await t2.commit();
      assert.equal((await viaClient('EBADF', t2.commit(), 'client')).message, 'EBADF: the transaction is closed or finished');
      await c.close();
      assert.equal((await viaClient('EBADF', c.get('carol', '/state/c'), 'client')).message, 'EBADF: the client is closed or finished');
      await embedded.close();
      await viaEmbedded('EBADF', embedded.get('carol', '/state/c'));
    } finally {
      await Promise.all(clients.map((x) => x.close()));
      await embedded.close();
      assert.equal(await daemon.stop(), 0, daemon.stderr());
    }
  });
});

/** Puts `bytes`-sized values under fresh keys until one fails; its error and how many succeeded. */
async function fillUntilError(api: Pick<Store, 'put'>, who: string, bytes: number, max: number): Promise<{ err: StatefsError; stored: number }> {
  for (let i = 0; i < max; i++) {
    const err = await errorOf(api.put(who, `/state/fill/${i}`, randomBytes(bytes)));
    if (err !== undefined) return { err, stored: i };
  }
  assert.fail(`${max} puts of ${bytes} bytes all succeeded`);
}

test('daemon errors: ENOSPC on a full image through the client and the CLI, as embedded', async () => {
  await withTempDir(async (dir) => {
    const filler = subject('filler', ['read', 'write']);
    await writePolicy(join(dir, 'policy.json'), [filler]);
    const daemon = await startStatefsd(daemonArgs(dir, join(dir, 'img'), ['--create-size', '2MiB', '--max-in-flight', '2']));
    const value = join(dir, 'value.bin');
    await writeFile(value, randomBytes(48 * 1024));
    try {
      const embeddedPath = join(dir, 'embedded');
      const embedded = await Store.create(embeddedPath, { size: 2 * MiB });
      const local = await fillUntilError(embedded, 'filler', 48 * 1024, 100);
      await embedded.close();
      assert.equal(local.err.code, 'ENOSPC', local.err.message);
      const client = await connect({ socket: join(dir, 'sock'), token: filler.token });
      try {
        const remote = await fillUntilError(client, 'filler', 48 * 1024, 100);
        clientError('ENOSPC', remote.err, 'daemon');
        assert.ok(remote.stored > 10, `the daemon stored ${remote.stored} values first`);
      } finally {
        await client.close();
      }
      await viaCli('ENOSPC', ['put', 'filler', '/state/more', '--file', value, ...connectAs(dir, filler)]);
      await viaCli('ENOSPC', ['put', 'filler', '/state/more', '--file', value, '--image', embeddedPath]);

      // --max-in-flight 2: pipelined durable deletes (allowed on a full image) beyond the first
      // two in flight on one connection are refused.
      const again = await connect({ socket: join(dir, 'sock'), token: filler.token });
      try {
        const pipelined = await Promise.all(Array.from({ length: 8 }, (_, i) => errorOf(again.delete('filler', `/state/fill/${i}`))));
        const busy = pipelined.filter((e) => e !== undefined);
        assert.ok(busy.length > 0 && busy.length < 8, `${busy.length} of 8 refused`);
        for (const e of busy) assert.match(e.message, /^EAGAIN: limit reached: more than 2 requests in flight/);
      } finally {
        await again.close();
      }
    } finally {
      assert.equal(await daemon.stop(), 0, daemon.stderr());
    }
  });
});

/*
 * A real device write failure, without a fault hook: the daemon runs under a file-size limit
 * (RLIMIT_FSIZE via `ulimit -f`, 2048 blocks: 1 MiB in 512-byte blocks, 2 MiB in bash's 1 KiB
 * blocks) on an 8 MiB image, so the kernel refuses (EFBIG) every write past the limit; Node
 * ignores SIGXFSZ, and the file device reports the failure as EIO.
 */
const FSIZE_LIMIT = ['sh', '-c', 'ulimit -f 2048 && exec "$0" "$@"'];

test('daemon errors: EIO from a failing device write through the client and the CLI, as embedded', async () => {
  await withTempDir(async (dir) => {
    const filler = subject('filler', ['read', 'write']);
    await writePolicy(join(dir, 'policy.json'), [filler]);
    const image = join(dir, 'img');
    await (await Store.create(image, { size: 8 * MiB })).close();
    // The embedded image is filled past the limit first (this process has no limit); under the
    // limit, its next put lands past it.
    const embeddedPath = join(dir, 'embedded');
    const embedded = await Store.create(embeddedPath, { size: 8 * MiB });
    for (let i = 0; i < 100; i++) await embedded.put('filler', `/state/fill/${i}`, randomBytes(32 * 1024));
    await embedded.close();
    const value = join(dir, 'value.bin');
    await writeFile(value, randomBytes(32 * 1024));

    const daemon = await startStatefsd(daemonArgs(dir, image), FSIZE_LIMIT);
    try {
      const client = await connect({ socket: join(dir, 'sock'), token: filler.token });
      try {
        const remote = await fillUntilError(client, 'filler', 32 * 1024, 200);
        clientError('EIO', remote.err, 'daemon');
        assert.ok(remote.stored > 5, `the daemon stored ${remote.stored} values first`);
        // After a failed write the store refuses writes until reopened; reads still work.
        await viaClient('EIO', client.put('filler', '/state/after', 'v'), 'daemon');
        assert.equal((await client.get('filler', '/state/fill/0'))?.length, 32 * 1024);
      } finally {
        await client.close();
      }
      await viaCli('EIO', ['put', 'filler', '/state/more', '--file', value, ...connectAs(dir, filler)]);
      await viaCli('EIO', ['put', 'filler', '/state/more', '--file', value, '--image', embeddedPath], FSIZE_LIMIT);
    } finally {
      await daemon.stop();
    }
  });
});

/** The PUT record of `key` for `subject` on the image: its offset and bytes. */
async function putRecord(path: string, subjectName: string, key: string): Promise<{ at: number; bytes: Buffer }> {
  const image = await readFile(path);
  const recordKey = Buffer.from(`${subjectName}\0${key}`, 'latin1');
  const at = image.indexOf(recordKey) - 11;
  assert.ok(at >= 0 && image.readUInt32LE(at) === 0x4e585346 && image[at + 4] === 0x01, 'a PUT record');
  const length = 15 + image.readUInt16LE(at + 5) + image.readUInt32LE(at + 7);
  return { at, bytes: Buffer.from(image.subarray(at, at + length)) };
}

async function writeAt(path: string, at: number, bytes: Uint8Array): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.write(bytes, 0, bytes.length, at);
    await fh.datasync();
  } finally {
    await fh.close();
  }
}

test('daemon errors: ENOTSUP from a REOPEN of an image holding an unknown record; requests wait for a reopen', async () => {
  await withTempDir(async (dir) => {
    const admin = subject('admin', ['read', 'write', 'snapshot', 'mount', 'gc', 'admin']);
    await writePolicy(join(dir, 'policy.json'), [admin]);
    const image = join(dir, 'img');
    const daemon = await startStatefsd(daemonArgs(dir, image, ['--create-size', '8MiB']));
    const client = await connect({ socket: join(dir, 'sock'), token: admin.token });
    try {
      // Requests pipelined behind a REOPEN wait for it; none meets the closed store (EBADF) —
      // GETs included, which the daemon otherwise answers on the spot.
      await client.put('admin', '/state/before', 'b');
      const reopened = client.reopen();
      const puts = Array.from({ length: 40 }, (_, i) => client.put('admin', `/state/k${i}`, `v${i}`));
      const gets = Array.from({ length: 10 }, () => client.get('admin', '/state/before'));
      const outcomes = await Promise.all([reopened, ...puts, ...gets].map(errorOf));
      assert.deepEqual(
        outcomes.map((e) => e?.code ?? 'OK'),
        outcomes.map(() => 'OK'),
      );
      for (const got of await Promise.all(gets)) assert.equal(text(got), 'b');
      assert.equal(text(await client.get('admin', '/state/k39')), 'v39');

      // A record from "a newer version": the PUT of /state/future with an unknown opcode.
      await client.put('admin', '/state/future', 'from the future');
      const original = await putRecord(image, 'admin', '/state/future');
      const altered = Buffer.from(original.bytes);
      altered[4] = 0x7f;
      altered.writeUInt32LE(crc32cOf(altered.subarray(0, altered.length - 4)), altered.length - 4);
      await writeAt(image, original.at, altered);

      const embedded = await viaEmbedded('ENOTSUP', Store.open(image, { readOnly: true }));
      const failed = await viaClient('ENOTSUP', client.reopen(), 'daemon');
      assert.equal(failed.message, embedded.message);
      // Until a reopen succeeds, every request gets the open's error: what --image gives.
      const again = await viaClient('ENOTSUP', client.get('admin', '/state/k0'), 'daemon');
      assert.equal(again.message, embedded.message);
      const remote = await viaCli('ENOTSUP', ['get', 'admin', '/state/k0', ...connectAs(dir, admin)]);
      const local = await viaCli('ENOTSUP', ['get', 'admin', '/state/k0', '--image', image]);
      assert.equal(remote.stderr, local.stderr);

      // Put the record back: the next REOPEN succeeds and the daemon serves the image again.
      await writeAt(image, original.at, original.bytes);
      await client.reopen();
      assert.equal(text(await client.get('admin', '/state/future')), 'from the future');
      assert.equal(text(await client.get('admin', '/state/k0')), 'v0');

      // EBADF from the daemon: a REOPEN ends the transactions open on it, as closing an embedded
      // store ends its own.
      const ended = client.begin('admin');
      await ended.put('admin', '/state/t', 'v');
      await client.reopen();
      await viaClient('EBADF', ended.commit(), 'daemon');
      const store = await Store.create(join(dir, 'embedded'), { size: 8 * MiB });
      const closed = store.begin('admin');
      await closed.put('admin', '/state/t', 'v');
      await store.close();
      await viaEmbedded('EBADF', closed.commit());
    } finally {
      await client.close();
      assert.equal(await daemon.stop(), 0, daemon.stderr());
    }
  });
});

const PROTOCOL_MD = fileURLToPath(new URL('../../docs/storage/protocol.md', import.meta.url));

test('daemon errors: docs/storage/protocol.md lists every code with what the tests above proved', async () => {
  const doc = await readFile(PROTOCOL_MD, 'utf8');
  const section = doc.split('\n## ').find((s) => s.startsWith('7. Error codes through the daemon'));
  assert.ok(section !== undefined, 'protocol.md has section 7');
  const rows = [...section.matchAll(/^\| `(E[A-Z]+)` \| (yes|no) \| (yes|no) \| (yes|no) \|/gm)].map((m) => ({
    code: m[1] ?? '',
    wire: m[2] === 'yes',
    client: m[3] === 'yes',
    cli: m[4] === 'yes',
  }));
  assert.deepEqual(
    rows.map((r) => r.code),
    Object.keys(ERROR_CODES),
    'one row per code, in wire order',
  );
  for (const row of rows) {
    const seen = proven.get(row.code as ErrorCode) ?? { wire: false, client: false, cli: false };
    assert.deepEqual({ code: row.code, ...seen }, row, `${row.code}: the table says one thing, the tests proved another`);
  }
});
