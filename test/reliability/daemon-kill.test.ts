import assert from 'node:assert/strict';
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { connect, type Client } from '../../src/client/client.js';
import { fsck } from '../../src/engine/fsck.js';
import { isStatefsError } from '../../src/errors.js';
import { savePolicy } from '../../src/server/policy/policy-file.js';
import { emptyPolicy, hashToken, newToken } from '../../src/server/policy/policy.js';
import { rng, text, withTempDir } from '../helpers.js';
import { guardResources } from '../hygiene.js';
import { recordFigures } from './counters.js';
import { byMode, countFromEnv, seedFromEnv } from './mode.js';

guardResources();

const STATEFSD = fileURLToPath(new URL('../../src/cli/statefsd.js', import.meta.url));
const SUBJECT = 'writer';
const CLIENTS = 64;
const PUT_SLOTS = 6;
const PAIR_SLOTS = 2;
/** Upper bound of operations per client per cycle (the kill usually lands first). */
const OPS_PER_CYCLE = 60;
/** One cycle in this many kills the daemon while it is still replaying the image after the last kill. */
const EARLY_KILL_EVERY = 8;

const seed = seedFromEnv(1);
const cycles = countFromEnv('STATEFS_KILL_CYCLES', byMode(20, 100));
console.log(`daemon-kill: STATEFS_SEED=${seed} STATEFS_KILL_CYCLES=${cycles}`);

interface Paths {
  image: string;
  socket: string;
  policy: string;
  audit: string;
  token: string;
}

/** What a key may hold: each version ever sent for it (a value, or `null` for a delete). */
interface KeyState {
  issued: Map<number, string | null>;
  /** Highest version that must be present: acknowledged, or observed after a restart. */
  floor: number;
}

interface ClientState {
  /** Per-client version counter, increasing across cycles. */
  version: number;
  keys: Map<string, KeyState>;
  /** Pair slot → versions issued for it, and the floor (acknowledged or observed). */
  pairs: Map<number, KeyState>;
}

interface Totals {
  ackedPuts: number;
  ackedDeletes: number;
  ackedTxns: number;
  failedOps: number;
  checkedKeys: number;
  checkedPairs: number;
  earlyKills: number;
  violations: string[];
}

type Daemon = ChildProcessByStdio<null, Readable, Readable>;

const putKey = (c: number, slot: number): string => `/state/c${c}/k${slot}`;
const pairKey = (c: number, slot: number, half: 'a' | 'b'): string => `/state/c${c}/t${slot}${half}`;
const encode = (cycle: number, c: number, version: number): string => `${cycle}:${c}:${version}`;
const versionOf = (value: string): number => Number(value.split(':')[2]);

function keyState<K>(map: Map<K, KeyState>, id: K): KeyState {
  let s = map.get(id);
  if (s === undefined) {
    s = { issued: new Map(), floor: 0 };
    map.set(id, s);
  }
  return s;
}

function spawnDaemon(p: Paths, create: boolean): { child: Daemon; stderr: () => string } {
  const args = [STATEFSD, '--image', p.image, '--socket', p.socket, '--policy', p.policy, '--audit', p.audit];
  if (create) args.push('--create-size', '32MiB');
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (chunk: Buffer) => {
    err += chunk.toString('utf8');
  });
  child.stdout.resume();
  return { child, stderr: () => err };
}

/** Retries connect for up to 10 s. */
async function connectRetry(p: Paths, child: Daemon, stderr: () => string): Promise<Client> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      return await connect({ socket: p.socket, token: p.token });
    } catch (err) {
      assert.ok(child.exitCode === null, `statefsd exited: ${stderr()}`);
      if (Date.now() >= deadline) throw err;
      await delay(20);
    }
  }
}

/**
 * The recovered value of a key against its history: the version acknowledged last, or a later one
 * that was in flight at the kill, never an older one and never one that was not sent. A missing
 * key is a delete at or after the floor (or a key never acknowledged). Returns the version the
 * key now holds for the next cycle's floor, or undefined after a violation.
 */
