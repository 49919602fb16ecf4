import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FIGURES, readFigures, resultsDir } from '../test/reliability/counters.js';

/*
 * `npm run reliability [-- --thorough]`: runs the reliability suites (every test file under
 * test/reliability/, and any other test file that records figures), then prints one table of
 * what they checked, added up from the counter files they wrote (counters.ts). The test output
 * goes to <results dir>/run.log. Exits non-zero if a test failed or a violation was counted.
 */
const LABELS: Record<(typeof FIGURES)[number], string> = {
  crashStates: 'crash states checked',
  reorderings: 'reorderings',
  injectedFaults: 'injected faults',
  bitFlips: 'bit flips',
  killCycles: 'kill cycles',
  fuzzFrames: 'fuzz frames',
  violations: 'violations (must be 0)',
};

const testRoot = fileURLToPath(new URL('../test', import.meta.url));

/** Test files that record figures: all of reliability/, and others that call recordFigures. */
async function suiteFiles(): Promise<string[]> {
  const own = (await readdir(join(testRoot, 'reliability'))).filter((f) => f.endsWith('.test.js')).map((f) => join(testRoot, 'reliability', f));
  const others: string[] = [];
  for (const f of (await readdir(testRoot)).filter((n) => n.endsWith('.test.js'))) {
    if ((await readFile(join(testRoot, f), 'utf8')).includes('recordFigures(')) others.push(join(testRoot, f));
  }
  return [...own, ...others].sort();
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const mode = args.includes('--thorough') || process.env.STATEFS_RELIABILITY === 'thorough' ? 'thorough' : 'fast';
  const dir = resultsDir();
  await rm(dir, { recursive: true, force: true });
  const files = await suiteFiles();
  await mkdir(dir, { recursive: true });
  const logPath = join(dir, 'run.log');
  const log = createWriteStream(logPath);
  const started = Date.now();
  process.stderr.write(`reliability: ${mode} mode, ${files.length} test files, output in ${logPath}\n`);
  const child = spawn(process.execPath, ['--test', '--test-concurrency=2', ...files], {
    env: { ...process.env, STATEFS_RELIABILITY: mode, STATEFS_RELIABILITY_DIR: dir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.pipe(log, { end: false });
  child.stderr.pipe(log, { end: false });
  const [code] = (await once(child, 'close')) as [number | null];
  log.end();
  await once(log, 'close');
  const seconds = (Date.now() - started) / 1000;
  const output = await readFile(logPath, 'utf8');
  const count = (name: string): number => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(output)?.[1] ?? 0);

  const suites = readFigures(dir);
  const rows: [string, string, string][] = [];
  let violations = 0;
  for (const figure of FIGURES) {
    const from = [...suites.values()].filter((s) => s.figures[figure] !== undefined);
    const total = from.reduce((n, s) => n + (s.figures[figure] ?? 0), 0);
    if (figure === 'violations') violations = total;
    const by = from.filter((s) => (s.figures[figure] ?? 0) > 0 || figure === 'violations').map((s) => `${s.suite} ${(s.figures[figure] ?? 0).toLocaleString('en-US')}`);
    rows.push([LABELS[figure], from.length === 0 ? 'not run' : total.toLocaleString('en-US'), by.join(', ')]);
  }
  const w0 = Math.max(...rows.map((r) => r[0].length), 'figure'.length);
  const w1 = Math.max(...rows.map((r) => r[1].length), 'total'.length);
  const line = (a: string, b: string, c: string): string => `| ${a.padEnd(w0)} | ${b.padStart(w1)} | ${c}`;
  const out = [
    `StateFS reliability report: ${mode} mode, ${seconds.toFixed(0)} s, tests ${count('pass')} passed, ${count('fail')} failed`,
    line('figure', 'total', 'by suite'),
    line('-'.repeat(w0), '-'.repeat(w1), '---'),
    ...rows.map(([a, b, c]) => line(a, b, c)),
  ];
  process.stdout.write(`${out.join('\n')}\n`);
  const seeds = output.split('\n').filter((l) => /^# [a-z-]+( [a-z]+)?: seed \d+/.test(l));
  if (seeds.length > 0) process.stdout.write(`seeds (replay with STATEFS_SEED=<seed>):\n${seeds.map((l) => `  ${l.slice(2)}`).join('\n')}\n`);
  return code === 0 && violations === 0 && count('fail') === 0 ? 0 : 1;
}

process.exitCode = await main();
