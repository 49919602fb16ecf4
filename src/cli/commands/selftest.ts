import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import { connect, type Client } from '../../client/client.js';
import { isStatefsError } from '../../errors.js';
import { defineAction } from '../action.js';
import { numberOption, requiredStringOption, stringOption } from '../command-input.js';
import { parseConnectTarget } from '../connect-target.js';
import { EXIT_FAILURE } from '../exit-codes.js';
import { writeLines } from '../output.js';
import { parseCount } from '../parse-number.js';

const SNAPSHOT_OK = 'SELFTEST: statefs v3 snapshot ok';
const COMPACT_OK = 'SELFTEST: statefs v3 compact ok';

/** Keys written before the snapshot, and what happens to each after it. */
const SNAP_KEYS = ['a', 'b', 'c', 'd'];
const CHURN_KEYS = 300;
const CHURN_VALUE_BYTES = 8 * 1024;
const CHURN_ROUNDS = 6;
const GC_CYCLES_PER_ROUND = 4;
/** Requests in flight at once while churning (below the daemon's default per-connection limit). */
const BATCH = 64;
/** Default seconds for the restart: the command, the old daemon's exit, the new one's first answer. */
const RESTART_TIMEOUT_S = 60;
const POLL_MS = 100;

/** A check that did not hold: reported as `FAIL: <message>`. */
class SelftestFailure extends Error {}

function check(condition: boolean, message: string): asserts condition {
  if (!condition) throw new SelftestFailure(message);
}

function describe(err: unknown): string {
  if (isStatefsError(err)) return err.message;
  return err instanceof Error ? err.message : String(err);
}

/** Run one step; a daemon error becomes a failure naming the step. */
async function step<T>(label: string, body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (err) {
    if (err instanceof SelftestFailure) throw err;
    throw new SelftestFailure(`${label}: ${describe(err)}`);
  }
}

function sameBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

async function inBatches<T>(items: readonly T[], run: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += BATCH) await Promise.all(items.slice(i, i + BATCH).map(run));
}

interface Names {
  subject: string;
  base: string;
  snap: string;
  mount: string;
}

/** The state the selftest knows: the snapshot's bytes and the latest acknowledged values. */
interface Expected {
  snapBytes: Map<string, Uint8Array>;
  latest: Map<string, Uint8Array | undefined>;
  digest: string;
}

const stateKey = (n: Names, k: string): string => `${n.base}/${k}`;
const mountKey = (n: Names, k: string): string => `${n.mount}/${n.base.slice('/state/'.length)}/${k}`;

/** The snapshot reads its bytes through the mount, keeps its digest, and refuses writes with EROFS. */
async function checkSnapshot(client: Client, n: Names, expected: Expected, when: string): Promise<void> {
  const mounts = await step(`list mounts (${when})`, () => client.listMounts(n.subject));
  check(
    mounts.some((m) => m.path === n.mount),
    `mount ${n.mount} is missing (${when})`,
  );
  for (const [k, bytes] of expected.snapBytes) {
    const got = await step(`read ${mountKey(n, k)} (${when})`, () => client.get(n.subject, mountKey(n, k)));
    check(sameBytes(got, bytes), `snapshot bytes of ${k} changed: read through ${n.mount} (${when})`);
  }
  const digest = await step(`verify snapshot (${when})`, () => client.verifySnapshot(n.subject, n.snap));
  check(digest === expected.digest, `snapshot digest changed (${when}): ${expected.digest} -> ${digest}`);
  const [first] = SNAP_KEYS;
  if (first === undefined) return;
  for (const [what, attempt] of [
    ['put', () => client.put(n.subject, mountKey(n, first), 'must not land')],
    ['delete', () => client.delete(n.subject, mountKey(n, first))],
  ] as const) {
    let code = 'OK';
    try {
      await attempt();
    } catch (err) {
      code = isStatefsError(err) ? err.code : describe(err);
    }
    check(code === 'EROFS', `${what} through mount ${n.mount} gave ${code}, not EROFS (${when})`);
  }
}

/** Every latest acknowledged value (and absence) is what the daemon serves. */
async function checkLatest(client: Client, n: Names, expected: Expected, when: string): Promise<void> {
  const entries = [...expected.latest];
  await inBatches(entries, async ([key, bytes]) => {
    const got = await step(`read ${key} (${when})`, () => client.get(n.subject, key));
    check(sameBytes(got, bytes), `latest value of ${key} lost or wrong (${when})`);
  });
}

