// How the bundled client puts requests on the socket (src/client/wire.ts `#send`,
// docs/storage/protocol.md): a connection's first request of a turn goes out at once, the rest
// of that turn corked until one tick shared by every connection of the process. What a test can
// see of that: every request arrives, in the order issued, on each connection, and a connection
// corked in one turn still sends in the next.
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { WireConnection } from '../src/client/wire.js';
import { FrameReader } from '../src/server/protocol/frame-reader.js';
import { decodeRequest } from '../src/server/protocol/request-codec.js';
import { withTempDir } from './helpers.js';
import { guardResources } from './hygiene.js';

guardResources();

/** A listener that answers nothing and keeps, per connection, the chunks it read. */
async function recorder(path: string): Promise<{ chunks: Uint8Array[][]; close: () => Promise<void> }> {
  const chunks: Uint8Array[][] = [];
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    const mine: Uint8Array[] = [];
    chunks.push(mine);
    sockets.push(socket);
    socket.on('data', (chunk: Buffer) => mine.push(new Uint8Array(chunk)));
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return {
    chunks,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => {
          resolve();
        });
      }),
  };
}

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.ok(cond(), 'timed out');
}

test('client: the requests of one turn arrive whole and in order on every connection, and later turns still send', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'sock');
    const rec = await recorder(path);
    const conns = await Promise.all([WireConnection.open(path), WireConnection.open(path)]);
    const settled: Promise<unknown>[] = [];
    // One turn: 20 requests on each connection, interleaved.
    for (let i = 0; i < 20; i++) {
      for (const [c, conn] of conns.entries()) settled.push(conn.request({ op: 'GET', subject: 'app', key: `/state/c${c}/k${i}` }).catch(() => undefined));
    }
    await until(() => rec.chunks.length === 2 && rec.chunks.every((list) => list.reduce((n, ch) => n + ch.length, 0) >= 20 * 20));
    for (const list of rec.chunks) {
      const reader = new FrameReader();
      const keys = list.flatMap((ch) => reader.push(ch)).map((f) => {
        const req = decodeRequest(f);
        return req.op === 'GET' ? req.key : '';
      });
      assert.equal(keys.length, 20);
      const c = keys[0]?.startsWith('/state/c1/') === true ? 1 : 0;
      assert.deepEqual(keys, Array.from({ length: 20 }, (_, i) => `/state/c${c}/k${i}`), 'in the order issued');
    }
    // A request of a later turn goes out too (the connection is not left corked).
    settled.push(conns[0].request({ op: 'GET', subject: 'app', key: '/state/later' }).catch(() => undefined));
    await until(() => rec.chunks.some((list) => Buffer.concat(list).includes('/state/later')));
    await Promise.all(conns.map((c) => c.close()));
    await Promise.all(settled);
    await rec.close();
  });
});
