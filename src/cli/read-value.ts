import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { StatefsError } from '../errors.js';

/**
 * The bytes of `path`, or of stdin for `-`; `op` names the command in errors. Reading stops at
 * `most` bytes: more is `EFBIG` at once (`put --file /dev/zero` read until memory ran out).
 */
export async function readValueFile(path: string, op: string, most: number): Promise<Uint8Array> {
  const input: Readable = path === '-' ? process.stdin : createReadStream(path);
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of input) {
      if (!(chunk instanceof Buffer)) throw StatefsError.EIO(`reading ${path} gave text, not bytes`, { op });
      total += chunk.length;
      if (total > most) throw StatefsError.EFBIG(`${path === '-' ? 'stdin' : path} holds more than ${String(most)} bytes`, { op });
      chunks.push(chunk);
    }
  } catch (err) {
    if (err instanceof StatefsError) throw err;
    const code = typeof err === 'object' && err !== null && 'code' in err ? err.code : undefined;
    if (code === 'ENOENT') throw StatefsError.ENOENT(`file ${path}`, { op, cause: err });
    throw StatefsError.EIO(err instanceof Error ? err.message : String(err), { op, cause: err });
  } finally {
    if (path !== '-') input.destroy();
  }
  return Buffer.concat(chunks, total);
}