/** Overwrite the churn keys until a gc cycle frees bytes. */
async function churnAndCollect(client: Client, n: Names, expected: Expected): Promise<number> {
  const keys = Array.from({ length: CHURN_KEYS }, (_, i) => stateKey(n, `churn/k${i}`));
  let cycles = 0;
  for (let round = 0; round < CHURN_ROUNDS; round++) {
    await inBatches(keys, async (key) => {
      const value = randomBytes(CHURN_VALUE_BYTES);
      await step(`churn put ${key}`, () => client.put(n.subject, key, value));
      expected.latest.set(key, value);
    });
    if (round === 0) continue; // the first round only creates the keys
    for (let c = 0; c < GC_CYCLES_PER_ROUND; c++) {
      cycles++;
      const result = await step('gc', () => client.gcNow());
      if (result.freedBytes > 0) return result.freedBytes;
    }
  }
  throw new SelftestFailure(`gc freed no bytes in ${cycles} cycles after ${CHURN_ROUNDS} rounds of churn`);
}

/** When the restart (or reopen) must be over: the command done, the old daemon gone, the new one answering. */
interface Deadline {
  at: number;
  seconds: number;
}

const deadlineIn = (seconds: number): Deadline => ({ at: Date.now() + seconds * 1000, seconds });

function runShell(command: string, deadline: Deadline): Promise<void> {
  return new Promise((resolve, reject) => {
    // The command's output goes to stderr: stdout carries only the selftest's lines.
    const child = spawn(command, { shell: true, stdio: ['ignore', 2, 2] });
    const timer = setTimeout(
      () => {
        child.kill('SIGKILL');
        reject(new SelftestFailure(`restart command did not finish within ${deadline.seconds} s`));
      },
      Math.max(0, deadline.at - Date.now()),
    );
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new SelftestFailure(`restart command: ${err.message}`));
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new SelftestFailure(`restart command exited with ${code === null ? `signal ${String(signal)}` : `status ${code}`}`));
    });
  });
}

const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => {
    setTimeout(resolve, ms);
  });

/**
 * A real restart ends every connection of the old daemon. Poll the connection opened before the
 * restart until it stops answering; if it still answers at the deadline, the command left the
 * old daemon running and the checks after it would prove nothing.
 */
async function awaitOldDaemonGone(old: Client, n: Names, deadline: Deadline): Promise<void> {
  for (;;) {
    try {
      await old.listMounts(n.subject);
    } catch {
      return; // closed (EBADF / EIO) or shutting down (EAGAIN): the old daemon is going away
    }
    if (Date.now() >= deadline.at) {
      throw new SelftestFailure(`the restart command left the daemon running: a connection from before the restart still answers after ${deadline.seconds} s`);
    }
    await sleep(POLL_MS);
  }
}

/** Failures worth retrying while a daemon (re)starts: no socket yet or refused (EIO), closed (EBADF), shutting down or full (EAGAIN). */
const RETRYABLE = new Set(['EIO', 'EBADF', 'EAGAIN']);

async function reconnect(target: string, token: string, deadline: Deadline): Promise<Client> {
  for (;;) {
    try {
      return await connect({ ...parseConnectTarget(target), token });
    } catch (err) {
      if (isStatefsError(err) && !RETRYABLE.has(err.code)) throw new SelftestFailure(`reconnect after restart: ${describe(err)}`);
      if (Date.now() >= deadline.at) {
        throw new SelftestFailure(`no daemon answered on ${target} within ${deadline.seconds} s of the restart (last error: ${describe(err)})`);
      }
      await sleep(POLL_MS);
    }
  }
}

async function cleanup(client: Client | undefined, n: Names | undefined, expected: Expected): Promise<void> {
  if (client === undefined || n === undefined) return;
  const warn = (what: string, err: unknown): void => {
    process.stderr.write(`statefs selftest: warning: cleanup ${what}: ${describe(err)}\n`);
  };
  const mounts = await client.listMounts(n.subject).catch((err: unknown) => {
    warn('list mounts', err);
    return [];
  });
  if (mounts.some((m) => m.path === n.mount)) {
    await client.umount(n.subject, n.mount).catch((err: unknown) => {
      warn(`umount ${n.mount}`, err);
    });
  }
  const snaps = await client.listSnaps(n.subject).catch((err: unknown): string[] => {
    warn('list snapshots', err);
    return [];
  });
  if (snaps.includes(n.snap)) {
    await client.deleteSnap(n.subject, n.snap).catch((err: unknown) => {
      warn(`delete snapshot ${n.snap}`, err);
    });
  }
  const keys = [...expected.latest].filter(([, v]) => v !== undefined).map(([k]) => k);
  await inBatches(keys, (key) =>
    client.delete(n.subject, key).catch((err: unknown) => {
      warn(`delete ${key}`, err);
    }),
  );
}

