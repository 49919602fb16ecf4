import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isStatefsError } from '../src/errors.js';
import { loadPolicy, savePolicy } from '../src/server/policy/policy-file.js';
import { allows, authenticate, emptyPolicy, hashToken, newToken, type Policy } from '../src/server/policy/policy.js';
import { withTempDir } from './helpers.js';
import { guardResources } from './hygiene.js';

guardResources();

const sha = (text: string): string => createHash('sha256').update(text, 'utf8').digest('hex');
const HASH_A = sha('a');
const HASH_B = sha('b');

/** A valid policy document; tests mutate copies of it. */
function baseDoc(): Record<string, unknown> {
  return {
    version: 1,
    subjects: {
      alice: { tokenSha256: HASH_A, rights: ['read', 'write'], grants: [{ owner: 'bob', rights: ['read', 'mount'] }], quota: { soft: 10, hard: 20 } },
      bob: { tokenSha256: HASH_B, rights: ['read', 'mount', 'admin'] },
    },
  };
}

async function rejects(promise: Promise<unknown>, code: string, text?: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isStatefsError(err), String(err));
    assert.equal(err.code, code, err.message);
    if (text !== undefined) assert.ok(err.message.includes(text), `${err.message} should name ${text}`);
    return true;
  });
}

test('save then load round-trips a policy, in a 0600 file with no temp files left', async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, 'policy.json');
    await writeFile(file, JSON.stringify(baseDoc()));
    const policy = await loadPolicy(file);
    assert.deepEqual(policy.subjects.get('bob'), { tokenSha256: HASH_B, rights: ['read', 'mount', 'admin'], grants: [] });

    const out = join(dir, 'out.json');
    await savePolicy(out, policy);
    assert.equal((await stat(out)).mode & 0o777, 0o600);
    assert.deepEqual(await loadPolicy(out), policy);
    await savePolicy(out, emptyPolicy()); // replaces the file
    assert.equal((await loadPolicy(out)).subjects.size, 0);
    assert.deepEqual((await readdir(dir)).sort(), ['out.json', 'policy.json']);
  });
});

test('savePolicy refuses a policy loadPolicy would refuse', async () => {
  await withTempDir(async (dir) => {
    const policy = emptyPolicy();
    policy.subjects.set('alice', { tokenSha256: HASH_A, rights: ['read'], grants: [], quota: { soft: 30, hard: 20 } });
    await rejects(savePolicy(join(dir, 'p.json'), policy), 'EINVAL', 'soft');
    assert.deepEqual(await readdir(dir), []);
  });
});

test('loadPolicy: ENOENT for a missing file, EINVAL naming the JSON path for every invalid document', async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, 'p.json');
    await rejects(loadPolicy(file), 'ENOENT');
    await writeFile(file, '{"version": 1,');
    await rejects(loadPolicy(file), 'EINVAL', 'not JSON');

    type Doc = Record<string, unknown>;
    const alice = (d: Doc): Doc => (d.subjects as Record<string, Doc>).alice ?? {};
    const cases: [string, (d: Doc) => void][] = [
      ['$.version', (d) => (d.version = 2)],
      ['$.extra', (d) => (d.extra = true)],
      ['$.subjects', (d) => (d.subjects = [])],
      ['$.subjects.alice.color', (d) => (alice(d).color = 'red')],
      ['$.subjects.alice.rights', (d) => delete alice(d).rights],
      ['$.subjects.alice.rights[1]', (d) => (alice(d).rights = ['read', 'fly'])],
      ['$.subjects.alice.rights[1]', (d) => (alice(d).rights = ['read', 'read'])],
      ['$.subjects.alice.tokenSha256', (d) => (alice(d).tokenSha256 = 'xyz')],
      ['$.subjects.alice.tokenSha256', (d) => (alice(d).tokenSha256 = HASH_A.toUpperCase())],
      ['$.subjects.bob.tokenSha256', (d) => (alice(d).tokenSha256 = HASH_B)],
      ['$.subjects.alice.quota', (d) => (alice(d).quota = { soft: 30, hard: 20 })],
      ['$.subjects.alice.quota.soft', (d) => (alice(d).quota = { soft: -1, hard: 20 })],
      ['$.subjects.alice.quota.hard', (d) => (alice(d).quota = { soft: 1, hard: '20' })],
      ['$.subjects.alice.quota.max', (d) => (alice(d).quota = { soft: 1, hard: 2, max: 3 })],
      ['$.subjects.alice.grants[0].rights[0]', (d) => (alice(d).grants = [{ owner: 'bob', rights: ['admin'] }])],
      ['$.subjects.alice.grants[0].owner', (d) => (alice(d).grants = [{ owner: 'alice', rights: ['read'] }])],
      ['$.subjects.alice.grants[0].owner', (d) => (alice(d).grants = [{ owner: 'Bob!', rights: ['read'] }])],
      ['$.subjects.alice.grants[1].owner', (d) => (alice(d).grants = [{ owner: 'bob', rights: [] }, { owner: 'bob', rights: ['read'] }])],
      ['$.subjects.alice.grants[0].why', (d) => (alice(d).grants = [{ owner: 'bob', rights: [], why: 'x' }])],
      ['$.subjects.Bad', (d) => ((d.subjects as Doc).Bad = { tokenSha256: sha('c'), rights: [] })],
      ['$.subjects["my svc"]', (d) => ((d.subjects as Doc)['my svc'] = { tokenSha256: sha('c'), rights: [] })],
    ];
    for (const [path, mutate] of cases) {
      const doc = baseDoc();
      mutate(doc);
      await writeFile(file, JSON.stringify(doc));
      await rejects(loadPolicy(file), 'EINVAL', `policy ${path}: `);
    }
  });
});

