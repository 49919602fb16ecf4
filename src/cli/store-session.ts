import { Option, type Command } from 'commander';
import { connect } from '../client/client.js';
import type { GcPlan, GcResult } from '../engine/compactor.js';
import { Store } from '../engine/store.js';
import type { ListOptions, ListPage, MountInfo, OpenOptions, SnapshotDiff, SnapshotInfo, SnapshotPin, StoreStat } from '../engine/store-types.js';
import { stringOption } from './command-input.js';
import { parseConnectTarget, type ConnectAddress } from './connect-target.js';
import { EXIT_USAGE } from './exit-codes.js';

/** `read` opens read-only and takes no lock, so it works beside a running writer. */
export type Access = 'read' | 'write';

/** Open options a command may add to the ones its access implies (they apply to `--image` only). */
interface SessionOptions {
  grants?: NonNullable<OpenOptions['grants']>;
  /** `false`: no background GC cycles, so the command's own cycles are the only ones. */
  autoGc?: boolean;
  /**
   * Called with each marker line the embedded store emits, from open until close. Over
   * `--connect` the markers are the daemon's (on its stdout): this is never called.
   */
  onMarker?: (line: string) => void;
}

/** A transaction as the commands use it: both the engine's and the client's buffered one. */
export interface TxnLike {
  put(subject: string, key: string, value: Uint8Array | string): Promise<void>;
  delete(subject: string, key: string): Promise<void>;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

/** What the commands call: offered alike by the embedded `Store` and by the daemon `Client`. */
export interface StoreLike {
  put(subject: string, key: string, value: Uint8Array | string): Promise<void>;
  get(subject: string, key: string): Promise<Uint8Array | undefined>;
  delete(subject: string, key: string): Promise<void>;
  list(subject: string, prefix?: string, options?: ListOptions): Promise<ListPage>;
  begin(subject: string): TxnLike;
  snapshot(subject: string, name: string): Promise<void>;
  listSnaps(subject: string): Promise<string[]>;
  listSnaps(subject: string, options: { details: true }): Promise<SnapshotInfo[]>;
  deleteSnap(subject: string, name: string): Promise<void>;
  restoreSnap(subject: string, name: string): Promise<void>;
  diffSnaps(subject: string, a: string, b: string): Promise<SnapshotDiff>;
  verifySnapshot(subject: string, name: string): Promise<string>;
  mountSnap(caller: string, owner: string, name: string, mountPath: string): Promise<void>;
  umount(caller: string, mountPath: string): Promise<void>;
  listMounts(caller: string): Promise<MountInfo[]>;
  gcNow(options?: { maxBytes?: number }): Promise<GcResult>;
  gcPlan(options?: { maxBytes?: number }): Promise<GcPlan & { pinnedBySnapshots: SnapshotPin[] }>;
  stat(): Promise<StoreStat>;
}

/** Where a command's session goes: an image file opened here, or a running daemon. */
type Target = ImageTarget | DaemonTarget;

interface ImageTarget {
  kind: 'image';
  image: string;
}

interface DaemonTarget {
  kind: 'connect';
  address: ConnectAddress;
  token: string;
}

/** `--image`, `--connect` and `--token` (default: STATEFS_TOKEN), checked before the action runs. */
export function addSessionOptions(cmd: Command): Command {
  return cmd
    .option('--image <path>', 'image file (or --connect)')
    .option('--connect <socket|host:port>', "a running daemon's Unix socket, or host:port of its loopback TCP listener (or --image)")
    .addOption(new Option('--token <t>', 'token for --connect: the caller is its subject').env('STATEFS_TOKEN'))
    .hook('preAction', () => {
      sessionTarget(cmd);
    });
}

function usage(cmd: Command, message: string): never {
  cmd.error(`error: ${message}`, { exitCode: EXIT_USAGE, code: 'statefs.usage' });
}

function sessionTarget(cmd: Command): Target {
  const image = stringOption(cmd, 'image');
  const daemon = stringOption(cmd, 'connect');
  if (image !== undefined && daemon !== undefined) usage(cmd, 'give either --image or --connect, not both');
  if (image !== undefined) return { kind: 'image', image };
  if (daemon === undefined) usage(cmd, "required option '--image <path>' not specified (or --connect <socket|host:port>)");
  const token = stringOption(cmd, 'token');
  if (token === undefined || token === '') usage(cmd, '--connect needs --token <t> or STATEFS_TOKEN');
  return { kind: 'connect', address: parseConnectTarget(daemon), token };
}

/** Whether the command talks to a daemon (`--connect`) rather than opening an image. */
export function viaDaemon(cmd: Command): boolean {
  return sessionTarget(cmd).kind === 'connect';
}

/** Open the image or connect to the daemon, run `use`, and always close. */
export async function withSession<T>(cmd: Command, access: Access, use: (store: StoreLike) => Promise<T>, options: SessionOptions = {}): Promise<T> {
  const target = sessionTarget(cmd);
  if (target.kind === 'connect') {
    const client = await connect({ ...target.address, token: target.token });
    try {
      return await use(client);
    } finally {
      await client.close();
    }
  }
  const { onMarker, ...open } = options;
  const store = await Store.open(target.image, { ...open, ...(access === 'read' ? { readOnly: true } : {}) });
  try {
    if (onMarker !== undefined) {
      store.on('marker', (line: unknown) => {
        onMarker(String(line));
      });
    }
    return await use(store);
  } finally {
    await store.close();
  }
}
