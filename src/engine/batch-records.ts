import { Op } from '../format/opcodes.js';
import { encodeRunInto, planRuns } from '../format/put-run.js';
import { recordLength } from '../format/record.js';
import type { RecordToWrite } from './journal-writer.js';
import { EMPTY, recordKey } from './store-support.js';

/**
 * The records of a `putMany` batch, in the order given: runs of small values as PUTRUN records
 * (format/put-run.ts), any other value as a PUT. The runs are encoded into one buffer for the
 * batch, each record's value a view of it. `slices` has three numbers per entry: its lead and
 * slice length (the bytes its value is charged), and which record holds it.
 */
export function batchRecords(subject: string, bins: readonly string[], values: readonly Uint8Array[]): { records: RecordToWrite[]; slices: Int32Array } {
  const records: RecordToWrite[] = [];
  const slices = new Int32Array(3 * bins.length);
  const plans = planRuns(subject.length, bins, values);
  let runBytes = 0;
  for (const plan of plans) runBytes += plan.valueLength;
  const runs = new Uint8Array(runBytes);
  const subjectKey = Buffer.from(subject, 'latin1'); // subjects are ASCII
  let at = 0;
  for (const plan of plans) {
    const r = records.length;
    if (plan.valueLength === 0) {
      const bin = bins[plan.first] ?? '';
      const value = values[plan.first] ?? EMPTY;
      const key = recordKey(subject, bin);
      records.push({ opcode: Op.PUT, key, value });
      slices[3 * plan.first + 1] = recordLength(key.length, value.length);
      slices[3 * plan.first + 2] = r;
      continue;
    }
    encodeRunInto(plan, subject.length, bins, values, runs, at, slices);
    records.push({ opcode: Op.PUTRUN, key: subjectKey, value: runs.subarray(at, at + plan.valueLength) });
    for (let i = plan.first; i < plan.first + plan.count; i++) slices[3 * i + 2] = r;
    at += plan.valueLength;
  }
  return { records, slices };
}
