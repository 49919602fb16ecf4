import type { CommitMode } from '../../engine/commit-mode.js';
import type { GcResult } from '../../engine/compactor.js';
import type { OpenOptions, ValueReads } from '../../engine/store-types.js';
import { existsSync } from 'node:fs';
import { chmod, lstat, rm, stat } from 'node:fs/promises';
import { createConnection, createServer, isIP, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { Store } from '../../engine/store.js';
import { StatefsError } from '../../errors.js';
import { AuditLog } from '../audit/audit-log.js';
import { formatAuditHead } from '../audit/verify.js';
import { loadPolicy } from '../policy/policy-file.js';
import type { Policy } from '../policy/policy.js';
import { Connection, toStatefsError } from './connection.js';
import { ImageGate } from './image-gate.js';
import { errorResponse } from '../protocol/response-codec.js';

export interface DaemonOptions {
  imagePath: string;
  socketPath: string;
  policyPath: string;
  auditPath: string;
  /** Create the image with this many bytes when it does not exist. */
  createSize?: number;
  /** Also listen on TCP, loopback only (127.0.0.0/8 or ::1); port 0 picks a free port. */
  listen?: { host: string; port: number };
  maxConnections?: number;
  maxInFlight?: number;
  /** Where the store's group commits wait for the disk (default `auto`, see `CommitMode`). */
  commitMode?: CommitMode;
  /** When the store reads the values its checkpoint holds (default `at-open`, see `OpenOptions.valueReads`). */
  valueReads?: ValueReads;
  /** Close connections idle this long (default 5 min). */
  idleTimeoutMs?: number;
  /** Refuse a frame not complete this long after its first byte (default 10 s). */
  frameTimeoutMs?: number;
  /** Marker lines of the store (spec section 9). */
  onMarker?: (line: string) => void;
  /** Diagnostics (default: none). */
  log?: (message: string) => void;
}

export interface Daemon {
  close(): Promise<void>;
  /** The TCP port the daemon listens on, when asked to (`options.listen`). */
  readonly tcpPort: number | undefined;
  /**
   * Load the policy file again (SIGHUP in statefsd): tokens, rights, grants and quotas apply to
   * the next request. An invalid file keeps the old policy and rejects. Audited either way.
   */
  reloadPolicy(): Promise<void>;
}

const DEFAULT_MAX_CONNECTIONS = 256;
const DEFAULT_MAX_IN_FLIGHT = 128;

/**
 * `grants[caller]`: the owners whose snapshots `caller` may mount, from the policy: a grant with
 * both `mount` and `read` (a mount is a way to read the owner's snapshot; policy.md).
 */
function mountGrants(policy: Policy): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [subject, entry] of policy.subjects) {
    const owners = entry.grants.filter((g) => g.rights.includes('mount') && g.rights.includes('read')).map((g) => g.owner);
    if (owners.length > 0) out[subject] = owners;
  }
  return out;
}

/** Each subject's quota from the policy. */
function quotas(policy: Policy): Record<string, { soft: number; hard: number }> {
  const out: Record<string, { soft: number; hard: number }> = {};
  for (const [subject, entry] of policy.subjects) if (entry.quota !== undefined) out[subject] = entry.quota;
  return out;
}

/** Store options the policy decides: mount grants and quotas. */
function storeOptions(policy: Policy): OpenOptions {
  return { grants: mountGrants(policy), quotas: quotas(policy) };
}

/** Options of every open of the image: the policy's, and the daemon's own engine settings. */
function openOptions(options: DaemonOptions, policy: Policy): OpenOptions {
  return {
    ...storeOptions(policy),
    ...(options.commitMode === undefined ? {} : { commitMode: options.commitMode }),
    ...(options.valueReads === undefined ? {} : { valueReads: options.valueReads }),
  };
}

async function openStore(options: DaemonOptions, policy: Policy): Promise<Store> {
  if (options.createSize !== undefined && !existsSync(options.imagePath)) {
    return Store.create(options.imagePath, { size: options.createSize, ...openOptions(options, policy) });
  }
  return Store.open(options.imagePath, openOptions(options, policy));
}

/**
 * `ENOENT` when the socket's directory does not exist (`listen` says EACCES for it). `EEXIST` when
 * something other than a socket is at the socket path: it is never removed (a typo that names the
 * image, the policy or any file of the user's must not cost that file).
 */
async function checkSocketPath(path: string): Promise<void> {
  const dir = dirname(path);
  const missing = await stat(dir).then(
    () => false,
    (err: unknown) => typeof err === 'object' && err !== null && 'code' in err && err.code === 'ENOENT',
  );
  if (missing) throw StatefsError.ENOENT(`directory ${dir} of --socket ${path}`, { op: 'listen' });
  const found = await lstat(path).catch(() => undefined);
  if (found !== undefined && !found.isSocket()) {
    throw StatefsError.EEXIST(`a file that is not a socket, at --socket ${path},`, { op: 'listen' });
  }
}

