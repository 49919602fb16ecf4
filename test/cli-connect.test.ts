import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startDaemon } from '../src/server/daemon/daemon.js';
import { savePolicy } from '../src/server/policy/policy-file.js';
import { emptyPolicy, hashToken, newToken } from '../src/server/policy/policy.js';
import { MiB, withTempDir } from './helpers.js';
import { guardResources } from './hygiene.js';

guardResources();

/*
 * The built CLI with --connect against a daemon running in this process. The spawn is async: a
 * synchronous one would block the event loop the daemon answers on.
 */
const STATEFS = fileURLToPath(new URL('../src/cli/statefs.js', import.meta.url));

interface Run {
  status: number | null;
  out: string;
  err: string;
}

/** The environment without STATEFS_TOKEN, plus `extra`. */
function envWith(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (name !== 'STATEFS_TOKEN') env[name] = value;
  return { ...env, ...extra };
}

async function statefs(args: readonly string[], extraEnv: Record<string, string> = {}): Promise<Run> {
  const child = spawn(process.execPath, [STATEFS, ...args], { env: envWith(extraEnv), stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
  const status = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  return { status, out: Buffer.concat(out).toString('utf8'), err: Buffer.concat(err).toString('utf8') };
}

async function ok(args: readonly string[], extraEnv: Record<string, string> = {}): Promise<Run> {
  const r = await statefs(args, extraEnv);
  assert.equal(r.status, 0, `statefs ${args.join(' ')} failed: ${r.err}`);
  return r;
}

test('cli --connect: same commands, output and exit codes through the daemon', async () => {
  await withTempDir(async (dir) => {
    const aliceToken = newToken();
    const bobToken = newToken();
    const policy = emptyPolicy();
    policy.subjects.set('alice', { tokenSha256: hashToken(aliceToken), rights: ['read', 'write', 'snapshot', 'mount', 'gc'], grants: [] });
    policy.subjects.set('bob', { tokenSha256: hashToken(bobToken), rights: ['read', 'snapshot'], grants: [] });
    const image = join(dir, 'img');
    const socket = join(dir, 'sock');
    const policyPath = join(dir, 'policy.json');
    await savePolicy(policyPath, policy);
    const daemonMarkers: string[] = [];
    const daemon = await startDaemon({
      imagePath: image,
      socketPath: socket,
      policyPath,
      auditPath: join(dir, 'audit.log'),
      createSize: 8 * MiB,
      onMarker: (line) => daemonMarkers.push(line),
    });
    try {
      const alice = ['--connect', socket, '--token', aliceToken];
      // put / get / ls / del round trip.
      await ok(['put', ...alice, 'alice', '/state/a', 'one']);
      await ok(['put', '--connect', socket, 'alice', '/state/b', 'two'], { STATEFS_TOKEN: aliceToken });
      assert.equal((await ok(['get', ...alice, 'alice', '/state/a'])).out, 'one');
      assert.equal((await ok(['get', '--connect', socket, 'alice', '/state/b'], { STATEFS_TOKEN: aliceToken })).out, 'two');
      assert.equal((await ok(['ls', ...alice, 'alice'])).out, '/state/a\n/state/b\n');

      // snapshot prints the store's marker line itself; snaps and diff see it.
      const snap = await ok(['snapshot', ...alice, 'alice', 's1']);
      assert.equal(snap.out, 'statefs: snapshot subject=alice name=s1\n');
      assert.ok(daemonMarkers.includes('statefs: snapshot subject=alice name=s1'), daemonMarkers.join('\n'));
      await ok(['del', ...alice, 'alice', '/state/a']);
      assert.equal((await ok(['snaps', ...alice, 'alice'])).out, 's1\n');
      assert.equal((await ok(['diff', ...alice, 'alice', 's1', '@live'])).out, '- /state/a\n');

      // Errors: the same code and message as the embedded store's, exit 1.
      const [missing, missingLocal, denied] = await Promise.all([
        statefs(['get', ...alice, 'alice', '/state/a']),
        statefs(['get', '--image', image, 'alice', '/state/a']),
        statefs(['put', '--connect', socket, '--token', bobToken, 'bob', '/state/x', 'y']),
      ]);
      assert.equal(missing.status, 1, missing.err);
      assert.ok(missing.err.startsWith('statefs: ENOENT: '), missing.err);
      assert.equal(missing.err, missingLocal.err);
      assert.equal(missingLocal.status, 1);
      assert.equal(denied.status, 1, denied.err);
      assert.ok(denied.err.startsWith('statefs: EPERM: '), denied.err);

      // Usage: both targets, neither, or --connect without a token.
      const usage = await Promise.all([
        statefs(['get', '--image', image, ...alice, 'alice', '/state/b']),
        statefs(['get', 'alice', '/state/b']),
        statefs(['get', '--connect', socket, 'alice', '/state/b']),
      ]);
      for (const r of usage) {
        assert.equal(r.status, 64, r.err);
        assert.equal(r.out, '');
      }
    } finally {
      await daemon.close();
    }
  });
});
