import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { startDaemon } from '../src/server/daemon/daemon.js';
import { savePolicy } from '../src/server/policy/policy-file.js';
import { emptyPolicy, hashToken, newToken } from '../src/server/policy/policy.js';
import { MiB, withTempDir } from './helpers.js';
import { guardResources } from './hygiene.js';
import { runStatefs, type CliRun } from './daemon-process.js';

guardResources();

/*
 * The built CLI with --connect against a daemon running in this process. The spawn is async: a
 * synchronous one would block the event loop the daemon answers on.
 */

/** `statefs <args>` with STATEFS_TOKEN from `extraEnv` only. */
function statefs(args: readonly string[], extraEnv: Record<string, string> = {}): Promise<CliRun> {
  return runStatefs(args, [], extraEnv);
}

async function ok(args: readonly string[], extraEnv: Record<string, string> = {}): Promise<CliRun> {
  const r = await statefs(args, extraEnv);
  assert.equal(r.status, 0, `statefs ${args.join(' ')} failed: ${r.stderr}`);
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
      assert.equal((await ok(['get', ...alice, 'alice', '/state/a'])).stdout, 'one');
      assert.equal((await ok(['get', '--connect', socket, 'alice', '/state/b'], { STATEFS_TOKEN: aliceToken })).stdout, 'two');
      assert.equal((await ok(['ls', ...alice, 'alice'])).stdout, '/state/a\n/state/b\n');

      // snapshot prints the store's marker line itself; snaps and diff see it.
      const snap = await ok(['snapshot', ...alice, 'alice', 's1']);
      assert.equal(snap.stdout, 'statefs: snapshot subject=alice name=s1\n');
      assert.ok(daemonMarkers.includes('statefs: snapshot subject=alice name=s1'), daemonMarkers.join('\n'));
      await ok(['del', ...alice, 'alice', '/state/a']);
      assert.equal((await ok(['snaps', ...alice, 'alice'])).stdout, 's1\n');
      assert.equal((await ok(['diff', ...alice, 'alice', 's1', '@live'])).stdout, '- /state/a\n');

      // Errors: the same code and message as the embedded store's, exit 1.
      const [missing, missingLocal, denied] = await Promise.all([
        statefs(['get', ...alice, 'alice', '/state/a']),
        statefs(['get', '--image', image, 'alice', '/state/a']),
        statefs(['put', '--connect', socket, '--token', bobToken, 'bob', '/state/x', 'y']),
      ]);
      assert.equal(missing.status, 1, missing.stderr);
      assert.ok(missing.stderr.startsWith('statefs: ENOENT: '), missing.stderr);
      assert.equal(missing.stderr, missingLocal.stderr);
      assert.equal(missingLocal.status, 1);
      assert.equal(denied.status, 1, denied.stderr);
      assert.ok(denied.stderr.startsWith('statefs: EPERM: '), denied.stderr);

      // Usage: both targets, neither, or --connect without a token.
      const usage = await Promise.all([
        statefs(['get', '--image', image, ...alice, 'alice', '/state/b']),
        statefs(['get', 'alice', '/state/b']),
        statefs(['get', '--connect', socket, 'alice', '/state/b']),
      ]);
      for (const r of usage) {
        assert.equal(r.status, 64, r.stderr);
        assert.equal(r.stdout, '');
      }
    } finally {
      await daemon.close();
    }
  });
});
