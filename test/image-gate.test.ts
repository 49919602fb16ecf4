import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { MemoryDevice } from '../src/device/memory-device.js';
import { Store } from '../src/engine/store.js';
import { ImageGate } from '../src/server/daemon/image-gate.js';
import { memoryImage, MiB } from './helpers.js';

/** `promise`, or a rejection naming `what` if it has not settled within two seconds. */
function within<T>(promise: Promise<T>, what: string): Promise<T> {
  return Promise.race([promise, delay(2000).then(() => Promise.reject(new Error(`${what}: still waiting after 2 s`)))]);
}

test('ImageGate.useNow: runs at once while the store is ready; a reopen asked meanwhile waits for it; none while a reopen is pending; a synchronous throw holds nothing up', async () => {
  const device = new MemoryDevice(await memoryImage(8 * MiB));
  let opens = 0;
  const gate = new ImageGate(await Store.openDevice(device), () => {
    opens++;
    return Store.openDevice(device);
  });
  const order: string[] = [];
  let release: () => void = () => undefined;
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  const put = gate.useNow(async (store) => {
    order.push('called');
    await store.put('app', '/state/a', Buffer.from('1'));
    await held;
    return store;
  });
  order.push('returned');
  assert.deepEqual(order, ['called', 'returned'], 'called before useNow returns');
  assert.ok(put !== undefined);

  const reopened = gate.reopen();
  assert.equal(
    gate.useNow(() => Promise.resolve(order.push('not called'))),
    undefined,
    'with a reopen pending: nothing called, take use',
  );
  // The reopen cannot finish while the request admitted before it is held: half a second without it.
  assert.equal(await Promise.race([reopened.then(() => 'reopened'), delay(500).then(() => 'waiting')]), 'waiting');
  assert.equal(opens, 0, 'the reopen waits for the request admitted before it');
  release();
  const used = await put;
  await within(reopened, 'the reopen');
  assert.equal(opens, 1);
  assert.ok(gate.ready() !== undefined && gate.ready() !== used, 'a store opened again');
  assert.deepEqual(order, ['called', 'returned']);

  assert.throws(
    () =>
      gate.useNow(() => {
        throw new Error('thrown at once');
      }),
    /thrown at once/,
  );
  await within(gate.reopen(), 'a reopen after a synchronous throw');
  assert.equal(opens, 2);
  assert.equal(Buffer.from((await gate.ready()?.get('app', '/state/a')) ?? []).toString(), '1', 'the put reached the image');
  await within(gate.close(), 'close');
});