function judge(key: string, got: string | undefined, ks: KeyState, fail: (why: string) => void): number | undefined {
  if (got === undefined) {
    if (ks.floor === 0) return 0;
    const deletes = [...ks.issued].filter(([v, value]) => value === null && v >= ks.floor).map(([v]) => v);
    if (deletes.length === 0) {
      fail(`${key} missing, acknowledged version ${ks.floor} was a value`);
      return undefined;
    }
    return Math.min(...deletes);
  }
  const v = versionOf(got);
  if (ks.issued.get(v) !== got) {
    fail(`${key} holds ${got}, never written`);
    return undefined;
  }
  if (v < ks.floor) {
    fail(`${key} holds version ${v}, older than acknowledged/observed ${ks.floor}`);
    return undefined;
  }
  return v;
}

/** Every key holds its floor version or a later issued one; no pair is half-applied. */
async function verify(client: Client, states: ClientState[], totals: Totals, cycle: number): Promise<void> {
  const fail = (why: string): void => {
    totals.violations.push(`seed=${seed} cycle=${cycle}: ${why}`);
  };
  const read = async (key: string): Promise<string | undefined> => text(await client.get(SUBJECT, key));
  await Promise.all(
    states.map(async (st, c) => {
      for (const [key, ks] of st.keys) {
        ks.floor = judge(key, await read(key), ks, fail) ?? ks.floor;
        totals.checkedKeys++;
      }
      for (const [slot, ks] of st.pairs) {
        const [a, b] = await Promise.all([read(pairKey(c, slot, 'a')), read(pairKey(c, slot, 'b'))]);
        const va = judge(pairKey(c, slot, 'a'), a, ks, fail);
        const vb = judge(pairKey(c, slot, 'b'), b, ks, fail);
        if (va !== vb) fail(`transaction pair c${c}/t${slot} half-applied: a=${String(a)} b=${String(b)}`);
        ks.floor = va ?? ks.floor;
        totals.checkedPairs++;
      }
    }),
  );
}

/** One client's writes (puts, deletes, two-key transactions) until the daemon dies or the op budget is spent. */
async function writer(client: Client, st: ClientState, c: number, cycle: number, totals: Totals): Promise<void> {
  for (let n = 0; n < OPS_PER_CYCLE; n++) {
    const version = ++st.version;
    const value = encode(cycle, c, version);
    // Offset by the client number, so that some clients start with a transaction or a delete
    // even when the kill comes after their first few operations.
    const kind = n + c;
    try {
      if (kind % 5 === 4) {
        const slot = version % PAIR_SLOTS;
        const ks = keyState(st.pairs, slot);
        ks.issued.set(version, value);
        const txn = client.begin(SUBJECT);
        await txn.put(SUBJECT, pairKey(c, slot, 'a'), value);
        await txn.put(SUBJECT, pairKey(c, slot, 'b'), value);
        await txn.commit();
        ks.floor = version;
        totals.ackedTxns++;
      } else if (kind % 7 === 3) {
        const key = putKey(c, version % PUT_SLOTS);
        const ks = keyState(st.keys, key);
        ks.issued.set(version, null);
        await client.delete(SUBJECT, key);
        ks.floor = version;
        totals.ackedDeletes++;
      } else {
        const key = putKey(c, version % PUT_SLOTS);
        const ks = keyState(st.keys, key);
        ks.issued.set(version, value);
        await client.put(SUBJECT, key, value);
        ks.floor = version;
        totals.ackedPuts++;
      }
    } catch (err) {
      // ENOENT: a delete of a key already absent is still a delete acknowledged as done.
      if (isStatefsError(err) && err.code === 'ENOENT') {
        const ks = st.keys.get(putKey(c, version % PUT_SLOTS));
        if (ks !== undefined) ks.floor = version;
        totals.ackedDeletes++;
        continue;
      }
      totals.failedOps++;
      return;
    }
  }
}

/** Waits until `done()` holds, checking every 5 ms; fails with `why` after `ms`. */
async function until(done: () => boolean, ms: number, why: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    assert.ok(Date.now() < deadline, why);
    await delay(5);
  }
}

async function killed(child: Daemon, exited: Promise<unknown[]>, stderr: () => string): Promise<void> {
  child.kill('SIGKILL');
  const [, signal] = (await exited) as [number | null, NodeJS.Signals | null];
  assert.equal(signal, 'SIGKILL', stderr());
}

