import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { DEFAULT_MAX_FRAME } from '../../src/server/protocol/frame.js';
import { OP_NAMES } from '../../src/server/protocol/ops.js';
import { rng } from '../helpers.js';
import { guardResources } from '../hygiene.js';
import { recordFigures } from './counters.js';
import { MUTATION_NAMES, decodeStream, int, loadCorpus, mutate, outcomes, pick, randomCuts, reencodes, type StreamResult } from './frames.js';
import { heapAfterGc } from './heap.js';
import { byMode, countFromEnv, seedFromEnv } from './mode.js';

guardResources();

const seed = seedFromEnv(20_250_901);
const frames = countFromEnv('STATEFS_FUZZ_DECODER_FRAMES', byMode(1_000_000, 1_000_000));
/** Heap growth allowed over the whole run, measured after a full GC. */
const HEAP_BOUND = 16 * 1024 * 1024;
console.log(`decoder-fuzz: STATEFS_SEED=${seed} STATEFS_FUZZ_DECODER_FRAMES=${frames}`);

const corpus = loadCorpus();

test('corpus: every entry decodes as its manifest says, whole, split anywhere and byte by byte', () => {
  for (const e of corpus) {
    const whole = outcomes(decodeStream(e.bytes, e.maxFrame));
    assert.deepEqual(whole, e.expect, `${e.file}: ${e.why}`);
    const cuts = e.bytes.length <= 512 ? Array.from({ length: e.bytes.length + 1 }, (_, i) => i) : [1, 4, 5, 10, 11, e.bytes.length >> 1, e.bytes.length - 1];
    for (const cut of cuts) {
      assert.deepEqual(outcomes(decodeStream(e.bytes, e.maxFrame, [cut])), e.expect, `${e.file} cut at ${cut}`);
    }
    if (e.bytes.length <= 4096) {
      const everyByte = Array.from({ length: e.bytes.length }, (_, i) => i);
      assert.deepEqual(outcomes(decodeStream(e.bytes, e.maxFrame, everyByte)), e.expect, `${e.file} byte by byte`);
    }
    for (const d of decodeStream(e.bytes, e.maxFrame).decoded) assert.ok(reencodes(d), `${e.file}: ${d.req.op} does not re-encode to its bytes`);
  }
});

test('corpus: a valid frame of every op, and each boundary class', () => {
  const validOps = new Set(corpus.filter((e) => e.class === 'valid').flatMap((e) => e.expect));
  assert.deepEqual([...validOps].sort(), [...OP_NAMES].sort());
  const classes = new Set(corpus.map((e) => e.class));
  for (const c of ['boundary-length', 'truncated', 'unknown-version', 'unknown-kind', 'unknown-op', 'oversized-key', 'oversized-value', 'huge-count', 'bad-field', 'utf8', 'dotdot', 'empty']) {
    assert.ok(classes.has(c), `corpus has no ${c} entry`);
  }
  const ends = new Set(corpus.map((e) => e.expect.at(-1)));
  for (const end of ['EINVAL', 'ENOTSUP', 'incomplete']) assert.ok(ends.has(end), `no corpus entry ends ${end}`);
});

interface Tally {
  frames: number;
  decoded: number;
  EINVAL: number;
  ENOTSUP: number;
  incomplete: number;
  clean: number;
  violations: string[];
}

/** Saves a misbehaving input where a developer can add it to corpus/, and says so. */
function keep(bytes: Uint8Array, n: number, why: string): string {
  const path = join(tmpdir(), `statefs-decoder-fuzz-${seed}-${n}.bin`);
  writeFileSync(path, bytes);
  return `frame ${n} (${why}), saved to ${path}: ${Buffer.from(bytes.subarray(0, 64)).toString('hex')}${bytes.length > 64 ? '…' : ''}`;
}

function one(t: Tally, n: number, bytes: Uint8Array, maxFrame: number, cuts: number[], applied: string[]): void {
  let r: StreamResult;
  try {
    r = decodeStream(bytes, maxFrame, cuts);
  } catch (err) {
    t.violations.push(keep(bytes, n, `${applied.join('+')}: threw ${String(err)}`));
    return;
  }
  if (r.maxBuffered > maxFrame) t.violations.push(keep(bytes, n, `reader held ${r.maxBuffered} bytes over its limit ${maxFrame}`));
  for (const d of r.decoded) {
    t.decoded++;
    if (!reencodes(d)) t.violations.push(keep(bytes, n, `${d.req.op} decoded but does not re-encode to the same bytes`));
  }
  if (r.end.kind === 'refused') t[r.end.code]++;
  else t[r.end.kind]++;
}

test(`decoder fuzz: ${frames} mutated frames give requests that re-encode exactly, or EINVAL/ENOTSUP, never a crash; memory bounded`, () => {
  const rand = rng(seed);
  const bases = corpus.map((e) => e.bytes);
  const small = bases.filter((b) => b.length <= 1024);
  const tally: Tally = { frames: 0, decoded: 0, EINVAL: 0, ENOTSUP: 0, incomplete: 0, clean: 0, violations: [] };
  const heapBefore = heapAfterGc();
  const started = performance.now();
  // Most frames are refused, and capturing each refusal's stack trace would take half the time.
  const stackTraceLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    for (let n = 0; n < frames && tally.violations.length < 10; n++) {
      // Large entries (64 KiB keys and values) are one in a thousand: each costs a copy.
      const base = rand() < 0.001 ? pick(rand, bases) : pick(rand, small);
      const { bytes, applied } = mutate(rand, base, small);
      const maxFrame = rand() < 0.1 ? 16 + int(rand, 2048) : DEFAULT_MAX_FRAME;
      one(tally, n, bytes, maxFrame, randomCuts(rand, bytes.length), applied);
      tally.frames++;
    }
  } finally {
    Error.stackTraceLimit = stackTraceLimit;
  }
  const seconds = (performance.now() - started) / 1000;
  const heapGrowth = heapAfterGc() - heapBefore;
  const { violations, ...counts } = tally;
  console.log(`decoder-fuzz: seed=${seed} ${JSON.stringify(counts)} in ${seconds.toFixed(1)} s (${Math.round(tally.frames / seconds)} frames/s); mutations ${MUTATION_NAMES.join(',')}`);
  console.log(`decoder-fuzz: heap growth after GC ${(heapGrowth / 1024).toFixed(0)} KiB (bound ${HEAP_BOUND / 1024} KiB)`);
  recordFigures('protocol-fuzz-decoder', { seed, fuzzFrames: tally.frames, violations: violations.length, heapGrowthBytes: heapGrowth });
  assert.deepEqual(violations, [], `seed ${seed}`);
  assert.equal(tally.frames, frames);
  // Each outcome is reached often, so the mutations cover the decoder rather than one error path.
  for (const k of ['decoded', 'EINVAL', 'ENOTSUP', 'incomplete', 'clean'] as const) assert.ok(tally[k] > frames / 1000, `only ${tally[k]} ${k}`);
  assert.ok(heapGrowth < HEAP_BOUND, `heap grew by ${heapGrowth} bytes`);
});
