import type { Command } from 'commander';
import { defineAction } from '../action.js';
import { requiredOperand, wantsJson } from '../command-input.js';
import { writeJson, writeLines } from '../output.js';
import { readValueFile } from '../read-value.js';
import { addSessionOptions, withSession, type StoreLike } from '../store-session.js';
import { decodeTxnOps, type TxnFileOp } from '../txn-ops.js';

/** An ops file is read up to this size (a transaction's 32 values of 64 KiB, escaped in JSON, fit). */
const MAX_TXN_FILE_BYTES = 16 * 1024 * 1024;

export function addTxnCommand(program: Command): void {
  const cmd = program
    .command('txn')
    .description('apply a JSON array of put/del ops as one transaction: all or nothing')
    .argument('<subject>', 'subject name')
    .argument('<ops>', 'ops file, or - for stdin: [{"op":"put","key":...,"value"|"valueBase64":...},{"op":"del","key":...}]')
    .option('--json', 'print a JSON object');
  addSessionOptions(cmd);
  defineAction(cmd, async () => {
    const subject = requiredOperand(cmd, 0);
    const file = requiredOperand(cmd, 1);
    // Read and check the whole file before opening the image: a bad file touches nothing.
    const ops = decodeTxnOps(await readValueFile(file, 'txn', MAX_TXN_FILE_BYTES), file === '-' ? 'stdin' : file, subject);
    await withSession(cmd, 'write', (store) => applyOps(store, subject, ops));
    if (wantsJson(cmd)) writeJson({ ok: true, ops: ops.length });
    else writeLines([`committed ${ops.length} ops`]);
  });
}

/** Buffer every op in one transaction, then commit; on a failure before commit, abort and rethrow. */
async function applyOps(store: StoreLike, subject: string, ops: readonly TxnFileOp[]): Promise<void> {
  const tx = store.begin(subject);
  try {
    for (const o of ops) {
      if (o.op === 'put') await tx.put(o.subject, o.key, o.value);
      else await tx.delete(o.subject, o.key);
    }
  } catch (err) {
    // The op's error is the one to report; an abort failure would only hide it.
    await tx.abort().catch(() => undefined);
    throw err;
  }
  // A failed commit finishes the transaction itself (nothing written), so there is nothing to abort.
  await tx.commit();
}
