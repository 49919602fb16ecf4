import { InvalidArgumentError, Option, type Command } from 'commander';
import pino from 'pino';
import { COMMIT_MODES, type CommitMode } from '../engine/commit-mode.js';
import { VALUE_READS, type ValueReads } from '../engine/store-types.js';
import { startDaemon, type Daemon } from '../server/daemon/daemon.js';
import { EXIT_UNAVAILABLE } from './exit-codes.js';
import { failureLine } from './output.js';
import { parseCount, parseSize } from './parse-number.js';

/** The daemon's command line, shared by `statefsd` and `statefs serve`. */
export interface DaemonArgs {
  image: string;
  socket: string;
  policy: string;
  audit: string;
  createSize?: number;
  listen?: { host: string; port: number };
  maxConnections?: number;
  maxInFlight?: number;
  commitMode?: CommitMode;
  valueReads?: ValueReads;
}

/** `127.0.0.1:7400` or `[::1]:7400`; the daemon itself refuses non-loopback hosts. */
function parseListen(text: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(text);
  const port = Number(m?.[2]);
  if (m?.[1] === undefined || !Number.isInteger(port) || port > 65_535) {
    throw new InvalidArgumentError('use host:port, e.g. 127.0.0.1:7400');
  }
  return { host: m[1], port };
}

/** The daemon's options, on `statefsd` itself or on `statefs serve`. */
export function addDaemonOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--image <path>', 'image file')
    .requiredOption('--socket <path>', 'Unix socket to listen on (mode 0600)')
    .requiredOption('--policy <file>', 'policy file (subjects, token hashes, rights, grants)')
    .requiredOption('--audit <file>', 'audit log (append-only JSON lines)')
    .option('--create-size <size>', 'create the image with this size when it does not exist', parseSize)
    .option('--listen <host:port>', 'also listen on loopback TCP (127.0.0.0/8 or ::1 only)', parseListen)
    .option('--max-connections <n>', 'connections at once; more are refused with EAGAIN (default 256)', parseCount)
    .option('--max-in-flight <n>', 'requests in flight per connection; more are refused with EAGAIN (default 128)', parseCount)
    .addOption(
      new Option('--commit-mode <mode>', 'where group commits wait for the disk: the event loop (inline), the I/O thread pool (background), or inline while commits take under 1 ms (auto)')
        .choices(COMMIT_MODES)
        .default('auto'),
    )
    .addOption(
      new Option('--value-reads <when>', 'when the values the checkpoint holds are read: all while the image opens (at-open), or from the image each time one is asked for (on-demand: a faster open, less memory, slower reads of them)')
        .choices(VALUE_READS)
        .default('at-open'),
    );
}

/**
 * Run the daemon until SIGTERM or SIGINT, or until the IPC channel of the process that started
 * it closes (drain, sync, close, exit 0); SIGHUP reloads the policy. Logs are JSON lines on
 * stderr (pino), marker lines go to stdout. A daemon that cannot start logs why, then writes the CLI's `statefs: CODE: message` line for a human (the last line
 * on stderr), and leaves exit status EXIT_UNAVAILABLE (69).
 */
export async function serve(args: DaemonArgs): Promise<void> {
  // Written synchronously, as Node writes its own stderr to a pipe. Written asynchronously, the
  // log is flushed by pino at exit, and when its reader is gone (EPIPE: the launcher of
  // `npm start` killed) sonic-boom 4 retries that flush forever: the daemon, closed already,
  // never exited. A synchronous write finds the EPIPE at once, and pino stops writing there.
  const stderr = pino.destination({ dest: 2, sync: true });
  const logger = pino({ base: { name: 'statefsd', pid: process.pid } }, stderr);
  const log = (message: string): void => {
    logger.info(message);
  };
  const logError = (message: string): void => {
    logger.error(message);
  };
  // Started by a supervisor with an IPC channel (`npm start`: scripts/quickstart.mjs): the channel
  // closes when that process ends, however it ends (kill -9 included), and the daemon then stops
  // as on SIGTERM instead of living on, unseen, with the image's lock; if it closes while the
  // image is still opening, the daemon stops once it is open. The channel alone does not keep
  // the daemon running.
  let supervisorGone = false;
  let onSupervisorGone = (): void => {
    supervisorGone = true;
  };
  if (process.send !== undefined) {
    process.channel?.unref();
    if (!process.connected) supervisorGone = true;
    process.on('disconnect', () => {
      onSupervisorGone();
    });
  }
  let daemon: Daemon;
  try {
    daemon = await startDaemon({
      imagePath: args.image,
      socketPath: args.socket,
      policyPath: args.policy,
      auditPath: args.audit,
      ...(args.createSize === undefined ? {} : { createSize: args.createSize }),
      ...(args.listen === undefined ? {} : { listen: args.listen }),
      ...(args.maxConnections === undefined ? {} : { maxConnections: args.maxConnections }),
      ...(args.maxInFlight === undefined ? {} : { maxInFlight: args.maxInFlight }),
      ...(args.commitMode === undefined ? {} : { commitMode: args.commitMode }),
      ...(args.valueReads === undefined ? {} : { valueReads: args.valueReads }),
      onMarker: (line) => {
        process.stdout.write(`${line}\n`);
      },
      log,
    });
  } catch (err) {
    logError(`cannot start: ${err instanceof Error ? err.message : String(err)}`);
    // Through the log's own stream, so the line lands after the log's.
    stderr.write(failureLine(err));
    process.exitCode = EXIT_UNAVAILABLE;
    return;
  }
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: draining and closing`);
    daemon.close().then(
      () => {
        process.exit(0);
      },
      (err: unknown) => {
        logError(`close failed: ${err instanceof Error ? err.message : String(err)}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => {
    stop('SIGTERM');
  });
  process.on('SIGINT', () => {
    stop('SIGINT');
  });
  onSupervisorGone = () => {
    stop('supervisor gone (IPC channel closed)');
  };
  if (supervisorGone) onSupervisorGone(); // it went while the image was opening
  process.on('SIGHUP', () => {
    log('SIGHUP: reloading the policy');
    daemon.reloadPolicy().catch(() => undefined); // logged and audited by the daemon
  });
}
