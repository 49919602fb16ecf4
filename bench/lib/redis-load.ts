// redis-server 7 with the AOF fsynced on every write (appendonly yes, appendfsync always), on
// 127.0.0.1, started and stopped here; N clients of the `redis` npm client doing SET then GET.
// Skipped when redis-server is not on PATH.
import { spawn, spawnSync } from 'node:child_process';
import { connect as tcpConnect, createServer } from 'node:net';
import { fail, putThenGet, retry } from './client-load.js';
import { benchValues } from './keys.js';
import { hasMethods, peerExport } from './peer-require.js';
import type { LatencySummary } from './stats.js';

interface RedisClient {
  connect(): Promise<unknown>;
  set(key: string, value: Buffer): Promise<unknown>;
  get(key: string): Promise<unknown>;
  close(): Promise<unknown>;
  on(event: 'error', listener: (err: unknown) => void): unknown;
}

type CreateClient = (options: { socket: { host: string; port: number } }) => RedisClient;

function isCreateClient(value: unknown): value is CreateClient {
  return typeof value === 'function';
}

const CLIENT_METHODS = ['connect', 'set', 'get', 'close', 'on'];

function isRedisClient(value: unknown): value is RedisClient {
  return hasMethods(value, CLIENT_METHODS);
}

/** The redis-server version line, or undefined when it is not on PATH. */
export function redisServerVersion(): string | undefined {
  const r = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === 'string') throw new Error('no TCP port');
  return address.port;
}

function portAccepts(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve();
    });
    socket.once('error', reject);
  });
}

export const REDIS_CONFIG = 'appendonly yes, appendfsync always, RDB saves off, bind 127.0.0.1';

export async function redisLoad(dir: string, clients: number, seconds: number): Promise<{ put: LatencySummary; get: LatencySummary }> {
  const createClient = peerExport('redis', 'createClient');
  if (!isCreateClient(createClient)) throw new Error('redis: the module has no createClient()');
  const port = await freePort();
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--daemonize', 'no'];
  const server = spawn('redis-server', args, { stdio: 'ignore' });
  const exited = new Promise((resolve) => server.on('exit', resolve));
  const stop = (): void => {
    server.kill('SIGTERM');
  };
  process.once('exit', stop); // if this process is stopped mid-run
  const connected: RedisClient[] = [];
  try {
    await retry(100, 50, () => portAccepts(port));
    for (let c = 0; c < clients; c++) {
      const client: unknown = createClient({ socket: { host: '127.0.0.1', port } });
      if (!isRedisClient(client)) throw new Error(`redis: a client lacks one of ${CLIENT_METHODS.join(', ')}`);
      client.on('error', () => undefined); // failures surface through the awaited calls
      await client.connect();
      connected.push(client);
    }
    const client = (c: number): RedisClient => connected[c] ?? fail('no client');
    const value = Buffer.from(benchValues()(0)); // the client takes string | Buffer only
    return await putThenGet(
      clients,
      seconds,
      (c, key) => client(c).set(key, value),
      (c, key) => client(c).get(key),
    );
  } finally {
    await Promise.all(connected.map((c) => c.close().catch(() => undefined)));
    process.off('exit', stop);
    stop();
    await exited;
  }
}
