import { readFileSync } from 'node:fs';
import { StatefsError } from '../../src/errors.js';
import { DEFAULT_MAX_FRAME, FRAME_VERSION, HEADER_SIZE, encodeFrame, type Frame } from '../../src/server/protocol/frame.js';
import { FrameReader } from '../../src/server/protocol/frame-reader.js';
import type { Request } from '../../src/server/protocol/messages.js';
import { OP_NAMES, type OpName } from '../../src/server/protocol/ops.js';
import { decodeRequest, encodeRequest } from '../../src/server/protocol/request-codec.js';

/*
 * The protocol fuzzers' shared parts (issue 9, item 7): the regression corpus in corpus/, a model
 * of how the daemon splits and decodes a byte stream, and the mutations applied to corpus frames.
 */

// ---- the corpus ----------------------------------------------------------------------------------

/**
 * One corpus file and what decoding it must give: the op of each request decoded, in order, then
 * `EINVAL` / `ENOTSUP` when the stream is refused there, or `incomplete` when bytes are left
 * waiting for the rest of a frame.
 */
export interface CorpusEntry {
  file: string;
  class: string;
  expect: string[];
  why: string;
  /** The reader's frame limit for this entry (default 1 MiB). */
  maxFrame: number;
  bytes: Uint8Array;
}

const CORPUS_DIR = new URL('../../../test/reliability/corpus/', import.meta.url);

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function isStringArray(x: unknown): x is string[] {
  return Array.isArray(x) && x.every((s) => typeof s === 'string');
}

/** Every corpus entry with its bytes; a malformed manifest throws. */
export function loadCorpus(): CorpusEntry[] {
  const manifest: unknown = JSON.parse(readFileSync(new URL('manifest.json', CORPUS_DIR), 'utf8'));
  if (!Array.isArray(manifest)) throw new Error('corpus/manifest.json: not an array');
  return manifest.map((e: unknown, i): CorpusEntry => {
    if (!isRecord(e)) throw new Error(`corpus/manifest.json[${i}]: not an object`);
    const { file, class: cls, expect, why, maxFrame } = e;
    if (typeof file !== 'string' || typeof cls !== 'string' || typeof why !== 'string' || !isStringArray(expect) || expect.length === 0) {
      throw new Error(`corpus/manifest.json[${i}]: needs file, class, why and a non-empty expect list`);
    }
    if (maxFrame !== undefined && typeof maxFrame !== 'number') throw new Error(`corpus/manifest.json[${i}]: maxFrame is not a number`);
    return { file, class: cls, expect, why, maxFrame: maxFrame ?? DEFAULT_MAX_FRAME, bytes: new Uint8Array(readFileSync(new URL(file, CORPUS_DIR))) };
  });
}

// ---- the daemon's view of a byte stream ----------------------------------------------------------

/** A request the stream model decoded, with the header fields the daemon answers with. */
export interface Decoded {
  frame: Frame;
  req: Request;
}

/** Where a stream stopped: refused (the daemon answers with this error and closes), or left waiting. */
export type StreamEnd =
  | { kind: 'clean' }
  | { kind: 'incomplete'; buffered: number }
  | { kind: 'refused'; code: 'EINVAL' | 'ENOTSUP'; requestId: number; op: OpName | undefined };

export interface StreamResult {
  decoded: Decoded[];
  end: StreamEnd;
  /** The most bytes the reader held at once. */
  maxBuffered: number;
}

/** What the fuzzers accept as a refusal; anything else escaping the decoder is a crash. */
function refusal(err: unknown): 'EINVAL' | 'ENOTSUP' {
  if (err instanceof StatefsError && (err.code === 'EINVAL' || err.code === 'ENOTSUP')) return err.code;
  throw err;
}

/**
 * Feeds `bytes` to a FrameReader cut at `cuts` (ascending offsets) and decodes every frame, stopping
 * at the first refusal as the daemon does (connection.ts). Throws anything that is not a refusal.
 * The result must not depend on the cuts.
 */
