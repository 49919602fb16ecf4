import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { withTempDir } from './helpers.js';

/*
 * These tests run the built CLI as a user would. Compiled, this file is dist/test/cli.test.js
 * and the CLI sits beside it in dist/src; run from source (tsx), it looks in dist/ for the build.
 */
const compiled = fileURLToPath(import.meta.url).includes(`${sep}dist${sep}`);
const cliUrl = (name: string) => new URL(compiled ? `../src/cli/${name}.js` : `../dist/src/cli/${name}.js`, import.meta.url);
const STATEFS = fileURLToPath(cliUrl('statefs'));
const STATEFSD = fileURLToPath(cliUrl('statefsd'));

interface Run {
  status: number | null;
  stdout: Buffer;
  out: string;
  err: string;
}

function runScript(script: string, args: readonly string[], cwd: string, input?: Uint8Array): Run {
  const r = spawnSync(process.execPath, [script, ...args], { cwd, ...(input === undefined ? {} : { input }), timeout: 30_000 });
  if (r.error !== undefined) throw r.error;
  return { status: r.status, stdout: r.stdout, out: r.stdout.toString('utf8'), err: r.stderr.toString('utf8') };
}

const statefs = (dir: string, args: readonly string[], input?: Uint8Array): Run => runScript(STATEFS, args, dir, input);

/** Run a command that must succeed; its output on failure makes the assertion message useful. */
function ok(dir: string, args: readonly string[], input?: Uint8Array): Run {
  const r = statefs(dir, args, input);
  assert.equal(r.status, 0, `statefs ${args.join(' ')} failed: ${r.err}`);
  return r;
}

function parseJson(text: string): unknown {
  const lines = text.trim().split('\n');
  assert.equal(lines.length, 1, `expected one JSON line, got: ${text}`);
  return JSON.parse(lines[0] ?? '');
}

async function withDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  await withTempDir(async (dir) => {
    await fn(dir);
  });
}

