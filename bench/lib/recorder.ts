// What one child job hands back to the orchestrator: named figures (one value per repetition)
// and notes (how a figure was obtained). Written as JSON to the file the orchestrator names.
import { readFile, writeFile } from 'node:fs/promises';

export interface JobResult {
  figures: Record<string, number[]>;
  notes: Record<string, string>;
}

export class Recorder {
  private readonly result: JobResult = { figures: {}, notes: {} };

  add(name: string, value: number): void {
    (this.result.figures[name] ??= []).push(value);
  }

  note(name: string, text: string): void {
    this.result.notes[name] = text;
  }

  /** Peak resident set size of this process so far, in bytes. */
  recordPeakRss(name: string): void {
    this.add(name, process.resourceUsage().maxRSS * 1024);
  }

  async save(path: string): Promise<void> {
    await writeFile(path, JSON.stringify(this.result));
  }
}

function isRecordOf<T>(value: unknown, isItem: (item: unknown) => item is T): value is Record<string, T> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && Object.values(value).every(isItem);
}

const isNumberArray = (v: unknown): v is number[] => Array.isArray(v) && v.every((x) => typeof x === 'number');
const isString = (v: unknown): v is string => typeof v === 'string';

export async function readJobResult(path: string): Promise<JobResult> {
  const parsed: unknown = JSON.parse(await readFile(path, 'utf8'));
  if (typeof parsed !== 'object' || parsed === null) throw new Error(`${path}: not a job result`);
  const figures: unknown = Reflect.get(parsed, 'figures');
  const notes: unknown = Reflect.get(parsed, 'notes');
  if (!isRecordOf(figures, isNumberArray) || !isRecordOf(notes, isString)) throw new Error(`${path}: not a job result`);
  return { figures, notes };
}