export function decodeStream(bytes: Uint8Array, maxFrame: number, cuts: readonly number[] = []): StreamResult {
  const reader = new FrameReader(maxFrame);
  const decoded: Decoded[] = [];
  let maxBuffered = 0;
  let from = 0;
  for (const to of [...cuts, bytes.length]) {
    let frames: Frame[];
    try {
      frames = reader.push(bytes.subarray(from, to));
    } catch (err) {
      return { decoded, end: { kind: 'refused', code: refusal(err), requestId: 0, op: undefined }, maxBuffered };
    }
    from = to;
    maxBuffered = Math.max(maxBuffered, reader.buffered);
    for (const frame of frames) {
      try {
        decoded.push({ frame, req: decodeRequest(frame) });
      } catch (err) {
        return { decoded, end: { kind: 'refused', code: refusal(err), requestId: frame.requestId, op: OP_NAMES[frame.op - 1] }, maxBuffered };
      }
    }
    if (reader.failure !== undefined) return { decoded, end: { kind: 'refused', code: refusal(reader.failure), requestId: 0, op: undefined }, maxBuffered };
  }
  return { decoded, end: reader.buffered > 0 ? { kind: 'incomplete', buffered: reader.buffered } : { kind: 'clean' }, maxBuffered };
}

/** The corpus notation of a stream result: the op of each request, then how it ended. */
export function outcomes(r: StreamResult): string[] {
  const ops = r.decoded.map((d) => d.req.op);
  if (r.end.kind === 'refused') return [...ops, r.end.code];
  if (r.end.kind === 'incomplete') return [...ops, 'incomplete'];
  return ops;
}

/** The codec is canonical: a frame that decodes is exactly the encoding of what it decoded to. */
export function reencodes(d: Decoded): boolean {
  const again = encodeRequest(d.req, Number.MAX_SAFE_INTEGER);
  const original = encodeFrame(d.frame.kind, d.frame.requestId, d.frame.op, d.frame.body, Number.MAX_SAFE_INTEGER);
  return Buffer.from(again).equals(original);
}

// ---- mutations -----------------------------------------------------------------------------------

export type Rand = () => number;

const U8S = [0, 1, 2, 0x7f, 0x80, 0xfe, 0xff];
const U16S = [0, 1, 2, 0xff, 0x100, 0x7fff, 0x8000, 0xfffe, 0xffff];
const U32S = [0, 1, 6, 7, 8, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, DEFAULT_MAX_FRAME - 5, DEFAULT_MAX_FRAME - 4, DEFAULT_MAX_FRAME - 3];
const BAD_UTF8: readonly (readonly number[])[] = [[0xff], [0x80], [0xc3, 0x28], [0xc0, 0xaf], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xfe, 0xfe]];
const DOTDOT: readonly string[] = ['..', '/..', '/state/..', '../', '/state/../x', '/mnt/..'];

export function int(rand: Rand, n: number): number {
  return Math.floor(rand() * n);
}

export function pick<T>(rand: Rand, xs: readonly T[]): T {
  const x = xs[int(rand, xs.length)];
  if (x === undefined) throw new Error('pick from an empty list');
  return x;
}