test('a subject named like an Object.prototype member is an ordinary subject', async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, 'p.json');
    await writeFile(file, JSON.stringify({ version: 1, subjects: { constructor: { tokenSha256: HASH_A, rights: ['read'] } } }));
    const policy = await loadPolicy(file);
    assert.equal(authenticate(policy, 'a'), 'constructor');
    assert.equal(allows(policy, 'tostring', 'read'), false);
    await savePolicy(file, policy);
    assert.deepEqual(await loadPolicy(file), policy);
  });
});

function samplePolicy(): { policy: Policy; aliceToken: string; bobToken: string } {
  const aliceToken = newToken();
  const bobToken = newToken();
  const policy = emptyPolicy();
  policy.subjects.set('alice', { tokenSha256: hashToken(aliceToken), rights: ['read', 'write'], grants: [{ owner: 'bob', rights: ['read', 'mount'] }] });
  policy.subjects.set('bob', { tokenSha256: hashToken(bobToken), rights: ['read', 'write', 'mount', 'admin'], grants: [] });
  return { policy, aliceToken, bobToken };
}

test('tokens are 32 random bytes in base64url; authenticate finds the subject of the right token only', () => {
  const { policy, aliceToken, bobToken } = samplePolicy();
  assert.match(aliceToken, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(Buffer.from(aliceToken, 'base64url').length, 32);
  assert.notEqual(aliceToken, bobToken);
  assert.equal(hashToken(aliceToken), sha(aliceToken));
  assert.equal(authenticate(policy, aliceToken), 'alice');
  assert.equal(authenticate(policy, bobToken), 'bob');
  assert.equal(authenticate(policy, newToken()), undefined);
  assert.equal(authenticate(policy, ''), undefined);
  assert.equal(authenticate(policy, hashToken(aliceToken)), undefined, 'the stored hash is not a token');
  assert.equal(authenticate(emptyPolicy(), aliceToken), undefined);
});

test('allows: deny by default, own rights on own data, grants for other owners', () => {
  const { policy } = samplePolicy();
  assert.equal(allows(policy, 'alice', 'read'), true);
  assert.equal(allows(policy, 'alice', 'write', 'alice'), true);
  assert.equal(allows(policy, 'alice', 'snapshot'), false, 'a right the subject lacks');
  assert.equal(allows(policy, 'alice', 'admin'), false);
  assert.equal(allows(policy, 'nobody', 'read'), false, 'an unknown caller');
  // Through alice's grant on bob: read yes; write not granted; mount granted but alice lacks it.
  assert.equal(allows(policy, 'alice', 'read', 'bob'), true);
  assert.equal(allows(policy, 'alice', 'write', 'bob'), false);
  assert.equal(allows(policy, 'alice', 'mount', 'bob'), false);
  assert.equal(allows(policy, 'alice', 'read', 'carol'), false, 'no grant for carol');
  // bob has no grants: even admin does not reach alice's data.
  assert.equal(allows(policy, 'bob', 'admin'), true);
  assert.equal(allows(policy, 'bob', 'read', 'alice'), false);
});

/* ------------------------------------------------------------------ the CLI, as a user runs it */

const compiled = fileURLToPath(import.meta.url).includes(`${sep}dist${sep}`);
const STATEFS = fileURLToPath(new URL(compiled ? '../src/cli/statefs.js' : '../dist/src/cli/statefs.js', import.meta.url));

interface Run {
  status: number | null;
  out: string;
  err: string;
}

function statefs(dir: string, args: readonly string[]): Run {
  const r = spawnSync(process.execPath, [STATEFS, ...args], { cwd: dir, timeout: 60_000 });
  if (r.error !== undefined) throw r.error;
  return { status: r.status, out: r.stdout.toString('utf8'), err: r.stderr.toString('utf8') };
}

function ok(dir: string, args: readonly string[]): Run {
  const r = statefs(dir, args);
  assert.equal(r.status, 0, `statefs ${args.join(' ')} failed: ${r.err}`);
  return r;
}

function fails(r: Run, status: number, pattern: RegExp): void {
  assert.equal(r.status, status, `expected exit ${String(status)}, got ${String(r.status)}: ${r.err}`);
  assert.match(r.err, pattern);
}

test('statefs policy: add-subject, grant, quota, show, rm and their failures', async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, 'policy.json');
    const added = ok(dir, ['policy', 'add-subject', 'policy.json', 'alice']);
    const lines = added.out.trimEnd().split('\n');
    const token = lines.at(-1) ?? '';
    assert.match(token, /^[A-Za-z0-9_-]{43}$/, added.out);
    assert.ok(added.out.endsWith(`\n${token}\n`), 'the token is alone on the last line');
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const text = await readFile(file, 'utf8');
    assert.ok(!text.includes(token), 'the clear token must not be stored');
    assert.ok(text.includes(hashToken(token)));

    const bob = JSON.parse(ok(dir, ['policy', 'add-subject', 'policy.json', 'bob', '--rights', 'read,mount', '--json']).out) as unknown;
    assert.ok(typeof bob === 'object' && bob !== null && 'token' in bob && typeof bob.token === 'string');
    const bobToken = bob.token;

    fails(statefs(dir, ['policy', 'add-subject', 'policy.json', 'alice']), 1, /^statefs: EEXIST: /);
    ok(dir, ['policy', 'grant', 'policy.json', 'alice', 'bob']);
    ok(dir, ['policy', 'quota', 'policy.json', 'alice', '--soft', '1MiB', '--hard', '2M']);

    const policy = await loadPolicy(file);
    assert.equal(authenticate(policy, token), 'alice');
    assert.equal(authenticate(policy, bobToken), 'bob');
    assert.deepEqual(policy.subjects.get('alice'), {
      tokenSha256: hashToken(token),
      rights: ['read', 'write'],
      grants: [{ owner: 'bob', rights: ['read', 'mount'] }],
      quota: { soft: 1024 * 1024, hard: 2 * 1024 * 1024 },
    });
    assert.equal(allows(policy, 'alice', 'read', 'bob'), true);

    const shown = ok(dir, ['policy', 'show', 'policy.json']).out;
    assert.match(shown, new RegExp(`^alice: rights read,write; token sha256 ${hashToken(token).slice(0, 8)}\\.\\.\\.; quota soft 1 MiB, hard 2 MiB$`, 'm'));
    assert.match(shown, /^ {2}grant on bob: read,mount$/m);
    for (const t of [token, bobToken]) {
      assert.ok(!shown.includes(hashToken(t)) && !shown.includes(t), 'show never prints a full hash or a token');
    }

    ok(dir, ['policy', 'rm', 'policy.json', 'bob']);
    const json = JSON.parse(ok(dir, ['policy', 'show', 'policy.json', '--json']).out) as unknown;
    assert.deepEqual(json, {
      version: 1,
      subjects: [
        {
          subject: 'alice',
          tokenSha256Prefix: hashToken(token).slice(0, 8),
          rights: ['read', 'write'],
          grants: [{ owner: 'bob', rights: ['read', 'mount'] }],
          quota: { soft: 1024 * 1024, hard: 2 * 1024 * 1024 },
        },
      ],
    });

    fails(statefs(dir, ['policy', 'rm', 'policy.json', 'bob']), 1, /^statefs: ENOENT: /);
    fails(statefs(dir, ['policy', 'show', 'missing.json']), 1, /^statefs: ENOENT: /);
    fails(statefs(dir, ['policy', 'quota', 'policy.json', 'alice', '--soft', '3M', '--hard', '2M']), 1, /^statefs: EINVAL: .*soft/);
    await writeFile(file, JSON.stringify({ version: 2, subjects: {} }));
    fails(statefs(dir, ['policy', 'show', 'policy.json', '--json']), 1, /^statefs: EINVAL: .*\$\.version/);
    fails(statefs(dir, ['policy', 'add-subject', 'new.json', 'carol', '--rights', 'read,fly']), 64, /argument 'read,fly' is invalid/);
    assert.equal(existsSync(join(dir, 'new.json')), false, 'a usage error creates nothing');
  });
});
