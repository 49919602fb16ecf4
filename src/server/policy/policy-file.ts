import { randomBytes } from 'node:crypto';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { StatefsError } from '../../errors.js';
import { parsePolicy, policyDocument, type Policy } from './policy.js';

/** The policy file's mode: it holds no clear tokens, but nobody else needs to read it. */
const POLICY_MODE = 0o600;

function errnoCode(err: unknown): string | undefined {
  return err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

/** Read and validate a policy file: `ENOENT` if missing, `EINVAL` (naming the JSON path) if invalid. */
export async function loadPolicy(path: string): Promise<Policy> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT') throw StatefsError.ENOENT(`policy file ${path}`, { op: 'policy.load', name: path, cause: err });
    if (code === 'EACCES' || code === 'EPERM') throw StatefsError.EPERM(`cannot read policy file ${path}`, { op: 'policy.load', name: path, cause: err });
    throw StatefsError.EIO(`reading policy file ${path}: ${err instanceof Error ? err.message : String(err)}`, { op: 'policy.load', name: path, cause: err });
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw StatefsError.EINVAL(`policy file ${path} is not JSON: ${err instanceof Error ? err.message : String(err)}`, { op: 'policy.load', name: path });
  }
  return parsePolicy(doc);
}

/**
 * Replace the policy file atomically: the policy is checked, written to a temporary file (mode
 * 0600) in the same directory, fsynced and renamed over the old one, and the directory is fsynced
 * so the rename itself survives a crash. A reader sees the old file or the new one, never a mix.
 */
export async function savePolicy(path: string, policy: Policy): Promise<void> {
  const doc = policyDocument(policy);
  parsePolicy(doc); // never write a file that loadPolicy would refuse
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${String(process.pid)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(temp, 'wx', POLICY_MODE);
  try {
    try {
      await fh.chmod(POLICY_MODE); // exactly 0600, whatever the umask
      await fh.writeFile(`${JSON.stringify(doc, null, 2)}\n`, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(temp, path);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  const dh = await open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}