/** A temp dir with a small formatted image `s.img` in it. */
async function withImage(fn: (dir: string, image: string) => Promise<void> | void): Promise<void> {
  await withDir(async (dir) => {
    ok(dir, ['mkfs', 's.img', '--size', '8MiB']);
    await fn(dir, 's.img');
  });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The parsed `stat --json` object: its capacity and its subjects' entries. */
function statJson(text: string): { capacity: unknown; segmentSize: unknown; subjects: Record<string, unknown>[] } {
  const stat = parseJson(text);
  assert.ok(isRecord(stat), text);
  const subjects: unknown = stat.subjects;
  assert.ok(Array.isArray(subjects), text);
  const entries = subjects.map((s: unknown) => {
    assert.ok(isRecord(s), text);
    return s;
  });
  return { capacity: stat.capacity, segmentSize: stat.segmentSize, subjects: entries };
}

function assertFails(r: Run, code: string): void {
  assert.equal(r.status, 1, `expected exit 1, got ${String(r.status)}: ${r.err}`);
  assert.ok(r.err.startsWith(`statefs: ${code}: `), `stderr: ${r.err}`);
  assert.ok(!r.err.includes(`${code}: ${code}`), `code printed twice: ${r.err}`);
}

function assertUsage(r: Run, what: RegExp): void {
  assert.equal(r.status, 64, `expected exit 64, got ${String(r.status)}: ${r.err}`);
  assert.match(r.err, what);
  assert.match(r.err, /Usage: statefs/);
  assert.equal(r.out, '');
}

test('mkfs creates an image, refuses to overwrite it, and replaces it with --force', async () => {
  await withDir((dir) => {
    const made = ok(dir, ['mkfs', 'a.img', '--size', '8MiB']);
    assert.match(made.out, /^a\.img: 8 MiB, 31 segments of 256 KiB\n$/);
    ok(dir, ['put', '--image', 'a.img', 'app', '/state/x', 'old']);

    const again = statefs(dir, ['mkfs', 'a.img', '--size', '8MiB']);
    assertFails(again, 'EEXIST');
    assert.equal(ok(dir, ['get', '--image', 'a.img', 'app', '/state/x']).out, 'old', 'a refused mkfs must not touch the image');

    const forced = ok(dir, ['mkfs', 'a.img', '--size', '8M', '--segment-size', '1MiB', '--force', '--json']);
    assert.deepEqual(parseJson(forced.out), { ok: true });
    assertFails(statefs(dir, ['get', '--image', 'a.img', 'app', '/state/x']), 'ENOENT');
    const stat = statJson(ok(dir, ['stat', '--image', 'a.img', '--json']).out);
    assert.equal(stat.capacity, 8 * 1024 * 1024);
    assert.equal(stat.segmentSize, 1024 * 1024);
    assert.deepEqual(stat.subjects, []);
  });
});

test('mkfs that fails to format leaves no file behind', async () => {
  await withDir((dir) => {
    assertFails(statefs(dir, ['mkfs', 'tiny.img', '--size', '64K']), 'EINVAL');
    assert.equal(existsSync(join(dir, 'tiny.img')), false);
    ok(dir, ['mkfs', 'tiny.img', '--size', '8MiB']);
  });
});

test('put and get round-trip text, and get --json gives base64', async () => {
  await withImage((dir, image) => {
    ok(dir, ['put', '--image', image, 'app', '/state/greeting', 'héllo wörld']);
    assert.equal(ok(dir, ['get', '--image', image, 'app', '/state/greeting']).out, 'héllo wörld');
    const json = parseJson(ok(dir, ['get', '--image', image, 'app', '/state/greeting', '--json']).out);
    assert.deepEqual(json, { key: '/state/greeting', valueBase64: Buffer.from('héllo wörld').toString('base64') });
    assert.deepEqual(parseJson(ok(dir, ['put', '--image', image, 'app', '/state/empty', '', '--json']).out), { ok: true });
    assert.equal(ok(dir, ['get', '--image', image, 'app', '/state/empty']).stdout.length, 0);
  });
});

test('put --file and --file - store binary values byte for byte', async () => {
  await withImage(async (dir, image) => {
    const fromFile = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7919) % 256));
    await writeFile(join(dir, 'value.bin'), fromFile);
    ok(dir, ['put', '--image', image, 'app', '/state/file', '--file', 'value.bin']);
    assert.deepEqual(ok(dir, ['get', '--image', image, 'app', '/state/file']).stdout, fromFile);

    const fromStdin = Buffer.from([0, 255, 10, 13, 0, 1, 0x80, 0xfe]);
    ok(dir, ['put', '--image', image, 'app', '/state/stdin', '--file', '-'], fromStdin);
    assert.deepEqual(ok(dir, ['get', '--image', image, 'app', '/state/stdin']).stdout, fromStdin);

    assertFails(statefs(dir, ['put', '--image', image, 'app', '/state/x', '--file', 'missing.bin']), 'ENOENT');
  });
});

test('del removes a key; deleting or getting a missing key is ENOENT', async () => {
  await withImage((dir, image) => {
    ok(dir, ['put', '--image', image, 'app', '/state/a', '1']);
    assert.deepEqual(parseJson(ok(dir, ['del', '--image', image, 'app', '/state/a', '--json']).out), { ok: true });

    const get = statefs(dir, ['get', '--image', image, 'app', '/state/a']);
    assertFails(get, 'ENOENT');
    assert.equal(get.err, 'statefs: ENOENT: key /state/a does not exist\n');
    assert.equal(get.out, '');
    assertFails(statefs(dir, ['del', '--image', image, 'app', '/state/a']), 'ENOENT');
  });
});