function randomBytes(rand: Rand, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = int(rand, 256);
  return out;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** A body offset (or any offset when the frame has no body). */
function somewhere(rand: Rand, b: Uint8Array, width = 1): number {
  const lo = b.length >= HEADER_SIZE + width ? HEADER_SIZE : 0;
  return lo + int(rand, Math.max(1, b.length - lo - width + 1));
}

/** Sets the length field to the frame's real length. */
function fixLength(b: Uint8Array): Uint8Array {
  if (b.length >= 4) view(b).setUint32(0, b.length - 4, true);
  return b;
}

/** Each mutation returns a new or changed buffer, and whether it chose the length field itself. */
type Mutation = (rand: Rand, b: Uint8Array, corpus: readonly Uint8Array[]) => [Uint8Array, boolean];

const MUTATIONS: readonly (readonly [string, Mutation])[] = [
  ['flip-bit', (rand, b) => {
    if (b.length > 0) {
      const at = int(rand, b.length);
      b[at] = (b[at] ?? 0) ^ (1 << int(rand, 8));
    }
    return [b, false];
  }],
  ['set-byte', (rand, b) => {
    if (b.length > 0) b[int(rand, b.length)] = pick(rand, U8S);
    return [b, false];
  }],
  ['set-u16', (rand, b) => {
    if (b.length >= 2) {
      const at = somewhere(rand, b, 2);
      const dv = view(b);
      const v = rand() < 0.5 ? pick(rand, U16S) : (dv.getUint16(at, true) + pick(rand, [-1, 1, 2, -2])) & 0xffff;
      dv.setUint16(at, v, true);
    }
    return [b, false];
  }],
  ['set-u32', (rand, b) => {
    if (b.length >= 4) {
      const at = somewhere(rand, b, 4);
      const dv = view(b);
      const v = rand() < 0.5 ? pick(rand, U32S) : (dv.getUint32(at, true) + pick(rand, [-1, 1, 2, -2])) >>> 0;
      dv.setUint32(at, v, true);
    }
    return [b, false];
  }],
  ['set-length', (rand, b) => {
    if (b.length >= 4) view(b).setUint32(0, rand() < 0.5 ? pick(rand, U32S) : (b.length - 4 + pick(rand, [-2, -1, 1, 2, 7])) >>> 0, true);
    return [b, true];
  }],
  ['set-version', (rand, b) => {
    if (b.length > 4) b[4] = rand() < 0.3 ? FRAME_VERSION : int(rand, 256);
    return [b, false];
  }],
  ['set-kind', (rand, b) => {
    if (b.length > 5) b[5] = pick(rand, [0, 2, 3, 0xff, int(rand, 256)]);
    return [b, false];
  }],
  ['set-op', (rand, b) => {
    if (b.length > 10) b[10] = rand() < 0.5 ? 1 + int(rand, OP_NAMES.length) : pick(rand, [0, OP_NAMES.length + 1, 0x7f, 0xff, int(rand, 256)]);
    return [b, false];
  }],
  ['truncate', (rand, b) => [b.subarray(0, int(rand, b.length)), true]],
  ['append', (rand, b) => [concat(b, randomBytes(rand, 1 + int(rand, 16))), false]],
  ['insert', (rand, b) => {
    const at = somewhere(rand, b);
    return [concat(b.subarray(0, at), randomBytes(rand, 1 + int(rand, 8)), b.subarray(at)), false];
  }],
  ['delete', (rand, b) => {
    const at = somewhere(rand, b);
    return [concat(b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + int(rand, 8)))), false];
  }],
  ['bad-utf8', (rand, b) => {
    const seq = pick(rand, BAD_UTF8);
    const at = somewhere(rand, b, seq.length);
    return [concat(b.subarray(0, at), Uint8Array.from(seq), b.subarray(Math.min(b.length, at + seq.length))), false];
  }],
  ['dotdot', (rand, b) => {
    // Replace the first string of the body (u16 length + bytes) with a `..` name.
    if (b.length < HEADER_SIZE + 2) return [b, false];
    const n = view(b).getUint16(HEADER_SIZE, true);
    const name = new TextEncoder().encode(pick(rand, DOTDOT));
    const len = new Uint8Array(2);
    view(len).setUint16(0, name.length, true);
    return [concat(b.subarray(0, HEADER_SIZE), len, name, b.subarray(Math.min(b.length, HEADER_SIZE + 2 + n))), false];
  }],
  ['splice', (rand, b, corpus) => {
    const other = pick(rand, corpus);
    return [concat(b, rand() < 0.5 ? other : other.subarray(0, int(rand, other.length + 1))), true];
  }],
  ['random', (rand) => [randomBytes(rand, int(rand, 64)), true]],
];

export const MUTATION_NAMES: readonly string[] = MUTATIONS.map(([name]) => name);

export interface Mutant {
  bytes: Uint8Array;
  /** The mutations applied, in order. */
  applied: string[];
}

/**
 * One to four mutations of a copy of `base`. Unless a mutation chose the length field, the length
 * is usually set right again afterwards, so most mutants reach the body decoder.
 */
export function mutate(rand: Rand, base: Uint8Array, corpus: readonly Uint8Array[]): Mutant {
  let bytes: Uint8Array = base.slice();
  let lengthChosen = false;
  const applied: string[] = [];
  for (let i = 1 + int(rand, 4); i > 0; i--) {
    const [name, fn] = pick(rand, MUTATIONS);
    const [next, chose] = fn(rand, bytes, corpus);
    bytes = next;
    lengthChosen ||= chose;
    applied.push(name);
  }
  if (!lengthChosen && rand() < 0.8) fixLength(bytes);
  return { bytes, applied };
}

/** Random cut points: none, one or two, or every byte for short inputs. */
export function randomCuts(rand: Rand, length: number): number[] {
  const r = rand();
  if (r < 0.6 || length < 2) return [];
  if (r < 0.9 || length > 128) {
    const cuts = Array.from({ length: 1 + int(rand, 2) }, () => 1 + int(rand, length - 1));
    return [...new Set(cuts)].sort((a, b) => a - b);
  }
  return Array.from({ length: length - 1 }, (_, i) => i + 1);
}
