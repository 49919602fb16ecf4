import { once } from 'node:events';
import { createConnection, type Socket } from 'node:net';

/**
 * Connect to the daemon at `socket`, never read, send `frames` in one write, and wait a second:
 * how much this process's array buffers grew meanwhile (the daemon runs in it), and the
 * connection, for the caller to destroy.
 */
export async function bufferedForSilentPeer(socket: string, frames: Uint8Array[]): Promise<{ grew: number; raw: Socket }> {
  const raw = createConnection(socket);
  raw.pause(); // never reads
  await once(raw, 'connect');
  const before = process.memoryUsage().arrayBuffers;
  raw.write(Buffer.concat(frames));
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  return { grew: process.memoryUsage().arrayBuffers - before, raw };
}
