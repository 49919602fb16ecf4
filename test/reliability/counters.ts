import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Writes one suite's figures for the reliability report (`npm run reliability`):
 * `${STATEFS_RELIABILITY_DIR ?? '.reliability'}/<suite>.json` holding
 * `{ "suite": string, "seed"?: number, "figures": { [name]: number } }`. A figure named `seed`
 * is written as the top-level `seed` instead.
 */
export function recordFigures(suite: string, figures: Record<string, number>): void {
  const dir = process.env.STATEFS_RELIABILITY_DIR ?? '.reliability';
  const { seed, ...rest } = figures;
  mkdirSync(dir, { recursive: true });
  const body = seed === undefined ? { suite, figures: rest } : { suite, seed, figures: rest };
  writeFileSync(join(dir, `${suite}.json`), `${JSON.stringify(body, null, 2)}\n`);
}