test('ls lists keys one per line and pages with --limit and --after', async () => {
  await withImage((dir, image) => {
    for (const k of ['c', 'a', 'b/x', 'b/y', 'd']) ok(dir, ['put', '--image', image, 'app', `/state/${k}`, k]);
    ok(dir, ['put', '--image', image, 'other', '/state/zz', 'not app']);

    assert.equal(ok(dir, ['ls', '--image', image, 'app']).out, '/state/a\n/state/b/x\n/state/b/y\n/state/c\n/state/d\n');
    assert.equal(ok(dir, ['ls', '--image', image, 'app', '/state/b/']).out, '/state/b/x\n/state/b/y\n');
    assert.equal(ok(dir, ['ls', '--image', image, 'nobody']).out, '');

    // A page with more to come prints only its keys; the cursor is in the JSON form.
    assert.equal(ok(dir, ['ls', '--image', image, 'app', '--limit', '2']).out, '/state/a\n/state/b/x\n');
    assert.deepEqual(parseJson(ok(dir, ['ls', '--image', image, 'app', '--limit', '2', '--json']).out), {
      keys: ['/state/a', '/state/b/x'],
      next: '/state/b/x',
    });
    assert.deepEqual(parseJson(ok(dir, ['ls', '--image', image, 'app', '--limit', '2', '--after', '/state/b/x', '--json']).out), {
      keys: ['/state/b/y', '/state/c'],
      next: '/state/c',
    });
    assert.deepEqual(parseJson(ok(dir, ['ls', '--image', image, 'app', '--limit', '2', '--after', '/state/c', '--json']).out), {
      keys: ['/state/d'],
    });
  });
});

test('stat reports the image, and one subject when asked', async () => {
  await withImage((dir, image) => {
    ok(dir, ['put', '--image', image, 'app', '/state/a', 'one']);
    ok(dir, ['put', '--image', image, 'app', '/state/b', 'two']);
    ok(dir, ['put', '--image', image, 'cfg', '/state/c', 'three']);

    const human = ok(dir, ['stat', '--image', image]).out;
    assert.match(human, /^capacity: 8 MiB$/m);
    assert.match(human, /^segments: 31 of 256 KiB \(\d+ used, \d+ free\)$/m);
    assert.match(human, /^subjects: 2$/m);
    assert.match(human, /^ {2}app: 2 keys, \d+ B live$/m);
    assert.match(human, /^ {2}cfg: 1 key, \d+ B live$/m);

    assert.match(ok(dir, ['stat', '--image', image, 'cfg']).out, /^cfg: 1 key, \d+ B live\n$/);
    assert.equal(ok(dir, ['stat', '--image', image, 'nobody']).out, 'nobody: 0 keys, 0 B live\n');

    const full = statJson(ok(dir, ['stat', '--image', image, '--json']).out);
    assert.equal(full.capacity, 8 * 1024 * 1024);
    assert.deepEqual(
      full.subjects.map((s) => [s.subject, s.keys]),
      [
        ['app', 2],
        ['cfg', 1],
      ],
    );
    const app = full.subjects[0];
    assert.ok(app !== undefined && typeof app.liveBytes === 'number' && app.liveBytes > 0);

    // With a subject, the same StoreStat shape with only that subject's entry.
    const one = statJson(ok(dir, ['stat', '--image', image, 'app', '--json']).out);
    assert.equal(one.capacity, full.capacity);
    assert.deepEqual(one.subjects, [app]);

    assertFails(statefs(dir, ['stat', '--image', image, 'Bad Subject']), 'EINVAL');
  });
});

test('store errors exit 1 with "statefs: CODE:" once on stderr, and an error object with --json', async () => {
  await withImage((dir, image) => {
    const badKey = statefs(dir, ['put', '--image', image, 'app', 'no-slash', 'v']);
    assertFails(badKey, 'EINVAL');
    assert.match(badKey.err, /^statefs: EINVAL: invalid: key "no-slash" must be a path under \/state\/\n$/);

    const json = statefs(dir, ['get', '--image', image, 'app', '/state/none', '--json']);
    assertFails(json, 'ENOENT');
    assert.deepEqual(parseJson(json.out), { error: { code: 'ENOENT', message: 'key /state/none does not exist' } });

    assertFails(statefs(dir, ['ls', '--image', 'missing.img', 'app']), 'ENOENT');
    assertFails(statefs(dir, ['ls', '--image', image, 'app', '--limit', '10001']), 'EINVAL');
  });
});

