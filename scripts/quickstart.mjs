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

const cli = 'node dist/src/cli/statefs.js';
console.log(`StateFS daemon on ${image}
  socket ${socket} (mode 0600), policy ${policy}, audit log ${audit}
  admin token in ${tokenFile} (${token.slice(0, 4)}…)

In another terminal:
  export STATEFS_TOKEN="$(cat ${tokenFile})"
  ${cli} put --connect ${socket} admin /state/hello world
  ${cli} get --connect ${socket} admin /state/hello
  ${cli} snapshot --connect ${socket} admin first
  ${cli} snaps --connect ${socket} admin --details
  ${cli} selftest --connect ${socket}
  ${cli} audit verify ${audit}
From code: import { connect } from 'statefs' (here: './dist/src/index.js'), then
  const c = await connect({ socket: '${socket}', token: process.env.STATEFS_TOKEN });
Stop the daemon with Ctrl-C (it drains, syncs and exits 0); the CLI then also works on the image
directly with --image ${image}.
`);
const daemon = spawn(process.execPath, ['dist/src/cli/statefsd.js', '--image', image, '--create-size', '256MiB', '--socket', socket, '--policy', policy, '--audit', audit], { stdio: 'inherit' });
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => daemon.kill(signal));
daemon.on('exit', (code) => process.exit(code ?? 0));
