// The README's first quick-start command runs this after the build: it sets up a project-local
// folder .statefs/ under the working directory (once: a 256 MiB sparse image, a policy with an
// admin subject, its token in a 0600 file), runs statefsd in the foreground and, once the daemon
// listens, prints how to talk to it. A daemon that cannot start (EBUSY: another one holds the
// image) gets its error printed and no banner. SIGINT and SIGTERM are passed to the daemon (it
// drains, syncs and exits 0), and this process exits with the daemon's status: package.json's
// `start` execs it, so npm's own forwarding of both signals reaches it. Killed outright, this
// process or npm, the daemon stops too (its IPC channel, this process's parent).
import { spawn, spawnSync } from 'node:child_process';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { constants } from 'node:os';
import { join, relative } from 'node:path';
import { createInterface } from 'node:readline';
import { setInterval } from 'node:timers';
import { URL, fileURLToPath } from 'node:url';

// Read first: npm may be killed while the setup below runs.
const parent = process.ppid;
const built = (file) => fileURLToPath(new URL(`../dist/src/${file}`, import.meta.url));
const statefsJs = built('cli/statefs.js');
const statefsdJs = built('cli/statefsd.js');
const dir = join(process.cwd(), '.statefs');
const image = join(dir, 'state.img');
const policy = join(dir, 'policy.json');
const tokenFile = join(dir, 'admin.token');
const socket = join(dir, 'statefsd.sock');
const audit = join(dir, 'audit.log');
const exists = (p) => stat(p).then(() => true, () => false);

await mkdir(dir, { recursive: true, mode: 0o700 });
if (!(await exists(policy))) {
  const r = spawnSync(process.execPath, [statefsJs, 'policy', 'add-subject', policy, 'admin', '--rights', 'read,write,snapshot,mount,gc,admin'], { encoding: 'utf8' });
  if (r.status !== 0) {
    process.stderr.write(r.stderr);
    process.exit(r.status ?? 1);
  }
  const token = r.stdout.trimEnd().split('\n').at(-1) ?? '';
  await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
  await chmod(tokenFile, 0o600);
}
const token = (await readFile(tokenFile, 'utf8')).trim();

// Paths in the banner: relative when under the working directory (the checkout, under npm start).
const shown = (p) => (relative(process.cwd(), p).startsWith('..') ? p : relative(process.cwd(), p));
const cli = `node ${shown(statefsJs)}`;
const entry = shown(built('index.js'));
const banner = `StateFS daemon on ${image}
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
From code: import { connect } from 'statefs' (here: '${entry.startsWith('/') ? entry : `./${entry}`}'), then
  const c = await connect({ socket: '${socket}', token: process.env.STATEFS_TOKEN });
Stop the daemon with Ctrl-C (it drains, syncs and exits 0); the CLI then also works on the image
directly with --image ${image}.
`;

// The daemon's JSON log lines (stderr) pass through; the one saying it listens is its readiness.
// The IPC channel is how the daemon learns that this process has ended, even by kill -9: it then
// stops as on SIGTERM instead of living on with the image's lock.
const daemon = spawn(process.execPath, [statefsdJs, '--image', image, '--create-size', '256MiB', '--socket', socket, '--policy', policy, '--audit', audit], { stdio: ['inherit', 'inherit', 'pipe', 'ipc'] });
daemon.channel?.unref();
const forward = (signal) => daemon.kill(signal);
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, forward);
// npm, which runs this, killed outright (kill -9) leaves this process orphaned, its parent
// changed: close the daemon's IPC channel, on which it stops as on SIGTERM (and at any stage of
// its start, where a signal would cut its open short), rather than serve on with nobody to stop it.
setInterval(() => {
  if (process.ppid !== parent && daemon.connected) daemon.disconnect();
}, 250).unref();
let ready = false;
let lastError;
createInterface({ input: daemon.stderr, crlfDelay: Infinity }).on('line', (line) => {
  process.stderr.write(`${line}\n`);
  let entry;
  try {
    entry = JSON.parse(line);
  } catch {
    return; // not a log line (a crash's stack trace, say): passed through above
  }
  if (typeof entry?.msg !== 'string') return;
  if (entry.level >= 50) lastError = entry.msg;
  if (!ready && entry.msg.startsWith('listening on ')) {
    ready = true;
    process.stdout.write(`${banner}\n`);
  }
});
daemon.on('close', (code, signal) => {
  if (!ready) {
    const status = signal === null ? `exit status ${code}` : signal;
    const busy = lastError?.includes('EBUSY') ? '\nIs another `npm start` (or statefsd) running on this image? Stop it first.' : '';
    process.stderr.write(`\nstatefsd did not start (${status}): ${lastError ?? 'see its output above'}${busy}\n`);
  }
  if (signal !== null) {
    // Die of the same signal, as the daemon did, so whoever started us sees it too.
    for (const s of ['SIGINT', 'SIGTERM']) process.off(s, forward);
    process.kill(process.pid, signal);
  }
  process.exit(code ?? 128 + (constants.signals[signal] ?? 0));
});