test('tree rules surface as ENOTDIR and EISDIR', async () => {
  await withImage((dir, image) => {
    ok(dir, ['put', '--image', image, 'app', '/state/leaf', 'v']);
    const under = statefs(dir, ['put', '--image', image, 'app', '/state/leaf/child', 'v', '--json']);
    assertFails(under, 'ENOTDIR');
    assert.deepEqual(parseJson(under.out), { error: { code: 'ENOTDIR', message: '/state/leaf holds a value, so /state/leaf/child cannot be under it' } });

    ok(dir, ['put', '--image', image, 'app', '/state/dir/child', 'v']);
    assertFails(statefs(dir, ['put', '--image', image, 'app', '/state/dir', 'v']), 'EISDIR');
    assertFails(statefs(dir, ['del', '--image', image, 'app', '/state/dir']), 'EISDIR');
    assert.equal(ok(dir, ['get', '--image', image, 'app', '/state/dir/child']).out, 'v');
  });
});

test('reads open the image read-only, so they work while a writer holds the lock', async () => {
  await withImage(async (dir, image) => {
    ok(dir, ['put', '--image', image, 'app', '/state/a', 'v']);
    // The lock names this (live) test process as the owner.
    await writeFile(join(dir, `${image}.lock`), `${process.pid}\n`);
    assert.equal(ok(dir, ['get', '--image', image, 'app', '/state/a']).out, 'v');
    assert.equal(ok(dir, ['ls', '--image', image, 'app']).out, '/state/a\n');
    assert.match(ok(dir, ['stat', '--image', image, 'app']).out, /^app: 1 key/);
    assertFails(statefs(dir, ['put', '--image', image, 'app', '/state/b', 'v']), 'EBUSY');
    assertFails(statefs(dir, ['del', '--image', image, 'app', '/state/a']), 'EBUSY');
  });
});

test('usage errors exit 64 with a usage message', async () => {
  await withImage((dir, image) => {
    assertUsage(statefs(dir, ['frobnicate']), /^statefs: unknown command 'frobnicate'/);
    assertUsage(statefs(dir, []), /Commands:/);
    assertUsage(statefs(dir, ['get', '--image', image, 'app']), /^statefs: missing required argument 'key'/);
    assertUsage(statefs(dir, ['get', 'app', '/state/a']), /^statefs: required option '--image <path>' not specified/);
    assertUsage(statefs(dir, ['get', '--image', image, 'app', '/state/a', '--bogus']), /^statefs: unknown option '--bogus'/);
    assertUsage(statefs(dir, ['ls', '--image', image, 'app', '--limit', 'ten']), /^statefs: option '--limit <n>' argument 'ten' is invalid/);
    assertUsage(statefs(dir, ['ls', '--image', image, 'app', '--limit', '0']), /--limit/);
    assertUsage(statefs(dir, ['mkfs', 'x.img', '--size', '8XB']), /^statefs: option '--size <size>' argument '8XB' is invalid/);
    assertUsage(statefs(dir, ['mkfs', 'x.img', '--size', '1.5G']), /--size/);
    assertUsage(statefs(dir, ['put', '--image', image, 'app', '/state/a']), /either as an argument or with --file/);
    assertUsage(statefs(dir, ['put', '--image', image, 'app', '/state/a', 'v', '--file', '-']), /either as an argument or with --file/);
    assertUsage(statefs(dir, ['put', '--image', image, 'app', '/state/a', 'v', 'extra']), /too many arguments/);
    assert.equal(existsSync(join(dir, 'x.img')), false, 'a usage error must not create anything');
    assertFails(statefs(dir, ['get', '--image', image, 'app', '/state/a']), 'ENOENT');
  });
});

test('--help exits 0 and lists the commands', async () => {
  await withDir((dir) => {
    const help = ok(dir, ['--help']);
    for (const name of ['mkfs', 'put', 'get', 'del', 'ls', 'stat']) assert.match(help.out, new RegExp(`^ {2}${name} `, 'm'));
  });
});

test('statefsd says the daemon is not built yet and exits 69', async () => {
  await withDir((dir) => {
    const r = runScript(STATEFSD, [], dir);
    assert.equal(r.status, 69);
    assert.equal(r.err, 'statefsd: the daemon is not built yet (issue 7); use the library or the statefs CLI\n');
    assert.equal(r.out, '');
  });
});

/** Write `ops` as a JSON ops file for `statefs txn` and return its name. */
async function writeOps(dir: string, name: string, ops: unknown): Promise<string> {
  await writeFile(join(dir, name), JSON.stringify(ops));
  return name;
}

