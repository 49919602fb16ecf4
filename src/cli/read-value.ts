import { readFile } from 'node:fs/promises';
import { buffer } from 'node:stream/consumers';
import { StatefsError } from '../errors.js';

/** The bytes of `path`, or of stdin for `-`; `op` names the command in errors. */
export async function readValueFile(path: string, op: string): Promise<Uint8Array> {
  if (path === '-') return buffer(process.stdin);
  try {
    return await readFile(path);
  } catch (err) {
    const code = typeof err === 'object' && err !== null && 'code' in err ? err.code : undefined;
    if (code === 'ENOENT') throw StatefsError.ENOENT(`file ${path}`, { op, cause: err });
    throw StatefsError.EIO(err instanceof Error ? err.message : String(err), { op, cause: err });
  }
}
