import { writeSync } from 'node:fs';
import { StatefsError } from '../src/errors.js';
import { Store } from '../src/engine/store.js';
import { generateWithGc, runOp, STORE_OPTIONS } from '../test/reliability/workload.js';

/*
 * The workload process of the failpoint kill tests (test/reliability/failpoints.test.ts): runs the seeded
 * workload on an image file, one operation at a time, and prints `ack <i>` (synchronously, to
 * the pipe) after operation i is acknowledged. STATEFS_FAILPOINTS (set by the test) makes it die
 * at a named point, or makes the point fail: then it prints `error <code>` and closes the store.
 */
const [image = '', seed = '0', count = '0'] = process.argv.slice(2);
const { ops } = generateWithGc(Number(seed), Number(count));
const store = await Store.open(image, STORE_OPTIONS);
try {
  for (const [i, op] of ops.entries()) {
    await runOp(store, op);
    writeSync(1, `ack ${i}\n`);
  }
  writeSync(1, 'done\n');
} catch (err) {
  writeSync(1, `error ${err instanceof StatefsError ? err.code : String(err)}\n`);
} finally {
  await store.close();
}
