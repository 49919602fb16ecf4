import { readFile } from 'node:fs/promises';
import { StatefsError } from '../../errors.js';
import { scanAuditLog, ZERO_HASH, type AuditHead } from './audit-record.js';

export interface AuditVerifyResult {
  lines: number;
  head: AuditHead;
}

/** `<seq>:<hash>` as printed by `head()` users and `statefs audit verify`; undefined when malformed. */
export function parseAuditHead(text: string): AuditHead | undefined {
  const match = /^(\d+):([0-9a-f]{64})$/.exec(text.trim());
  const seq = Number(match?.[1]);
  const hash = match?.[2];
  if (hash === undefined || !Number.isSafeInteger(seq)) return undefined;
  return { seq, hash };
}

export function formatAuditHead(head: AuditHead): string {
  return `${head.seq}:${head.hash}`;
}

export async function readAuditFile(path: string, op: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    if (err instanceof Error && 'code' in err && err.code === 'ENOENT') throw StatefsError.ENOENT(`audit log ${path}`, { op, cause: err });
    throw StatefsError.EIO(`reading audit log ${path}`, { op, cause: err });
  }
}

/**
 * Check the whole chain of the audit log at `path`. With `expectHead` (a head recorded earlier),
 * also check that the line with that seq is still there with that hash, which is what detects
 * lines removed from the end. Throws EINTEGRITY naming the 1-based line.
 */
export async function verifyAuditLog(path: string, expectHead?: AuditHead): Promise<AuditVerifyResult> {
  const data = await readAuditFile(path, 'audit verify');
  const scan = scanAuditLog(path, data, expectHead?.seq);
  if (scan.completeBytes < data.length) {
    throw StatefsError.EINTEGRITY(`audit log ${path} line ${scan.lines + 1}: incomplete (no final newline)`, {
      op: 'audit verify',
      offset: scan.completeBytes,
    });
  }
  if (expectHead !== undefined && expectHead.seq > 0) {
    if (scan.wanted === undefined) {
      throw StatefsError.EINTEGRITY(
        `audit log ${path} line ${expectHead.seq}: missing (the log ends at line ${scan.lines}; expected head ${formatAuditHead(expectHead)})`,
        { op: 'audit verify' },
      );
    }
    if (scan.wanted !== expectHead.hash) {
      throw StatefsError.EINTEGRITY(`audit log ${path} line ${expectHead.seq}: head mismatch (hash ${scan.wanted}, expected ${expectHead.hash})`, {
        op: 'audit verify',
      });
    }
  } else if (expectHead !== undefined && expectHead.hash !== ZERO_HASH) {
    throw StatefsError.EINTEGRITY(`audit log ${path}: head mismatch (the head at seq 0 is 64 zeros)`, { op: 'audit verify' });
  }
  return { lines: scan.lines, head: scan.head };
}