export function addSelftestCommand(program: Command): void {
  const cmd = program
    .command('selftest')
    .description('run the v3 proof (snapshot, immutability, EROFS through a mount, gc after churn, restart) against a running daemon')
    .requiredOption('--connect <socket|host:port>', "the daemon's Unix socket, or host:port of its loopback TCP listener")
    .option('--token <token>', 'token of the subject to test as (default: $STATEFS_TOKEN)')
    .option('--restart-cmd <command>', 'shell command that restarts the daemon on the same image (default: an admin reopen request)')
    .option('--restart-timeout <seconds>', `seconds the restart may take, until the daemon answers again (default ${RESTART_TIMEOUT_S})`, parseCount);
  defineAction(cmd, async () => {
    const target = requiredStringOption(cmd, 'connect');
    const token = stringOption(cmd, 'token') ?? process.env.STATEFS_TOKEN;
    if (token === undefined || token === '') return cmd.error('selftest: --token or STATEFS_TOKEN is required');
    const restartCmd = stringOption(cmd, 'restartCmd');
    const restartTimeout = numberOption(cmd, 'restartTimeout') ?? RESTART_TIMEOUT_S;

    const expected: Expected = { snapBytes: new Map(), latest: new Map(), digest: '' };
    let client: Client | undefined;
    let names: Names | undefined;
    try {
      client = await step('connect', () => connect({ ...parseConnectTarget(target), token }));
      const first = client;
      const id = `selftest-${randomBytes(4).toString('hex')}`;
      const n: Names = { subject: first.subject, base: `/state/${id}`, snap: id, mount: `/mnt/${id}` };
      names = n;

      // (1) Snapshot, writes after it, immutability, EROFS through the mount.
      for (const k of SNAP_KEYS) {
        const value = randomBytes(1024 + SNAP_KEYS.indexOf(k) * 512);
        await step(`put ${stateKey(n, k)}`, () => first.put(n.subject, stateKey(n, k), value));
        expected.snapBytes.set(k, value);
        expected.latest.set(stateKey(n, k), value);
      }
      await step('snapshot', () => first.snapshot(n.subject, n.snap));
      expected.digest = await step('verify snapshot', () => first.verifySnapshot(n.subject, n.snap));
      const [k0, k1, k2] = SNAP_KEYS;
      check(k0 !== undefined && k1 !== undefined && k2 !== undefined, 'internal: too few keys');
      for (const k of [k0, k1]) {
        const value = randomBytes(2048);
        await step(`overwrite ${stateKey(n, k)}`, () => first.put(n.subject, stateKey(n, k), value));
        expected.latest.set(stateKey(n, k), value);
      }
      await step(`delete ${stateKey(n, k2)}`, () => first.delete(n.subject, stateKey(n, k2)));
      expected.latest.set(stateKey(n, k2), undefined);
      await step('mount', () => first.mountSnap(n.subject, n.subject, n.snap, n.mount));
      await checkSnapshot(first, n, expected, 'before restart');
      await checkLatest(first, n, expected, 'before restart');

      // (2) Churn, then gc until a cycle frees bytes.
      await churnAndCollect(first, n, expected);

      // (3) Restart on the same image, then the same checks again.
      const deadline = deadlineIn(restartTimeout);
      if (restartCmd === undefined) {
        await step('reopen', () => first.reopen());
        await first.close().catch(() => undefined);
        client = undefined;
        client = await reconnect(target, token, deadline);
      } else {
        // Keep the first connection open across the command: a real restart must end it.
        client = undefined;
        try {
          await runShell(restartCmd, deadline);
          await awaitOldDaemonGone(first, n, deadline);
        } finally {
          await first.close().catch(() => undefined);
        }
        client = await reconnect(target, token, deadline);
      }
      const second = client;
      await checkSnapshot(second, n, expected, 'after restart');
      await checkLatest(second, n, expected, 'after restart');
      writeLines([SNAPSHOT_OK, COMPACT_OK]);
    } catch (err) {
      if (!(err instanceof SelftestFailure)) throw err;
      writeLines([`FAIL: ${err.message}`]);
      process.exitCode = EXIT_FAILURE;
    } finally {
      // A failed restart left no connection: one more try, for the cleanup only.
      if (client === undefined && names !== undefined) client = await connect({ ...parseConnectTarget(target), token }).catch(() => undefined);
      await cleanup(client, names, expected);
      await client?.close().catch(() => undefined);
    }
  });
}
