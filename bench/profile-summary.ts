// The top functions by self time in V8 .cpuprofile files (from `npm run bench:profile`, or any
// `node --cpu-prof` run). Run: node dist/bench/profile-summary.js <file.cpuprofile>... [--top N]
import { readFile } from 'node:fs/promises';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { REPO_ROOT } from './lib/paths.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

function isNode(value: unknown): value is ProfileNode {
  if (typeof value !== 'object' || value === null) return false;
  const frame: unknown = Reflect.get(value, 'callFrame');
  return (
    typeof Reflect.get(value, 'id') === 'number' &&
    typeof frame === 'object' &&
    frame !== null &&
    typeof Reflect.get(frame, 'functionName') === 'string' &&
    typeof Reflect.get(frame, 'url') === 'string' &&
    typeof Reflect.get(frame, 'lineNumber') === 'number'
  );
}

const isNumbers = (v: unknown): v is number[] => Array.isArray(v) && v.every((x) => typeof x === 'number');

function parseProfile(text: string, file: string): CpuProfile {
  const parsed: unknown = JSON.parse(text);
  if (typeof parsed !== 'object' || parsed === null) throw new Error(`${file}: not a .cpuprofile`);
  const nodes: unknown = Reflect.get(parsed, 'nodes');
  const samples: unknown = Reflect.get(parsed, 'samples');
  const timeDeltas: unknown = Reflect.get(parsed, 'timeDeltas');
  if (!Array.isArray(nodes) || !nodes.every(isNode) || !isNumbers(samples) || !isNumbers(timeDeltas) || samples.length !== timeDeltas.length) {
    throw new Error(`${file}: not a .cpuprofile (nodes, samples and timeDeltas expected)`);
  }
  return { nodes, samples, timeDeltas };
}

function location(url: string, line: number): string {
  if (url === '') return '';
  const path = url.startsWith('file://') ? relative(REPO_ROOT, fileURLToPath(url)) : url;
  return ` ${path}:${line + 1}`;
}

/** Self time in ms per function (name + location), summed over every node of that function. */
function selfTimes(profile: CpuProfile): { total: number; byFunction: Map<string, number> } {
  const nameOf = new Map(profile.nodes.map((n) => [n.id, `${n.callFrame.functionName || '(anonymous)'}${location(n.callFrame.url, n.callFrame.lineNumber)}`]));
  const byFunction = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const ms = (profile.timeDeltas[i] ?? 0) / 1000;
    total += ms;
    const name = nameOf.get(id) ?? `(node ${id})`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + ms);
  });
  return { total, byFunction };
}

const args = process.argv.slice(2);
const topAt = args.indexOf('--top');
const top = topAt >= 0 ? Number(args[topAt + 1]) : 15;
const files = args.filter((_, i) => topAt < 0 || (i !== topAt && i !== topAt + 1));
if (files.length === 0 || !Number.isInteger(top) || top < 1) {
  console.error('usage: node dist/bench/profile-summary.js <file.cpuprofile>... [--top N]');
  process.exit(2);
}
for (const file of files) {
  const { total, byFunction } = selfTimes(parseProfile(await readFile(file, 'utf8'), file));
  console.log(`\n${file}: ${total.toFixed(0)} ms sampled; top ${top} by self time`);
  console.log('| self ms | self % | function |\n|---:|---:|---|');
  for (const [name, ms] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`| ${ms.toFixed(0)} | ${((100 * ms) / total).toFixed(1)} | ${name.replaceAll('|', '\\|')} |`);
  }
}