test('txn commits puts and deletes as one transaction', async () => {
  await withImage(async (dir, image) => {
    ok(dir, ['put', '--image', image, 'app', '/state/old', 'kept']);
    ok(dir, ['put', '--image', image, 'app', '/state/gone', 'bye']);
    const file = await writeOps(dir, 'ops.json', [
      { op: 'put', key: '/state/a', value: 'one' },
      { op: 'put', key: '/state/b/c', value: 'two', subject: 'app' },
      { op: 'del', key: '/state/gone' },
      { op: 'put', key: '/state/a', value: 'uno' },
    ]);
    const r = ok(dir, ['txn', '--image', image, 'app', file]);
    assert.equal(r.out, 'committed 4 ops\n');
    assert.equal(r.err, '');

    assert.equal(ok(dir, ['get', '--image', image, 'app', '/state/a']).out, 'uno');
    assert.equal(ok(dir, ['get', '--image', image, 'app', '/state/b/c']).out, 'two');
    assertFails(statefs(dir, ['get', '--image', image, 'app', '/state/gone']), 'ENOENT');
    assert.equal(ok(dir, ['ls', '--image', image, 'app']).out, '/state/a\n/state/b/c\n/state/old\n');

    // A delete of a key written earlier in the same file, and --json output.
    const second = await writeOps(dir, 'ops2.json', [
      { op: 'put', key: '/state/tmp', value: 'x' },
      { op: 'del', key: '/state/tmp' },
      { op: 'del', key: '/state/b/c' },
    ]);
    assert.deepEqual(parseJson(ok(dir, ['txn', '--image', image, 'app', second, '--json']).out), { ok: true, ops: 3 });
    assert.equal(ok(dir, ['ls', '--image', image, 'app']).out, '/state/a\n/state/old\n');

    const empty = await writeOps(dir, 'empty.json', []);
    assert.equal(ok(dir, ['txn', '--image', image, 'app', empty]).out, 'committed 0 ops\n');
    assert.equal(ok(dir, ['ls', '--image', image, 'app']).out, '/state/a\n/state/old\n');

    assert.match(ok(dir, ['--help']).out, /^ {2}txn /m);
    assertUsage(statefs(dir, ['txn', '--image', image, 'app']), /^statefs: missing required argument 'ops'/);
  });
});

test('txn stores valueBase64 values byte for byte', async () => {
  await withImage(async (dir, image) => {
    const binary = Buffer.from(Array.from({ length: 256 }, (_, i) => 255 - i));
    const file = await writeOps(dir, 'bin.json', [
      { op: 'put', key: '/state/bin', valueBase64: binary.toString('base64') },
      { op: 'put', key: '/state/empty', valueBase64: '' },
      { op: 'put', key: '/state/text', value: 'héllo' },
    ]);
    assert.deepEqual(parseJson(ok(dir, ['txn', '--image', image, 'app', file, '--json']).out), { ok: true, ops: 3 });
    assert.deepEqual(ok(dir, ['get', '--image', image, 'app', '/state/bin']).stdout, binary);
    assert.equal(ok(dir, ['get', '--image', image, 'app', '/state/empty']).stdout.length, 0);
    assert.equal(ok(dir, ['get', '--image', image, 'app', '/state/text']).out, 'héllo');
    // What get --json prints is what a txn file takes.
    assert.deepEqual(parseJson(ok(dir, ['get', '--image', image, 'app', '/state/bin', '--json']).out), {
      key: '/state/bin',
      valueBase64: binary.toString('base64'),
    });
  });
});

