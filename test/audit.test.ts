import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isStatefsError } from '../src/errors.js';
import { AuditLog } from '../src/server/audit/audit-log.js';
import { verifyAuditLog } from '../src/server/audit/verify.js';
import { withTempDir } from './helpers.js';
import { guardResources } from './hygiene.js';

guardResources();

const STATEFS = fileURLToPath(new URL('../src/cli/statefs.js', import.meta.url));

/** A log of `n` lines, half of them appended concurrently, written through two opens. */
async function writeLog(path: string, n: number): Promise<{ seq: number; hash: string }> {
  const first = await AuditLog.open(path);
  await first.append({ subject: 'admin', op: 'policy-reload', result: 'OK' });
  await Promise.all(
    Array.from({ length: n / 2 - 1 }, (_, i) =>
      first.append({ subject: `s${i % 3}`, op: 'get', target: `k/${i}`, result: 'EPERM', detail: { reason: 'no read right', n: i } }),
    ),
  );
  await first.close();
  const second = await AuditLog.open(path);
  assert.equal(second.head().seq, n / 2);
  await Promise.all(Array.from({ length: n / 2 }, (_, i) => second.append({ subject: 'gc', op: 'gc', result: 'OK', detail: `cycle ${i}` })));
  const head = second.head();
  await second.close();
  return head;
}

async function lines(path: string): Promise<string[]> {
  return (await readFile(path, 'utf8')).split('\n').slice(0, -1);
}

async function rewrite(path: string, edit: (ls: string[]) => string[]): Promise<void> {
  await writeFile(path, edit(await lines(path)).map((l) => `${l}\n`).join(''));
}

async function assertIntegrity(promise: Promise<unknown>, line: number, what: RegExp, label = ''): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isStatefsError(err), `${label}: ${String(err)}`);
    assert.equal(err.code, 'EINTEGRITY');
    assert.match(err.message, new RegExp(` line ${line}: `));
    assert.match(err.message, what);
    return true;
  });
}

test('audit log: appends are chained, durable across reopen, and verify ok', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'audit.log');
    const head = await writeLog(path, 40);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    const ls = await lines(path);
    assert.equal(ls.length, 40);
    const records = ls.map((l): unknown => JSON.parse(l));
    assert.deepEqual(
      records.map((r) => (typeof r === 'object' && r !== null && 'seq' in r ? r.seq : undefined)),
      Array.from({ length: 40 }, (_, i) => i + 1),
    );
    const first = records[0];
    const firstHash = typeof first === 'object' && first !== null && 'hash' in first && typeof first.hash === 'string' ? first.hash : '';
    assert.match(ls[0] ?? '', /^\{"seq":1,"time":"[^"]+","subject":"admin","op":"policy-reload","result":"OK","prev":"0{64}","hash":"[0-9a-f]{64}"\}$/);
    assert.deepEqual(await verifyAuditLog(path, head), { lines: 40, head });
    // A head recorded earlier still verifies after more appends.
    assert.deepEqual((await verifyAuditLog(path, { seq: 1, hash: firstHash })).lines, 40);
  });
});

test('audit log: a torn final fragment is cut off on open; a malformed event is EINVAL', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'audit.log');
    const log = await AuditLog.open(path);
    await log.append({ subject: 'a', op: 'snapshot-create', target: 's1', result: 'OK' });
    await assert.rejects(log.append({ subject: '', op: 'x', result: 'OK' }), /EINVAL/);
    await log.close();
    await assert.rejects(log.append({ subject: 'a', op: 'x', result: 'OK' }), /EBADF/);
    await writeFile(path, '{"seq":2,"ti', { flag: 'a' });
    await assertIntegrity(verifyAuditLog(path), 2, /incomplete/);
    const again = await AuditLog.open(path);
    await again.append({ subject: 'a', op: 'umount', target: 's1', result: 'ENOENT' });
    await again.close();
    assert.equal((await verifyAuditLog(path)).lines, 2);
  });
});

test('audit log: every kind of tampering is EINTEGRITY at the right line', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'audit.log');
    const head = await writeLog(path, 10);
    const original = await readFile(path);
    const cases: [string, (ls: string[]) => string[], number, RegExp][] = [
      ['edit a middle line', (ls) => ls.map((l, i) => (i === 4 ? l.replace('"EPERM"', '"OK"') : l)), 5, /hash mismatch/],
      ['edit the last line', (ls) => ls.map((l, i) => (i === 9 ? l.replace('cycle', 'cycIe') : l)), 10, /hash mismatch/],
      ['delete a middle line', (ls) => ls.filter((_, i) => i !== 3), 4, /seq 5 where 4/],
      ['swap two lines', (ls) => [...ls.slice(0, 6), ls[7] ?? '', ls[6] ?? '', ...ls.slice(8)], 7, /seq 8 where 7/],
      ['not JSON', (ls) => ls.map((l, i) => (i === 2 ? l.slice(1) : l)), 3, /not valid JSON/],
      ['a space added', (ls) => ls.map((l, i) => (i === 1 ? l.replace(',"time"', ', "time"') : l)), 2, /canonical/],
    ];
    for (const [name, edit, line, what] of cases) {
      await writeFile(path, original);
      await rewrite(path, edit);
      await assertIntegrity(verifyAuditLog(path), line, what, name);
      await assertIntegrity(AuditLog.open(path), line, what, name);
    }
    // Removing the last line keeps a valid chain: only the known head shows it.
    await writeFile(path, original);
    await rewrite(path, (ls) => ls.slice(0, -1));
    assert.equal((await verifyAuditLog(path)).lines, 9);
    await assertIntegrity(verifyAuditLog(path, head), 10, /missing/);
    await assertIntegrity(verifyAuditLog(path, { seq: 9, hash: head.hash }), 9, /head mismatch/);
  });
});

test('statefs audit verify: ok, tampered and usage error', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'audit.log');
    const head = await writeLog(path, 6);
    const run = (...args: string[]) => spawnSync(process.execPath, [STATEFS, 'audit', 'verify', path, ...args], { encoding: 'utf8' });
    const good = run('--expect-head', `${head.seq}:${head.hash}`);
    assert.equal(good.status, 0, good.stderr);
    assert.equal(good.stdout, `ok 6 lines, head ${head.seq}:${head.hash}\n`);
    const json = run('--json');
    assert.deepEqual(JSON.parse(json.stdout), { ok: true, lines: 6, head });
    assert.equal(run('--expect-head', 'nonsense').status, 64);
    await rewrite(path, (ls) => ls.map((l, i) => (i === 2 ? l.replace('"get"', '"put"') : l)));
    const bad = run();
    assert.equal(bad.status, 1);
    assert.ok(bad.stderr.startsWith('statefs: EINTEGRITY: '), bad.stderr);
    assert.match(bad.stderr, / line 3: hash mismatch/);
  });
});
