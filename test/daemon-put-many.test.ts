import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { connect, type Client } from '../src/client/client.js';
import { Store } from '../src/engine/store.js';
import { startDaemon, type Daemon } from '../src/server/daemon/daemon.js';
import { savePolicy } from '../src/server/policy/policy-file.js';
import { emptyPolicy, hashToken, newToken } from '../src/server/policy/policy.js';
import { FrameReader } from '../src/server/protocol/frame-reader.js';
import type { Response } from '../src/server/protocol/messages.js';
import { encodeRequest } from '../src/server/protocol/request-codec.js';
import { decodeResponse } from '../src/server/protocol/response-codec.js';
import { codeOf, MiB, text, withTempDir } from './helpers.js';
import { guardResources } from './hygiene.js';

guardResources();

const keyOf = (i: number): string => `/state/bulk/k${String(i).padStart(5, '0')}`;

/** A daemon whose one subject `app` may read and write (with `quota` if given), and a client of it. */
async function appDaemon(dir: string, createSize: number, quota?: { soft: number; hard: number }): Promise<{ daemon: Daemon; client: Client; token: string }> {
  const policy = emptyPolicy();
  const token = newToken();
  policy.subjects.set('app', { tokenSha256: hashToken(token), rights: ['read', 'write'], grants: [], ...(quota === undefined ? {} : { quota }) });
  await savePolicy(join(dir, 'policy.json'), policy);
  const daemon = await startDaemon({ imagePath: join(dir, 'img'), socketPath: join(dir, 'sock'), policyPath: join(dir, 'policy.json'), auditPath: join(dir, 'audit.log'), createSize });
  const client = await connect({ socket: join(dir, 'sock'), token });
  return { daemon, client, token };
}

test("the client's putMany is the embedded one over the socket: one PUT_MANY, refused whole, the last of a repeated key wins", async () => {
  await withTempDir(async (dir) => {
    const { daemon, client } = await appDaemon(dir, 8 * MiB, { soft: 200_000, hard: 400_000 });
    const embedded = await Store.create(join(dir, 'embedded'), { size: 8 * MiB, quotas: { app: { soft: 200_000, hard: 400_000 } } });
    embedded.on('marker', () => undefined);
    try {
      for (const api of [embedded, client]) {
        const side = api === client ? 'client' : 'embedded';
        await api.put('app', '/state/file', 'v');
        const refused: [string, [string, string][]][] = [
          ['EINVAL', [[keyOf(1), 'a'], ['/elsewhere/k', 'b']]],
          ['ENOTDIR', [[keyOf(1), 'a'], ['/state/file/below', 'b']]],
          ['ENOTDIR', [[keyOf(1), 'a'], ['/state/p', 'b'], ['/state/p/q', 'c']]], // conflict inside the batch
          ['EFBIG', [[keyOf(1), 'a'], [keyOf(2), 'x'.repeat(70_000)]]],
          ['EDQUOTA', Array.from({ length: 8 }, (_, i): [string, string] => [keyOf(i), 'q'.repeat(60_000) + String(i)])],
        ];
        const codes = [];
        for (const [, batch] of refused) codes.push(await codeOf(api.putMany('app', batch)));
        assert.deepEqual(codes, refused.map(([code]) => code), side);
        assert.deepEqual((await api.list('app', '/state/')).keys, ['/state/file'], `${side}: nothing of a refused batch was written`);
        await api.putMany('app', [
          [keyOf(1), 'one'],
          [keyOf(2), new Uint8Array([2, 2])],
          [keyOf(1), 'uno'],
        ]);
        await api.putMany('app', []); // nothing to write: resolves
        assert.equal(text(await api.get('app', keyOf(1))), 'uno', side);
        assert.deepEqual(await api.get('app', keyOf(2)), new Uint8Array([2, 2]), side);
      }
    } finally {
      await client.close();
      await embedded.close();
      await daemon.close();
    }
  });
});

test("a client's putMany larger than one frame goes as several PUT_MANY requests, every entry written", async () => {
  await withTempDir(async (dir) => {
    const { daemon, client } = await appDaemon(dir, 16 * MiB);
    try {
      // 3.2 MB of values, and entries sized so that frames fill up to the byte.
      const batch = Array.from({ length: 50 }, (_, i): [string, Uint8Array] => [keyOf(i), new Uint8Array(65_536 - (i % 7)).fill(i)]);
      await client.putMany('app', batch);
      const page = await client.list('app', '/state/bulk/', { limit: 100 });
      assert.equal(page.keys.length, 50);
      for (const [key, value] of batch) assert.deepEqual(await client.get('app', key), value, key);
    } finally {
      await client.close();
      await daemon.close();
    }
  });
});

test("a client's putMany checks every entry's name and size before it sends any, however many requests the batch takes; a PUT_MANY of over 1,024 entries is EFBIG", async () => {
  await withTempDir(async (dir) => {
    const { daemon, client, token } = await appDaemon(dir, 16 * MiB);
    try {
      const many = Array.from({ length: 3000 }, (_, i): [string, string] => [keyOf(i), 'v']);
      for (const [code, bad] of [
        ['EINVAL', ['/elsewhere', 'v']],
        ['ENAMETOOLONG', [`/state/${'x'.repeat(300)}`, 'v']],
        ['EFBIG', [keyOf(9999), new Uint8Array(2 * MiB)]],
      ] as const) {
        assert.equal(await codeOf(client.putMany('app', [...many, bad])), code);
        assert.deepEqual((await client.list('app', '/state/')).keys, [], `${code}: nothing sent before the bad entry was found`);
      }
      await client.putMany('app', many); // three requests, in order
      assert.equal((await client.list('app', '/state/bulk/', { limit: 10_000 })).keys.length, 3000);

      const { send, close } = await rawFrames(join(dir, 'sock'));
      await send(encodeRequest({ op: 'HELLO', requestId: 1, token }));
      const entries = Array.from({ length: 1025 }, (_, i) => ({ key: `/state/raw/k${i}`, value: new Uint8Array(1) }));
      const answer = await send(encodeRequest({ op: 'PUT_MANY', requestId: 2, subject: 'app', entries }));
      assert.ok(answer.status === 'error' && answer.error.code === 'EFBIG', JSON.stringify(answer));
      close();
    } finally {
      await client.close();
      await daemon.close();
    }
  });
});

/** One request at a time over a raw connection: send a frame, get its answer. */
async function rawFrames(socket: string): Promise<{ send: (frame: Uint8Array) => Promise<Response>; close: () => void }> {
  const raw = createConnection(socket);
  await once(raw, 'connect');
  const reader = new FrameReader();
  const waiting: ((r: Response) => void)[] = [];
  raw.on('data', (chunk: Buffer) => {
    for (const frame of reader.push(chunk)) waiting.shift()?.(decodeResponse(frame));
  });
  return {
    send: (frame) =>
      new Promise((resolve) => {
        waiting.push(resolve);
        raw.write(frame);
      }),
    close: () => raw.destroy(),
  };
}
