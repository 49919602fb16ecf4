// Bytes a directory or file really occupies on disk (allocated blocks, so a sparse image counts
// only what is written), and fsync of a finished copy.
import { lstat, open, readdir } from 'node:fs/promises';
import { join } from 'node:path';

export async function allocatedBytes(path: string): Promise<number> {
  const st = await lstat(path);
  if (!st.isDirectory()) return st.blocks * 512;
  let total = 0;
  for (const name of await readdir(path)) total += await allocatedBytes(join(path, name));
  return total;
}

/** fdatasync a file, so a copy counts as persistent only once it is on disk. */
export async function syncFile(path: string): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.datasync();
  } finally {
    await fh.close();
  }
}
