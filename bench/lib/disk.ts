// Bytes a directory or file really occupies on disk (allocated blocks, so a sparse image counts
// only what is written), fsync of a finished copy, and a quiet disk before each job.
import { execFileSync } from 'node:child_process';
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

/**
 * Write back every dirty page of the machine (`sync`) before a job starts, so the write-back of
 * the job before (a peer's 200 MB file, a removed directory) does not land on this job's durable
 * writes: the GC job's worst put was once 343 ms, its GC-off run's throughput a third lower, right
 * after the better-sqlite3 jobs, and 12–18 ms in every run alone.
 */
export function settleDisk(): void {
  execFileSync('sync');
}
