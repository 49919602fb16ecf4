import { Op } from '../format/opcodes.js';
import { encodeRun, planRuns } from '../format/put-run.js';
import { recordLength } from '../format/record.js';
import type { RecordToWrite } from './journal-writer.js';
import { recordKey } from './store-support.js';

/**
 * The records of a `putMany` batch, in the order given: runs of small values as PUTRUN records
 * (format/put-run.ts), any other value as a PUT. `slices` has three numbers per entry: its lead
 * and slice length (the bytes its value is charged), and which record holds it.
 */
export function batchRecords(subject: string, bins: readonly string[], values: readonly Uint8Array[]): { records: RecordToWrite[]; slices: Int32Array } {
  const records: RecordToWrite[] = [];
  const slices = new Int32Array(3 * bins.length);
  const subjectKey = Buffer.from(subject, 'latin1'); // subjects are ASCII
  for (const plan of planRuns(subject.length, bins, values)) {
    const r = records.length;
    if (plan.valueLength === 0) {
      const bin = bins[plan.first] ?? '';
      const value = values[plan.first] ?? new Uint8Array(0);
      const key = recordKey(subject, bin);
      records.push({ opcode: Op.PUT, key, value });
      slices[3 * plan.first + 1] = recordLength(key.length, value.length);
      slices[3 * plan.first + 2] = r;
      continue;
    }
    const run = encodeRun(plan, subject.length, bins, values);
    records.push({ opcode: Op.PUTRUN, key: subjectKey, value: run.value });
    for (let j = 0, at = 3 * plan.first; j < plan.count; j++, at += 3) {
      slices[at] = run.slices[2 * j] ?? 0;
      slices[at + 1] = run.slices[2 * j + 1] ?? 0;
      slices[at + 2] = r;
    }
  }
  return { records, slices };
}