test(`kill -9 of the daemon at random moments while 64 clients write, ${cycles} cycles: every acknowledged write survives, no transaction is half-applied`, { timeout: cycles * 10_000 }, async () => {
  const random = rng(seed);
  const totals: Totals = { ackedPuts: 0, ackedDeletes: 0, ackedTxns: 0, failedOps: 0, checkedKeys: 0, checkedPairs: 0, earlyKills: 0, violations: [] };
  const states: ClientState[] = Array.from({ length: CLIENTS }, () => ({ version: 0, keys: new Map(), pairs: new Map() }));
  const started = Date.now();

  await withTempDir(async (dir) => {
    const token = newToken();
    const policy = emptyPolicy();
    policy.subjects.set(SUBJECT, { tokenSha256: hashToken(token), rights: ['read', 'write'], grants: [] });
    const p: Paths = { image: join(dir, 'img'), socket: join(dir, 'sock'), policy: join(dir, 'policy.json'), audit: join(dir, 'audit.log'), token };
    await savePolicy(p.policy, policy);

    for (let cycle = 0; cycle <= cycles; cycle++) {
      const { child, stderr } = spawnDaemon(p, cycle === 0);
      const exited = once(child, 'exit');
      try {
        // Now and then, kill it again while it replays the image (never while it creates it).
        if (cycle > 0 && cycle < cycles && random() < 1 / EARLY_KILL_EVERY) {
          await delay(Math.floor(random() * 60));
          await killed(child, exited, stderr);
          totals.earlyKills++;
          continue;
        }
        const checker = await connectRetry(p, child, stderr);
        try {
          await verify(checker, states, totals, cycle);
        } finally {
          await checker.close();
        }
        if (cycle === cycles) {
          child.kill('SIGTERM');
          const [code] = (await exited) as [number | null];
          assert.equal(code, 0, `statefsd did not exit 0 on SIGTERM: ${stderr()}`);
          break;
        }
        const clients = await Promise.all(states.map(() => connect({ socket: p.socket, token })));
        const txnsBefore = totals.ackedTxns;
        const writers = Promise.all(clients.map((client, c) => {
          const st = states[c];
          assert.ok(st !== undefined);
          return writer(client, st, c, cycle, totals);
        }));
        // Half the cycles kill at a random moment after the start (it may come before any
        // transaction is done); the others at a random moment after the cycle's first acknowledged
        // transaction (four round trips: on a loaded machine often later than any delay drawn
        // from the start). So transactions are acknowledged on any machine, and no kill is pinned
        // to one point of the workload (waiting for a transaction in every cycle put most kills
        // within 5 ms of the first group commit).
        // (The last cycle waits in any case while the run has none yet.)
        const afterTxn = random() < 0.5 || (cycle === cycles - 1 && totals.ackedTxns === 0);
        const wait = Math.floor(random() * 131);
        if (afterTxn) await until(() => totals.ackedTxns > txnsBefore, 10_000, `no transaction acknowledged in cycle ${cycle}: ${stderr()}`);
        await delay(afterTxn ? wait : 20 + wait);
        await killed(child, exited, stderr);
        await writers;
        await Promise.all(clients.map((client) => client.close().catch(() => undefined)));
      } finally {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGKILL');
          await exited;
        }
      }
    }
    const report = await fsck(p.image);
    assert.equal(report.exitCode, 0, JSON.stringify(report.findings));
  });
  const { violations, ...counts } = totals;
  console.log(`daemon-kill: seed=${seed} cycles=${cycles} ${JSON.stringify(counts)} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  recordFigures('daemon-kill', { seed, killCycles: cycles, violations: violations.length, ackedWrites: totals.ackedPuts + totals.ackedDeletes + totals.ackedTxns, checkedKeys: totals.checkedKeys + totals.checkedPairs });
  assert.deepEqual(violations.slice(0, 10), [], `${violations.length} violations`);
  assert.ok(totals.ackedPuts > 0 && totals.ackedDeletes > 0 && totals.ackedTxns > 0 && totals.failedOps > 0, JSON.stringify(counts));
});
