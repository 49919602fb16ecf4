import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { connect } from '../src/client/client.js';
import { isStatefsError } from '../src/errors.js';
import { startDaemon, type Daemon } from '../src/server/daemon/daemon.js';
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

test('cli --connect host:port reaches the daemon on loopback TCP (and [::1]:port when IPv6 is there); anything else is a socket path', async () => {
  await withTempDir(async (dir) => {
    const token = newToken();
    const policy = emptyPolicy();
    policy.subjects.set('alice', { tokenSha256: hashToken(token), rights: ['read', 'write'], grants: [] });
    const policyPath = join(dir, 'policy.json');
    await savePolicy(policyPath, policy);
    const options = { imagePath: join(dir, 'img'), socketPath: join(dir, 'sock'), policyPath, auditPath: join(dir, 'audit.log'), createSize: 8 * MiB };
    for (const host of ['127.0.0.1', '::1']) {
      let daemon: Daemon;
      try {
        daemon = await startDaemon({ ...options, listen: { host, port: 0 } });
      } catch (err) {
        if (host === '::1') continue; // no IPv6 loopback on this machine
        throw err;
      }
      try {
        const port = daemon.tcpPort;
        assert.ok(port !== undefined);
        const at = host.includes(':') ? `[${host}]:${String(port)}` : `${host}:${String(port)}`;
        const tcp = ['--connect', at, '--token', token];
        await ok(['put', ...tcp, 'alice', `/state/${host === '::1' ? 'v6' : 'v4'}`, 'over tcp']);
        assert.equal((await ok(['get', ...tcp, 'alice', `/state/${host === '::1' ? 'v6' : 'v4'}`])).stdout, 'over tcp');
        assert.equal((await ok(['get', '--connect', options.socketPath, '--token', token, 'alice', `/state/${host === '::1' ? 'v6' : 'v4'}`])).stdout, 'over tcp');
      } finally {
        await daemon.close();
      }
    }
    // Not host:port (no port, a port out of range, a path): a Unix socket path, named as such.
    for (const target of ['nosuch-socket', 'nosuch:99999', join(dir, 'nosuch:80')]) {
      const r = await statefs(['get', '--connect', target, '--token', token, 'alice', '/state/v4']);
      assert.equal(r.status, 1, r.stderr);
      assert.ok(r.stderr.startsWith('statefs: EIO: '), r.stderr);
      assert.ok(r.stderr.includes(target), r.stderr);
      assert.match(r.stderr, /ENOENT/, r.stderr);
    }
  });
});

/** A loopback port nothing listens on (one the system just handed out and took back). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => { resolve(); }));
  assert.ok(typeof address === 'object' && address !== null);
  return address.port;
}

test('cli --connect where no daemon listens: EIO "no daemon listening at <target>", for a missing socket and a closed port', async () => {
  await withTempDir(async (dir) => {
    const missing = join(dir, 'nosock');
    const port = await closedPort();
    const cases: [string, string][] = [
      [missing, 'ENOENT'],
      [`127.0.0.1:${String(port)}`, 'ECONNREFUSED'],
    ];
    for (const [target, errno] of cases) {
      const r = await statefs(['get', '--connect', target, '--token', 't', 'alice', '/state/a']);
      assert.equal(r.status, 1, r.stderr);
      assert.equal(r.stderr, `statefs: EIO: I/O error: no daemon listening at ${target} (${errno})\n`);
      await assert.rejects(connect({ ...(errno === 'ENOENT' ? { socket: target } : { host: '127.0.0.1', port }), token: 't' }), (err: unknown) => {
        assert.ok(isStatefsError(err) && err.code === 'EIO' && err.op === 'connect', String(err));
        assert.equal(err.message, `EIO: I/O error: no daemon listening at ${target} (${errno})`);
        return true;
      });
    }
  });
});
