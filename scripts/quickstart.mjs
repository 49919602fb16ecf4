// The README's first quick-start command runs this after the build: it creates a default image
// under ./.statefs/ (once), shows a short round trip through the library, and prints what to
// type next. The daemon (statefsd) arrives with issue 7; until then the CLI works on the image.
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Store } from '../dist/src/index.js';

const dir = join(process.cwd(), '.statefs');
const image = join(dir, 'state.img');
await mkdir(dir, { recursive: true, mode: 0o700 });
const exists = await stat(image).then(() => true, () => false);
const store = exists ? await Store.open(image) : await Store.create(image);
try {
  await store.put('demo', '/state/hello', `hello from StateFS at ${new Date().toISOString()}`);
  const value = await store.get('demo', '/state/hello');
  const { keys } = await store.list('demo');
  const st = await store.stat();
  console.log(`StateFS image: ${image} (${exists ? 'opened' : 'created'}, ${st.capacity / 1048576} MiB, ${st.segmentsUsed}/${st.segments} segments in use)`);
  console.log(`demo/state/hello = ${Buffer.from(value ?? new Uint8Array()).toString('utf8')}`);
  console.log(`keys of subject demo: ${keys.join(', ')}`);
} finally {
  await store.close();
}
const cli = 'node dist/src/cli/statefs.js';
console.log(`
Try next:
  ${cli} put --image ${image} demo /state/app/config '{"debug":true}'
  ${cli} get --image ${image} demo /state/app/config
  ${cli} ls --image ${image} demo /state/
  ${cli} stat --image ${image}
  ${cli} --help`);