/** Whether something accepts connections on the Unix socket at `path`. */
export function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => {
      resolve(false);
    });
  });
}

/** Removes a socket file no daemon answers on; EBUSY when one does. */
async function clearStaleSocket(path: string): Promise<void> {
  await checkSocketPath(path);
  if (!existsSync(path)) return;
  if (await socketAnswers(path)) throw StatefsError.EBUSY(`a daemon is already listening on ${path}`, { op: 'listen' });
  await rm(path, { force: true });
}

function tcpPortOf(server: Server | undefined): number | undefined {
  const address = server?.address();
  return typeof address === 'object' && address !== null ? address.port : undefined;
}

/** Only loopback addresses: the daemon's tokens travel in the clear. */
function checkLoopback(host: string): void {
  const v = isIP(host);
  const loopback = (v === 4 && host.startsWith('127.')) || (v === 6 && (host === '::1' || host === '0:0:0:0:0:0:0:1'));
  if (!loopback) throw StatefsError.EINVAL(`--listen ${host}: only a loopback address (127.0.0.0/8 or ::1) is allowed`, { op: 'listen' });
}

function listen(server: Server, where: string | { host: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(typeof where === 'string' ? { path: where } : { host: where.host, port: where.port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/**
 * Listen on a Unix socket created with mode 0600: the umask is narrowed while `bind` creates it
 * (a chmod after `listen` would leave a window in which anyone may connect).
 */
async function listenPrivately(server: Server, path: string): Promise<void> {
  let previous: number | undefined;
  try {
    previous = process.umask(0o177);
  } catch {
    previous = undefined; // a worker thread may not set the umask: chmod right after instead
  }
  try {
    await listen(server, path);
  } finally {
    if (previous !== undefined) process.umask(previous);
  }
  if (previous === undefined) await chmod(path, 0o600);
}

/** Opens the image and serves it on a Unix socket until `close()`. */
export async function startDaemon(options: DaemonOptions): Promise<Daemon> {
  const log = options.log ?? ((): void => undefined);
  if (options.listen !== undefined) checkLoopback(options.listen.host);
  await checkSocketPath(options.socketPath); // before the image is opened: fail without touching it
  let policy = await loadPolicy(options.policyPath);
  const audit = await AuditLog.open(options.auditPath);
  const onMarker = (line: string): void => {
    options.onMarker?.(line);
  };
  const store = await openStore(options, policy).catch(async (err: unknown) => {
    await audit.close();
    throw err;
  });
  /** GC cycles the store ran of itself are administrative acts too (spec 6: the audit log records gc cycles). */
  const onGc = (result: GcResult): void => {
    audit.append({ subject: '(daemon)', op: 'GC', result: 'OK', detail: { freedBytes: result.freedBytes, movedBytes: result.movedBytes } }).catch((err: unknown) => {
      log(`audit of a GC cycle failed: ${toStatefsError(err).message}`);
    });
  };
  store.on('marker', onMarker);
  store.on('gc', onGc);
  /**
   * Mounts whose grant the policy no longer gives are removed, each audited as it happens (a
   * failure too, which leaves the rest for the next policy load or start).
   */
  const unmountUngranted = async (s: Store): Promise<void> => {
    try {
      await s.unmountUngranted(async (m) => {
        await audit.append({ subject: '(daemon)', op: 'UMOUNT', target: `${m.caller}:${m.path}`, result: 'OK', detail: `no grant on ${m.owner} any more` });
        log(`unmounted ${m.caller}:${m.path} (${m.owner}/${m.name}): the policy no longer grants it`);
      });
    } catch (err) {
      const e = toStatefsError(err);
      await audit.append({ subject: '(daemon)', op: 'UMOUNT', result: e.code, detail: `unmounting what the policy no longer grants: ${e.message.slice(0, 160)}` }).catch(() => undefined);
      log(`unmounting what the policy no longer grants failed: ${e.message}`);
      throw e;
    }
  };
  try {
    await unmountUngranted(store);
  } catch (err) {
    await store.close();
    await audit.close();
    throw toStatefsError(err);
  }
  const image = new ImageGate(store, async () => {
    const reopened = await Store.open(options.imagePath, openOptions(options, policy));
    try {
      reopened.setAccess(storeOptions(policy)); // a policy reloaded while the image replayed
      reopened.on('marker', onMarker);
      reopened.on('gc', onGc);
      await unmountUngranted(reopened);
      return reopened;
    } catch (err) {
      await reopened.close().catch(() => undefined); // it must not keep the image locked
      throw err;
    }
  });
  const inFlight = new Set<Promise<void>>();
  const connections = new Set<Connection>();
  const maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  let closing = false;
  const host = {
    use: <T>(fn: (s: Store) => Promise<T>): Promise<T> => image.use(fn),
    useNow: <T>(fn: (s: Store) => Promise<T>): Promise<T> | undefined => image.useNow(fn),
    ready: (): Store | undefined => image.ready(),
    reopen: async (): Promise<void> => {
      try {
        await image.reopen();
        log('image reopened');
      } catch (err) {
        log(`reopen failed, every request gets its error until a reopen succeeds: ${toStatefsError(err).message}`);
        throw err;
      }
    },
  };
  const ctx = {
    host,
    audit,
    policy: (): Policy => policy,
    maxInFlight: options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT,
    idleTimeoutMs: options.idleTimeoutMs ?? 5 * 60_000,
    frameTimeoutMs: options.frameTimeoutMs ?? 10_000,
    closing: (): boolean => closing,
    track: (work: Promise<void>): void => {
      inFlight.add(work);
      void work.finally(() => inFlight.delete(work));
    },
    log,
  };
  const accept = (socket: Socket): void => {
    socket.on('error', (err) => {
      log(`connection error: ${err.message}`);
    });
    if (closing || connections.size >= maxConnections) {
      // Refuse: answer, then read and drop whatever the peer sends so that its end is seen and the
      // socket closes (unread, it would stay open and hold close() forever); a peer that never
      // closes its side is cut off after a second.
      socket.resume();
      socket.end(errorResponse(0, undefined, StatefsError.EAGAIN(`more than ${maxConnections} connections`, { op: 'connect' })));
      setTimeout(() => socket.destroy(), 1000).unref();
      return;
    }
    const conn = new Connection(socket, ctx);
    connections.add(conn);
    socket.on('close', () => connections.delete(conn));
  };
  // Half-open: a peer may close its side after its last request and still read every answer.
  const server = createServer({ allowHalfOpen: true }, accept);
  const tcp = options.listen === undefined ? undefined : createServer({ allowHalfOpen: true }, accept);
  server.on('error', (err) => {
    log(`server error: ${err.message}`);
  });
  try {
    await clearStaleSocket(options.socketPath);
    await listenPrivately(server, options.socketPath);
    if (tcp !== undefined && options.listen !== undefined) await listen(tcp, options.listen);
  } catch (err) {
    server.close();
    tcp?.close();
    await image.close();
    await audit.close();
    throw toStatefsError(err);
  }
  log(`listening on ${options.socketPath}${tcp === undefined ? '' : ` and on TCP port ${String(tcpPortOf(tcp))} of ${options.listen?.host ?? ''}`}`);
  let closed: Promise<void> | undefined;
  const shutdown = async (): Promise<void> => {
    closing = true;
    const stopped = new Promise<void>((resolve) => server.close(() => { resolve(); }));
    const tcpStopped = tcp === undefined ? Promise.resolve() : new Promise<void>((resolve) => tcp.close(() => { resolve(); }));
    while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
    for (const conn of connections) conn.end();
    await stopped;
    await tcpStopped;
    await image.close();
    await audit.close();
    // Every line is on stable storage now: the head to keep elsewhere (audit.md, `--expect-head`).
    log(`audit log closed, head ${formatAuditHead(audit.head())}`);
    log('closed');
  };
  const reloadPolicy = async (): Promise<void> => {
    let next: Policy;
    try {
      next = await loadPolicy(options.policyPath);
    } catch (err) {
      const e = toStatefsError(err);
      await audit.append({ subject: '(daemon)', op: 'POLICY_RELOAD', result: e.code, detail: e.message.slice(0, 200) }).catch(() => undefined);
      log(`policy reload failed, keeping the old one: ${e.message}`);
      throw e;
    }
    policy = next;
    // Connections whose token the new policy does not hold end now (their transactions abort).
    for (const conn of connections) if (conn.tokenRevoked(next)) conn.revoke();
    const current = image.current();
    current?.setAccess(storeOptions(next));
    await audit.append({ subject: '(daemon)', op: 'POLICY_RELOAD', result: 'OK' });
    log('policy reloaded');
    // In force from here; mounts it no longer grants go next (a failure is audited and logged).
    if (current !== undefined) await unmountUngranted(current);
  };
  return {
    close: (): Promise<void> => (closed ??= shutdown()),
    tcpPort: tcpPortOf(tcp),
    reloadPolicy,
  };
}