test('txn is all or nothing: a failing op leaves none of the ops applied', async () => {
  await withImage(async (dir, image) => {
    ok(dir, ['put', '--image', image, 'app', '/state/keep', 'v']);
    const file = await writeOps(dir, 'ops.json', [
      { op: 'put', key: '/state/x', value: '1' },
      { op: 'put', key: '/state/a', value: '2' },
      { op: 'put', key: '/state/a/b', value: '3' },
      { op: 'del', key: '/state/keep' },
    ]);
    const r = statefs(dir, ['txn', '--image', image, 'app', file, '--json']);
    assertFails(r, 'ENOTDIR');
    assert.equal(r.err, 'statefs: ENOTDIR: /state/a holds a value, so /state/a/b cannot be under it\n');
    assert.deepEqual(parseJson(r.out), { error: { code: 'ENOTDIR', message: '/state/a holds a value, so /state/a/b cannot be under it' } });

    assert.equal(ok(dir, ['ls', '--image', image, 'app']).out, '/state/keep\n');
    assert.equal(ok(dir, ['get', '--image', image, 'app', '/state/keep']).out, 'v');
    // The failed run closed the image and released its lock.
    ok(dir, ['put', '--image', image, 'app', '/state/after', 'w']);
    assert.equal(ok(dir, ['ls', '--image', image, 'app']).out, '/state/after\n/state/keep\n');

    // A key error in the last op also undoes the earlier ones.
    const badKey = await writeOps(dir, 'bad-key.json', [
      { op: 'del', key: '/state/after' },
      { op: 'put', key: 'no-slash', value: 'v' },
    ]);
    assertFails(statefs(dir, ['txn', '--image', image, 'app', badKey]), 'EINVAL');
    assert.equal(ok(dir, ['ls', '--image', image, 'app']).out, '/state/after\n/state/keep\n');
  });
});

test('txn writing more than 32 keys is EFBIG and writes nothing', async () => {
  await withImage(async (dir, image) => {
    const puts = (n: number) => Array.from({ length: n }, (_, i) => ({ op: 'put', key: `/state/k${String(i).padStart(2, '0')}`, value: String(i) }));
    const tooMany = await writeOps(dir, 'many.json', puts(33));
    assertFails(statefs(dir, ['txn', '--image', image, 'app', tooMany]), 'EFBIG');
    assert.equal(ok(dir, ['ls', '--image', image, 'app']).out, '');

    const limit = await writeOps(dir, 'limit.json', puts(32));
    assert.equal(ok(dir, ['txn', '--image', image, 'app', limit]).out, 'committed 32 ops\n');
    assert.equal(ok(dir, ['ls', '--image', image, 'app']).out.split('\n').filter((l) => l !== '').length, 32);
    assert.equal(ok(dir, ['get', '--image', image, 'app', '/state/k31']).out, '31');
  });
});

test('txn op naming another subject is EXDEV and writes nothing', async () => {
  await withImage(async (dir, image) => {
    const file = await writeOps(dir, 'ops.json', [
      { op: 'put', key: '/state/a', value: 'mine' },
      { op: 'put', key: '/state/b', value: 'theirs', subject: 'other' },
    ]);
    const r = statefs(dir, ['txn', '--image', image, 'app', file]);
    assertFails(r, 'EXDEV');
    assert.match(r.err, /app cannot touch other/);
    assert.equal(r.out, '');
    assert.equal(ok(dir, ['ls', '--image', image, 'app']).out, '');
    assert.equal(ok(dir, ['ls', '--image', image, 'other']).out, '');
  });
});

