import { createConnection, type Socket } from 'node:net';
import { isStatefsError, StatefsError } from '../errors.js';
import type { Frame } from '../server/protocol/frame.js';
import { FrameReader } from '../server/protocol/frame-reader.js';
import type { OkResponse, Request } from '../server/protocol/messages.js';
import { encodeRequest } from '../server/protocol/request-codec.js';
import { decodeResponse } from '../server/protocol/response-codec.js';

/** A request without its id: the connection numbers requests itself. */
export type Outgoing = Request extends infer R ? (R extends Request ? Omit<R, 'requestId'> : never) : never;

interface Pending {
  resolve: (res: OkResponse) => void;
  reject: (err: StatefsError) => void;
}

const MAX_REQUEST_ID = 0xffff_ffff;
const READ_BUFFER_BYTES = 64 * 1024;

/**
 * The turn of the event loop requests are being sent in, counted by one `nextTick` per turn for
 * every connection of the process (see `WireConnection.#send`), and the uncorks it owes.
 */
const turn = { id: 0, ticking: false, corked: [] as (() => void)[] };

function joinTurn(): number {
  if (!turn.ticking) {
    turn.ticking = true;
    process.nextTick(() => {
      turn.ticking = false;
      turn.id++;
      const corked = turn.corked;
      turn.corked = [];
      // Each in its own try: a connection that failed to uncork must not leave the others corked.
      for (const uncork of corked) {
        try {
          uncork();
        } catch {
          // that connection's socket reports its own error
        }
      }
    });
  }
  return turn.id;
}

/** One pipelined protocol connection: request id → pending promise; responses in any order. */
export class WireConnection {
  readonly #socket: Socket;
  readonly #reader = new FrameReader();
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #failed: StatefsError | undefined;
  /** The turn this connection last sent in (see `#send`). */
  #sentIn = -1;
  /** Whether writes are being gathered until the end of this turn. */
  #corked = false;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('error', (err) => {
      this.#fail(StatefsError.EIO(`daemon connection: ${err.message}`, { op: 'client', cause: err }));
    });
    socket.on('close', () => {
      this.#fail(StatefsError.EBADF('the daemon connection', { op: 'client' }));
    });
  }

  /** Connect to a Unix socket path, or to `{ host, port }` (the daemon's loopback TCP listener). */
  static open(target: string | { host: string; port: number }): Promise<WireConnection> {
    return new Promise((resolve, reject) => {
      // Reads land in one buffer of this connection's, handed straight to the frame reader (no
      // stream events, no buffer per read): frames whole in a read are decoded before the next
      // read reuses the buffer, and the decoders copy what they keep.
      const onread = {
        buffer: Buffer.allocUnsafe(READ_BUFFER_BYTES),
        callback: (n: number, buf: Uint8Array): boolean => {
          conn.#onData(buf.subarray(0, n)); // `conn` is set: reads start only once connected
          return true;
        },
      };
      const socket = typeof target === 'string' ? createConnection({ path: target, onread }) : createConnection({ port: target.port, host: target.host, onread });
      const where = typeof target === 'string' ? target : `${target.host}:${target.port}`;
      const onError = (err: Error): void => {
        const errno = 'code' in err && typeof err.code === 'string' ? err.code : undefined;
        // No socket file, or nothing accepting at it (a stale socket, a closed port): no daemon there.
        const absent = errno === 'ENOENT' || errno === 'ECONNREFUSED';
        reject(StatefsError.EIO(absent ? `no daemon listening at ${where} (${errno})` : `connecting to ${where}: ${err.message}`, { op: 'connect', cause: err }));
      };
      const conn = new WireConnection(socket);
      socket.once('error', onError);
      socket.once('connect', () => {
        socket.off('error', onError);
        resolve(conn);
      });
    });
  }

  request(req: Outgoing): Promise<OkResponse> {
    if (this.#failed !== undefined) return Promise.reject(this.#failed);
    const requestId = this.#nextId;
    this.#nextId = this.#nextId >= MAX_REQUEST_ID ? 1 : this.#nextId + 1;
    let frame: Uint8Array;
    try {
      frame = encodeRequest({ ...req, requestId });
    } catch (err) {
      return Promise.reject(isStatefsError(err) ? err : StatefsError.EINVAL(String(err), { op: 'encode' }));
    }
    return new Promise((resolve, reject) => {
      this.#pending.set(requestId, { resolve, reject });
      this.#send(frame);
    });
  }

  /**
   * A connection's first request in a turn of the event loop is written at once; the ones after it
   * in the same turn are gathered (corked) and leave in one socket write at the turn's `nextTick`:
   * a pipelining caller's requests leave in two socket writes at most, instead of racing the daemon
   * one frame at a time, and a lone request is written straight away (no cork, no tick of its own:
   * one `nextTick` per turn serves every connection). Measured against corking every request with
   * a tick per connection: ~10 µs less client CPU per GET with 64 clients (docs/performance.md).
   */
  #send(frame: Uint8Array): void {
    const now = joinTurn();
    if (this.#sentIn === now && !this.#corked) {
      this.#corked = true;
      this.#socket.cork();
      turn.corked.push(() => {
        this.#corked = false;
        this.#socket.uncork();
      });
    }
    this.#sentIn = now;
    this.#socket.write(frame);
  }

  close(): Promise<void> {
    this.#fail(StatefsError.EBADF('the client', { op: 'client' }));
    return new Promise((resolve) => {
      if (this.#socket.closed) resolve();
      else {
        this.#socket.once('close', () => {
          resolve();
        });
        this.#socket.end();
      }
    });
  }

  #fail(err: StatefsError): void {
    this.#failed ??= err;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(err);
  }

  #onData(chunk: Uint8Array): void {
    let frames: Frame[];
    try {
      frames = this.#reader.push(chunk);
    } catch (err) {
      this.#fail(isStatefsError(err) ? err : StatefsError.EINVAL('bad frame from the daemon', { op: 'client' }));
      this.#socket.destroy();
      return;
    }
    for (const frame of frames) this.#onFrame(frame);
    const failure = this.#reader.failure;
    if (failure !== undefined) {
      this.#fail(failure);
      this.#socket.destroy();
    }
  }

  #onFrame(frame: Frame): void {
    let res;
    try {
      res = decodeResponse(frame);
    } catch (err) {
      this.#fail(isStatefsError(err) ? err : StatefsError.EINVAL('bad response from the daemon', { op: 'client' }));
      this.#socket.destroy();
      return;
    }
    if (res.requestId === 0 && res.status === 'error') {
      this.#fail(res.error); // connection-level: the daemon closes the connection
      return;
    }
    const pending = this.#pending.get(res.requestId);
    if (pending === undefined) return;
    this.#pending.delete(res.requestId);
    if (res.status === 'error') pending.reject(res.error);
    else pending.resolve(res);
  }
}
