// The one table: each workload's figure for StateFS and every peer (medians of the runs), the
// best peer, StateFS's ratio to it, and issue 8's target with whether this run meets it.
import type { EngineName } from './config.js';
import { DAEMON_CLIENTS, REDIS_CLIENTS } from './jobs.js';
import type { JobResult } from './recorder.js';
import { median } from './stats.js';

export type Column = EngineName | 'redis' | 'raw';
export const PEERS = ['lmdb', 'classic-level', 'sqlite', 'redis'] as const;
const COLUMNS: readonly Column[] = ['statefs', 'lmdb', 'classic-level', 'sqlite', 'redis', 'raw'];
const HEADERS: Record<Column, string> = {
  statefs: 'StateFS',
  lmdb: 'lmdb-js',
  'classic-level': 'classic-level',
  sqlite: 'better-sqlite3',
  redis: 'redis AOF always',
  raw: 'raw limit',
};

/** Every figure of one column, all repetitions (jobs repeated in fresh processes are merged). */
export type Figures = Partial<Record<Column, JobResult>>;

type Unit = 'ops' | 'ms' | 'bytes';

interface Cell {
  value: number;
  text: string;
}

export interface Row {
  workload: string;
  better: 'higher' | 'lower';
  cells: Partial<Record<Column, Cell>>;
  best?: { column: Column; value: number };
  /** StateFS's advantage over the best peer: > 1 means StateFS is ahead (either direction). */
  ratio?: number;
  target: string;
  met?: boolean;
}

function formatValue(value: number, unit: Unit): string {
  if (unit === 'ops') {
    if (value >= 1e6) return `${(value / 1e6).toFixed(2)}M/s`;
    if (value >= 1e4) return `${(value / 1e3).toFixed(0)}k/s`;
    if (value >= 1e3) return `${(value / 1e3).toFixed(1)}k/s`;
    return `${value.toFixed(0)}/s`;
  }
  if (unit === 'bytes') return `${(value / 1e6).toFixed(value < 1e7 ? 1 : 0)} MB`;
  if (value >= 10_000) return `${(value / 1000).toFixed(1)} s`;
  if (value >= 100) return `${value.toFixed(0)} ms`;
  if (value >= 1) return `${value.toFixed(1)} ms`;
  return `${value.toFixed(2)} ms`;
}

function fig(figures: Figures, column: Column, name: string): number | undefined {
  const values = figures[column]?.figures[name];
  return values === undefined ? undefined : median(values);
}

function cell(value: number | undefined, unit: Unit, suffix = ''): Cell | undefined {
  return value === undefined ? undefined : { value, text: formatValue(value, unit) + suffix };
}

/** The fastest getter's median for W4 (lmdb's reused buffer, classic-level's getSync, ...); `w4reopen`: after the reopen. */
function fastestGet(figures: Figures, column: Column, workload: 'w4' | 'w4reopen' = 'w4'): Cell | undefined {
  let best: { name: string; value: number } | undefined;
  for (const [name, values] of Object.entries(figures[column]?.figures ?? {})) {
    if (!name.startsWith(`${workload}.`)) continue;
    const value = median(values);
    if (value !== undefined && (best === undefined || value > best.value)) best = { name: name.slice(workload.length + 1), value };
  }
  if (best === undefined) return undefined;
  const plain = fig(figures, column, `${workload}.get`);
  const others = best.name === 'get' ? '' : ` (${best.name}; get ${plain === undefined ? '—' : formatValue(plain, 'ops')})`;
  return { value: best.value, text: formatValue(best.value, 'ops') + others };
}

function daemonCell(figures: Figures, column: Column, prefix: string): Cell | undefined {
  const ops = fig(figures, column, `${prefix}.opsPerSec`);
  const p50 = fig(figures, column, `${prefix}.p50Ms`);
  const p99 = fig(figures, column, `${prefix}.p99Ms`);
  if (ops === undefined || p50 === undefined || p99 === undefined) return undefined;
  return { value: ops, text: `${formatValue(ops, 'ops')} (p50 ${p50.toFixed(1)}, p99 ${p99.toFixed(1)} ms)` };
}

interface RowSpec {
  workload: string;
  better: 'higher' | 'lower';
  cells: Partial<Record<Column, Cell | undefined>>;
  target: string;
  /** Whether StateFS's cell meets the target; undefined when a figure it needs is missing. */
  met: (statefs: number, row: Row) => boolean | undefined;
}

function bestPeer(cells: Partial<Record<Column, Cell>>, better: 'higher' | 'lower'): { column: Column; value: number } | undefined {
  let best: { column: Column; value: number } | undefined;
  for (const column of PEERS) {
    const c = cells[column];
    if (c === undefined) continue;
    if (best === undefined || (better === 'higher' ? c.value > best.value : c.value < best.value)) best = { column, value: c.value };
  }
  return best;
}