test('txn rejects a malformed ops file with EINVAL before opening the image', async () => {
  await withImage(async (dir, image) => {
    const cases: [string, string | Uint8Array, RegExp][] = [
      ['not JSON', '[{"op":"put",', /: not JSON \(/],
      ['not UTF-8', Buffer.from([0x5b, 0xff, 0xfe, 0x5d]), /: not UTF-8 text$/],
      ['an object', '{"op":"put","key":"/state/a","value":"v"}', /: expected a JSON array of ops$/],
      ['a number op', '[1]', /: ops\[0\]: expected an object$/],
      ['a nested array', '[[]]', /: ops\[0\]: expected an object$/],
      ['an unknown op', '[{"op":"rename","key":"/state/a"}]', /: ops\[0\]: unknown op "rename" \(use "put" or "del"\)$/],
      ['a missing op', '[{"key":"/state/a","value":"v"}]', /: ops\[0\]: missing "op"/],
      ['a missing key', '[{"op":"del","key":"/state/a"},{"op":"del"}]', /: ops\[1\]: missing "key"$/],
      ['a put without a value', '[{"op":"put","key":"/state/a"}]', /: ops\[0\]: a put needs exactly one of "value" and "valueBase64"$/],
      ['a put with both values', '[{"op":"put","key":"/state/a","value":"v","valueBase64":"dg=="}]', /exactly one of "value" and "valueBase64"$/],
      ['a non-string key', '[{"op":"put","key":5,"value":"v"}]', /: ops\[0\]: "key" must be a string, not number$/],
      ['a non-string value', '[{"op":"put","key":"/state/a","value":{"x":1}}]', /: ops\[0\]: "value" must be a string, not object$/],
      ['a null subject', '[{"op":"del","key":"/state/a","subject":null}]', /: ops\[0\]: "subject" must be a string, not null$/],
      ['a non-string op', '[{"op":["put"],"key":"/state/a","value":"v"}]', /: ops\[0\]: unknown op \["put"\]/],
      ['junk base64', '[{"op":"put","key":"/state/a","valueBase64":"not base64!"}]', /: ops\[0\]: "valueBase64" is not valid base64$/],
      ['unpadded base64', '[{"op":"put","key":"/state/a","valueBase64":"dg"}]', /"valueBase64" is not valid base64$/],
      ['a lone surrogate', '[{"op":"put","key":"/state/a","value":"\\ud800"}]', /: ops\[0\]: "value" is not valid Unicode/],
      ['a value on a del', '[{"op":"del","key":"/state/a","value":"v"}]', /: ops\[0\]: unexpected field "value" in a del$/],
      ['a misspelt field', '[{"op":"put","key":"/state/a","vaule":"v"}]', /: ops\[0\]: unexpected field "vaule" in a put$/],
    ];
    for (const [what, content, message] of cases) {
      await writeFile(join(dir, 'bad.json'), content);
      // The image does not exist: only a check made before opening it can give EINVAL.
      const r = statefs(dir, ['txn', '--image', 'missing.img', 'app', 'bad.json']);
      assertFails(r, 'EINVAL');
      assert.ok(r.err.startsWith('statefs: EINVAL: invalid: bad.json: '), `${what}: ${r.err}`);
      assert.match(r.err.trimEnd(), message, what);
      assert.equal(r.err.split('\n').length, 2, `${what}: one line: ${r.err}`);
      assert.equal(r.out, '', what);
    }

    // A bad op late in the file stops the ops before it too.
    await writeFile(join(dir, 'late.json'), '[{"op":"put","key":"/state/a","value":"v"},{"op":"put","key":"/state/b","value":1}]');
    const late = statefs(dir, ['txn', '--image', image, 'app', 'late.json', '--json']);
    assertFails(late, 'EINVAL');
    assert.equal(late.err, 'statefs: EINVAL: invalid: late.json: ops[1]: "value" must be a string, not number\n');
    assert.deepEqual(parseJson(late.out), { error: { code: 'EINVAL', message: 'invalid: late.json: ops[1]: "value" must be a string, not number' } });
    assert.equal(ok(dir, ['ls', '--image', image, 'app']).out, '');

    assertFails(statefs(dir, ['txn', '--image', image, 'app', 'missing.json']), 'ENOENT');
  });
});

test('txn reads the ops from stdin for -', async () => {
  await withImage((dir, image) => {
    const ops = [
      { op: 'put', key: '/state/s', value: 'from stdin' },
      { op: 'put', key: '/state/z', valueBase64: Buffer.from([0, 1, 2]).toString('base64') },
    ];
    const r = ok(dir, ['txn', '--image', image, 'app', '-', '--json'], Buffer.from(JSON.stringify(ops)));
    assert.deepEqual(parseJson(r.out), { ok: true, ops: 2 });
    assert.equal(ok(dir, ['get', '--image', image, 'app', '/state/s']).out, 'from stdin');
    assert.deepEqual(ok(dir, ['get', '--image', image, 'app', '/state/z']).stdout, Buffer.from([0, 1, 2]));

    const bad = statefs(dir, ['txn', '--image', image, 'app', '-'], Buffer.from('[{"op":"del"}]'));
    assertFails(bad, 'EINVAL');
    assert.equal(bad.err, 'statefs: EINVAL: invalid: stdin: ops[0]: missing "key"\n');
    assert.equal(ok(dir, ['ls', '--image', image, 'app']).out, '/state/s\n/state/z\n');
  });
});
