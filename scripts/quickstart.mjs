// The README's first quick-start command runs this after the build: it sets up a project-local
// folder .statefs/ (once: a 256 MiB sparse image, a policy with an admin subject, its token in a
// 0600 file), prints how to talk to the daemon, and runs statefsd in the foreground (Ctrl-C stops
// it cleanly).
import { spawn, spawnSync } from 'node:child_process';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const dir = join(process.cwd(), '.statefs');
const image = join(dir, 'state.img');
const policy = join(dir, 'policy.json');
const tokenFile = join(dir, 'admin.token');
const socket = join(dir, 'statefsd.sock');
const audit = join(dir, 'audit.log');
const exists = (p) => stat(p).then(() => true, () => false);

await mkdir(dir, { recursive: true, mode: 0o700 });
if (!(await exists(policy))) {
  const r = spawnSync(process.execPath, ['dist/src/cli/statefs.js', 'policy', 'add-subject', policy, 'admin', '--rights', 'read,write,snapshot,mount,gc,admin'], { encoding: 'utf8' });
  if (r.status !== 0) {
    process.stderr.write(r.stderr);
    process.exit(r.status ?? 1);
  }
  const token = r.stdout.trimEnd().split('\n').at(-1) ?? '';
  await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
  await chmod(tokenFile, 0o600);
}
const token = (await readFile(tokenFile, 'utf8')).trim();

console.log(`StateFS daemon on ${image}
  socket ${socket} (mode 0600), policy ${policy}, audit log ${audit}
  admin token in ${tokenFile}

In another terminal, talk to it with the client library:
  node --input-type=module -e "
    import { connect } from './dist/src/index.js';
    const c = await connect({ socket: '${socket}', token: '${token.slice(0, 4)}…' /* cat ${tokenFile} */ });
    await c.put('admin', '/state/hello', 'world');
    console.log(Buffer.from(await c.get('admin', '/state/hello')).toString());
    await c.snapshot('admin', 'first');
    console.log(await c.listSnaps('admin'));
    await c.close();"
  node dist/src/cli/statefs.js audit verify ${audit}
  node dist/src/cli/statefs.js policy add-subject ${policy} myservice --rights read,write,snapshot   # then restart
Stop the daemon with Ctrl-C (it drains, syncs and exits 0); then the CLI works on the image directly:
  node dist/src/cli/statefs.js ls --image ${image} admin
`);
const daemon = spawn(process.execPath, ['dist/src/cli/statefsd.js', '--image', image, '--create-size', '256MiB', '--socket', socket, '--policy', policy, '--audit', audit], { stdio: 'inherit' });
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => daemon.kill(signal));
daemon.on('exit', (code) => process.exit(code ?? 0));
