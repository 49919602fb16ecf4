import assert from 'node:assert/strict';
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { connect, type Client } from '../src/client/client.js';
import { savePolicy } from '../src/server/policy/policy-file.js';
import { emptyPolicy, hashToken, newToken } from '../src/server/policy/policy.js';
import { rng, text, withTempDir } from './helpers.js';

const STATEFSD = fileURLToPath(new URL('../src/cli/statefsd.js', import.meta.url));
const SUBJECT = 'writer';
const CLIENTS = 64;
const PUT_SLOTS = 6;
const PAIR_SLOTS = 2;
/** Upper bound of operations per client per cycle (the kill usually lands first). */
const OPS_PER_CYCLE = 60;

interface Paths {
  image: string;
  socket: string;
  policy: string;
  audit: string;
  token: string;
}

interface KeyState {
  /** Every value ever sent for the key, by version. */
  issued: Map<number, string>;
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
  ackedTxns: number;
  failedOps: number;
  checkedKeys: number;
  checkedPairs: number;
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

/** Retries connect for up to 5 s. */
async function connectRetry(p: Paths, child: Daemon, stderr: () => string): Promise<Client> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    try {
      return await connect({ socket: p.socket, token: p.token });
    } catch (err) {
      assert.ok(child.exitCode === null, `statefsd exited: ${stderr()}`);
      if (Date.now() >= deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/** Every key holds its floor version or a later issued one; no pair is half-applied. */
async function verify(client: Client, states: ClientState[], totals: Totals, seed: number, cycle: number): Promise<void> {
  const ctx = `seed=${seed} cycle=${cycle}`;
  const check = async (key: string, ks: KeyState): Promise<number> => {
    const got = text(await client.get(SUBJECT, key));
    if (got === undefined) {
      assert.equal(ks.floor, 0, `${ctx}: ${key} missing, acknowledged version ${ks.floor}`);
      return 0;
    }
    const v = versionOf(got);
    assert.equal(ks.issued.get(v), got, `${ctx}: ${key} holds ${got}, never written`);
    assert.ok(v >= ks.floor, `${ctx}: ${key} holds version ${v}, older than acknowledged/observed ${ks.floor}`);
    return v;
  };
  await Promise.all(
    states.map(async (st, c) => {
      for (const [key, ks] of st.keys) {
        ks.floor = await check(key, ks);
        totals.checkedKeys++;
      }
      for (const [slot, ks] of st.pairs) {
        const [va, vb] = await Promise.all([
          check(pairKey(c, slot, 'a'), ks),
          check(pairKey(c, slot, 'b'), ks),
        ]);
        assert.equal(va, vb, `${ctx}: transaction pair c${c}/t${slot} half-applied: a=${va} b=${vb}`);
        ks.floor = va;
        totals.checkedPairs++;
      }
    }),
  );
}

/** One client's writes until the daemon dies or the op budget is spent. */
async function writer(client: Client, st: ClientState, c: number, cycle: number, totals: Totals): Promise<void> {
  for (let n = 0; n < OPS_PER_CYCLE; n++) {
    const version = ++st.version;
    const value = encode(cycle, c, version);
    try {
      if (n % 5 === 4) {
        const slot = version % PAIR_SLOTS;
        const ks = keyState(st.pairs, slot);
        ks.issued.set(version, value);
        const txn = client.begin(SUBJECT);
        await txn.put(SUBJECT, pairKey(c, slot, 'a'), value);
        await txn.put(SUBJECT, pairKey(c, slot, 'b'), value);
        await txn.commit();
        ks.floor = version;
        totals.ackedTxns++;
      } else {
        const key = putKey(c, version % PUT_SLOTS);
        const ks = keyState(st.keys, key);
        ks.issued.set(version, value);
        await client.put(SUBJECT, key, value);
        ks.floor = version;
        totals.ackedPuts++;
      }
    } catch {
      totals.failedOps++;
      return;
    }
  }
}

test('kill -9 of the daemon while 64 clients write: after restart every acknowledged write is present and no transaction is half-applied', { timeout: 180_000 }, async () => {
  const seed = Number(process.env.STATEFS_SEED ?? 1); // fixed by default so CI runs are repeatable
  const cycles = Math.max(20, Number(process.env.STATEFS_KILL_CYCLES ?? 20));
  console.log(`daemon-kill: STATEFS_SEED=${seed} STATEFS_KILL_CYCLES=${cycles}`);
  const random = rng(seed);
  const totals: Totals = { ackedPuts: 0, ackedTxns: 0, failedOps: 0, checkedKeys: 0, checkedPairs: 0 };
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
        const checker = await connectRetry(p, child, stderr);
        try {
          await verify(checker, states, totals, seed, cycle);
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
        const delay = 20 + Math.floor(random() * 131);
        const writers = Promise.all(clients.map((client, c) => {
          const st = states[c];
          assert.ok(st !== undefined);
          return writer(client, st, c, cycle, totals);
        }));
        await new Promise((resolve) => setTimeout(resolve, delay));
        child.kill('SIGKILL');
        const [, signal] = (await exited) as [number | null, NodeJS.Signals | null];
        assert.equal(signal, 'SIGKILL', stderr());
        await writers;
        await Promise.all(clients.map((client) => client.close().catch(() => undefined)));
      } finally {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGKILL');
          await exited;
        }
      }
    }
  });
  console.log(
    `daemon-kill: cycles=${cycles} acked puts=${totals.ackedPuts} acked txns=${totals.ackedTxns} in-flight at kill=${totals.failedOps} ` +
      `keys checked=${totals.checkedKeys} pairs checked=${totals.checkedPairs} in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
});
