import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/**
 * The figures the reliability suites report, in the order `npm run reliability` prints them.
 * Each suite adds to any of these (and may add figures of its own, which the report lists too).
 * `violations` counts broken invariants; a suite records them before it fails on them.
 */
export const FIGURES = ['crashStates', 'reorderings', 'injectedFaults', 'bitFlips', 'killCycles', 'fuzzFrames', 'violations'] as const;

/** One counter file: what one test recorded (other fields, such as a seed, may be present and are ignored). */
export interface FigureFile {
  suite: string;
  /** The mode the test ran in (absent in files written by hand or by older suites). */
  mode?: ReliabilityMode;
  /** The seed the test ran with, when it has one (a figure named `seed` is written here, not summed). */
  seed?: number;
  figures: Record<string, number>;
}

export type ReliabilityMode = 'fast' | 'thorough';

/** `STATEFS_RELIABILITY=thorough` selects the long sweeps; anything else is the fast mode. */
export function reliabilityMode(): ReliabilityMode {
  return process.env.STATEFS_RELIABILITY === 'thorough' ? 'thorough' : 'fast';
}

/** Where counter files go: `STATEFS_RELIABILITY_DIR`, else `.reliability/` under the working directory. */
export function resultsDir(): string {
  return resolve(process.env.STATEFS_RELIABILITY_DIR ?? '.reliability');
}

let sequence = 0;

/**
 * Record what a test checked, as a small JSON file in the results directory (one file per call,
 * so tests in parallel processes never write the same file). The report adds up every file.
 */
export function recordFigures(suite: string, figures: Record<string, number>): void {
  const dir = resultsDir();
  mkdirSync(dir, { recursive: true });
  const { seed, ...counts } = figures;
  const file: FigureFile = { suite, mode: reliabilityMode(), ...(seed === undefined ? {} : { seed }), figures: counts };
  sequence++;
  writeFileSync(join(dir, `${suite}.${process.pid}.${sequence}.json`), `${JSON.stringify(file)}\n`);
}

/** Every counter file in `dir`, summed per suite (files that are not counter files are skipped). */
export function readFigures(dir: string): Map<string, FigureFile> {
  const out = new Map<string, FigureFile>();
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of names.filter((n) => n.endsWith('.json')).sort()) {
    const file = parseFigureFile(readFileSync(join(dir, name), 'utf8'));
    if (file === undefined) continue;
    const sum: FigureFile = out.get(file.suite) ?? { suite: file.suite, figures: {} };
    for (const [k, v] of Object.entries(file.figures)) sum.figures[k] = (sum.figures[k] ?? 0) + v;
    out.set(file.suite, sum);
  }
  return out;
}

/** Decode a counter file; `undefined` for anything else. */
function parseFigureFile(text: string): FigureFile | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof raw !== 'object' || raw === null) return undefined;
  const { suite, mode, figures } = raw as Record<string, unknown>; // checked field by field below
  if (typeof suite !== 'string' || typeof figures !== 'object' || figures === null) return undefined;
  const numbers: Record<string, number> = {};
  for (const [k, v] of Object.entries(figures)) if (typeof v === 'number' && Number.isFinite(v)) numbers[k] = v;
  return mode === 'fast' || mode === 'thorough' ? { suite, mode, figures: numbers } : { suite, figures: numbers };
}