function makeRow(spec: RowSpec): Row {
  const cells: Partial<Record<Column, Cell>> = {};
  for (const column of COLUMNS) {
    const c = spec.cells[column];
    if (c !== undefined) cells[column] = c;
  }
  const row: Row = { workload: spec.workload, better: spec.better, cells, target: spec.target };
  const best = bestPeer(cells, spec.better);
  if (best !== undefined) row.best = best;
  const statefs = cells.statefs?.value;
  if (statefs !== undefined && best !== undefined && statefs > 0 && best.value > 0) {
    row.ratio = spec.better === 'higher' ? statefs / best.value : best.value / statefs;
  }
  const met = statefs === undefined ? undefined : spec.met(statefs, row);
  if (met !== undefined) row.met = met;
  return row;
}

/** `statefs` against `k` × a reference figure (undefined when the reference is missing). */
function atLeast(statefs: number, k: number, reference: number | undefined): boolean | undefined {
  return reference === undefined ? undefined : statefs >= k * reference;
}

function atMost(statefs: number, k: number, reference: number | undefined): boolean | undefined {
  return reference === undefined ? undefined : statefs <= k * reference;
}

export function buildRows(figures: Figures, keys: number, smallKeys: number): Row[] {
  const engines: readonly Column[] = ['statefs', 'lmdb', 'classic-level', 'sqlite'];
  const per = (name: string, unit: Unit, columns: readonly Column[] = engines): Partial<Record<Column, Cell | undefined>> =>
    Object.fromEntries(columns.map((c) => [c, cell(fig(figures, c, name), unit)]));
  const k = keys >= 1e6 ? `${keys / 1e6}M` : `${keys / 1e3}k`;
  const lmdb = (name: string): number | undefined => fig(figures, 'lmdb', name);
  const rows: RowSpec[] = [
    {
      workload: 'W1 durable put, 1 writer, each awaited',
      better: 'higher',
      cells: { ...per('w1', 'ops'), raw: cell(fig(figures, 'statefs', 'w1.raw') ?? fig(figures, 'raw', 'w1'), 'ops', ' fdatasync') },
      target: '≥ 0.9× raw fdatasync loop',
      met: (s) => atLeast(s, 0.9, fig(figures, 'statefs', 'w1.raw') ?? fig(figures, 'raw', 'w1')),
    },
    {
      workload: 'W2 durable puts, 64 in flight (sqlite: 64 per txn)',
      better: 'higher',
      cells: { ...per('w2', 'ops'), raw: cell(fig(figures, 'raw', 'w2'), 'ops', ' (64 per fdatasync)') },
      target: '≥ 1.5× best peer',
      met: (s, row) => atLeast(s, 1.5, row.best?.value),
    },
    {
      workload: `W3 bulk load ${k} puts, one sync at the end`,
      better: 'higher',
      cells: { ...per('w3', 'ops'), raw: cell(fig(figures, 'raw', 'w3'), 'ops', ' Map set') },
      target: '≥ 1.0× lmdb-js',
      met: (s) => atLeast(s, 1, lmdb('w3')),
    },
    {
      workload: `W4 random get over ${k} keys (warm)`,
      better: 'higher',
      cells: { ...Object.fromEntries(engines.map((c) => [c, fastestGet(figures, c)])), raw: cell(fig(figures, 'raw', 'w4'), 'ops', ' Map get') },
      target: "≥ 1.0× lmdb-js's fastest get",
      met: (s) => atLeast(s, 1, fastestGet(figures, 'lmdb')?.value),
    },
    {
      // No target in issue 8: what reading values from the disk (statefs-v3.md 6.3) costs.
      workload: `W4 after a reopen (fresh process, each getter 1 run in turn)`,
      better: 'higher',
      cells: Object.fromEntries(engines.map((c) => [c, fastestGet(figures, c, 'w4reopen')])),
      target: '',
      met: () => undefined,
    },
    {
      workload: `W6 list ${Math.min(keys, 10_000)} keys under one prefix`,
      better: 'lower',
      cells: per('w6.ms', 'ms'),
      target: '≤ 1.0× lmdb-js',
      met: (s) => atMost(s, 1, lmdb('w6.ms')),
    },
    {
      workload: `W7 persistent snapshot of ${k} keys`,
      better: 'lower',
      cells: per('w7.ms', 'ms'),
      target: '≤ 1 ms and ≥ 100× faster than best peer',
      met: (s, row) => (row.best === undefined ? undefined : s <= 1 && s * 100 <= row.best.value),
    },
    {
      workload: `snapshot of ${smallKeys} keys (vs W7 at ${k})`,
      better: 'lower',
      cells: per('snapshotSmall.ms', 'ms'),
      target: `flat: ${k} ≤ 2× ${smallKeys}`,
      met: (s) => atMost(fig(figures, 'statefs', 'w7.ms') ?? Infinity, 2, s),
    },
    {
      workload: `on-disk size, ${k} keys`,
      better: 'lower',
      cells: per('diskBytes', 'bytes'),
      target: '≤ better-sqlite3',
      met: (s) => atMost(s, 1, fig(figures, 'sqlite', 'diskBytes')),
    },
    {
      workload: `reopen + first get, ${k} keys`,
      better: 'lower',
      cells: per('reopen.ms', 'ms'),
      target: '≤ 1 s',
      met: (s) => s <= 1000,
    },
    {
      workload: `peak RSS: load ${k} + W4/W6/W7`,
      better: 'lower',
      cells: per('rss.load', 'bytes'),
      target: '≤ lmdb-js',
      met: (s) => atMost(s, 1, lmdb('rss.load')),
    },
    {
      workload: `peak RSS: reopen ${k} + random gets`,
      better: 'lower',
      cells: per('rss.reopen', 'bytes'),
      target: '≤ lmdb-js',
      met: (s) => atMost(s, 1, lmdb('rss.reopen')),
    },
  ];
  const gcOff = fig(figures, 'statefs', 'gc.off.opsPerSec');
  const gcWorst = figures.statefs?.figures['gc.on.worstMs'];
  const gcOffWorst = figures.statefs?.figures['gc.off.worstMs'];
  rows.push(
    {
      workload: 'GC running: durable put throughput (1 KB values, 64 in flight)',
      better: 'higher',
      cells: { statefs: cell(fig(figures, 'statefs', 'gc.on.opsPerSec'), 'ops', gcOff === undefined ? '' : ` (GC off ${formatValue(gcOff, 'ops')})`) },
      target: '≥ 0.7× GC off',
      met: (s) => atLeast(s, 0.7, gcOff),
    },
    {
      workload: 'GC running: worst put latency (max of the runs)',
      better: 'lower',
      cells: {
        statefs:
          gcWorst === undefined || gcWorst.length === 0
            ? undefined
            : cell(Math.max(...gcWorst), 'ms', gcOffWorst === undefined || gcOffWorst.length === 0 ? '' : ` (GC off ${formatValue(Math.max(...gcOffWorst), 'ms')})`),
      },
      target: '≤ 50 ms',
      met: (s) => s <= 50,
    },
  );
  for (const kind of ['put', 'get'] as const) {
    for (const clients of DAEMON_CLIENTS) {
      const withRedis = clients === REDIS_CLIENTS;
      rows.push({
        workload: `daemon durable ${kind}, ${clients} client${clients === 1 ? '' : 's'}${withRedis ? (kind === 'put' ? ' (redis SET)' : ' (redis GET)') : ''}`,
        better: 'higher',
        cells: {
          statefs: daemonCell(figures, 'statefs', `statefsd.c${clients}.${kind}`),
          ...(withRedis ? { redis: daemonCell(figures, 'redis', `redis.c${clients}.${kind}`) } : {}),
        },
        target: withRedis ? (kind === 'put' ? '≥ 2× redis' : '≥ 1.0× redis') : '',
        met: (s) => (withRedis ? atLeast(s, kind === 'put' ? 2 : 1, fig(figures, 'redis', `redis.c${clients}.${kind}.opsPerSec`)) : undefined),
      });
    }
  }
  return rows.map(makeRow);
}

function escape(text: string): string {
  return text.replaceAll('|', '\\|');
}

/** The table as Markdown (what `npm run bench` prints and docs/performance.md shows). */
export function renderTable(rows: readonly Row[], columns: readonly Column[]): string {
  const header = ['workload', ...columns.map((c) => HEADERS[c]), 'best peer', 'ratio (>1: StateFS ahead)', 'target', 'met?'];
  const lines = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
  for (const row of rows) {
    const best = row.best === undefined ? '—' : HEADERS[row.best.column];
    const ratio = row.ratio === undefined ? '—' : `${row.ratio >= 10 ? row.ratio.toFixed(0) : row.ratio.toFixed(2)}×`;
    const met = row.target === '' ? '' : row.met === undefined ? 'n/a' : row.met ? 'yes' : 'NO';
    const cells = columns.map((c) => row.cells[c]?.text ?? '—');
    lines.push(`| ${[row.workload, ...cells, best, ratio, row.target, met].map(escape).join(' | ')} |`);
  }
  return lines.join('\n');
}
