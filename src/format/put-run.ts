import { u32At } from './bytes.js';
import { crc32c } from './crc32c.js';
import { Op } from './opcodes.js';
import { RECORD_HEADER, RECORD_OVERHEAD, claimedRecordLength, type DecodedRecord } from './record.js';

/*
 * PUTRUN records (opcode 0x29, docs/storage/statefs-v3.md 3.3): several PUTs of one subject in one
 * record, each key stored as the bytes it shares with the key before it in the record and the
 * rest. Key field: the subject's bytes. Value: one or more entries back to back, filling it:
 *
 *   size  field
 *   1     shared      bytes at the start of the key equal to the previous entry's key (0 in the first)
 *   1     suffix_len  the rest of the key
 *   s     suffix
 *   1-3   value_len   unsigned LEB128 (at most 65,536)
 *   v     value
 *
 * Each entry is charged a **slice** of the record, so that the slices tile it exactly and the
 * space accounting stays per entry: the first entry's slice runs from the record's start to the
 * end of its entry, every later entry's from its own start, and the last one's to the record's
 * end (the CRC). An entry's **lead** is its slice's start within the record (0 for the first):
 * the index keeps it beside the slice, to find the record again.
 */

/**
 * The longest run record `putMany` writes. CRC-32C finds every change of up to 5 bits in a record
 * of at most 655 bytes (Hamming distance 6 up to 5,243 bits), so a value in a run keeps the
 * detection a lone PUT of a small value has.
 */
export const RUN_RECORD_MAX = 640;

/** One entry of a run as the index needs it. `lead` and `length`: its slice (see above). */
export interface RunEntry {
  /** The key, as a binary string (one char per byte). */
  bin: string;
  /** A view of the value in the record's bytes. */
  value: Uint8Array;
  lead: number;
  length: number;
}

/** The `i`th entry of a batch (the caller keeps `i` within it). */
function item<T>(list: readonly T[], i: number): T {
  const x = list[i];
  if (x === undefined) throw new RangeError(`entry ${i} of ${list.length}`);
  return x;
}

/** The byte at `i` of `b` (the caller has checked the bounds). */
function byteAt(b: Uint8Array, i: number): number {
  return b[i] ?? 0;
}

/** Bytes of `n` as unsigned LEB128. */
function varintLength(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : 3;
}

/** Chars at the start of `a` equal to those of `b`. */
function sharedPrefix(a: string, b: string): number {
  const most = Math.min(a.length, b.length);
  let i = 0;
  while (i < most && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

/** How `putMany` lays out its entries: plain PUTs, or runs of entries `first` to `first + count - 1`. */
export interface RunPlan {
  first: number;
  count: number;
  /** The record's value length (0 for a plain PUT: `count` is then 1). */
  valueLength: number;
}

/**
 * Group entries, in the order given, into runs of at most `RUN_RECORD_MAX` bytes. An entry that
 * starts a run alone is a plain PUT instead (a run of one is two bytes longer).
 */
export function planRuns(subjectLength: number, bins: readonly string[], values: readonly Uint8Array[]): RunPlan[] {
  const plans: RunPlan[] = [];
  const base = RECORD_OVERHEAD + subjectLength;
  let first = 0;
  let bytes = 0;
  let prev = '';
  const close = (end: number): void => {
    if (end === first) return;
    plans.push({ first, count: end - first, valueLength: end - first === 1 ? 0 : bytes });
  };
  for (let i = 0; i < bins.length; i++) {
    const bin = item(bins, i);
    const size = item(values, i).length;
    const shared = i === first ? 0 : sharedPrefix(prev, bin);
    const entry = 2 + bin.length - shared + varintLength(size) + size;
    if (i > first && base + bytes + entry > RUN_RECORD_MAX) {
      close(i);
      first = i;
      bytes = 2 + bin.length + varintLength(size) + size;
    } else {
      bytes += entry;
    }
    prev = bin;
  }
  close(bins.length);
  return plans;
}

/**
 * Write the value of the run record `plan` describes at `at` in `out` (`plan.valueLength` bytes),
 * and each of its entries' slice of the record into `slices`, which has three numbers per entry
 * of the batch: the lead and slice length are written here, the third (the record holding the
 * entry) is the caller's. A batch's runs share one buffer: a run of its own would be a typed
 * array over a backing store of its own, allocated and tracked one by one.
 */
export function encodeRunInto(plan: RunPlan, subjectLength: number, bins: readonly string[], values: readonly Uint8Array[], out: Uint8Array, at: number, slices: Int32Array): void {
  const head = RECORD_HEADER + subjectLength;
  const base = at; // the record's value starts here
  let prev = '';
  let lead = 0;
  for (let j = 0; j < plan.count; j++) {
    const i = plan.first + j;
    const bin = item(bins, i);
    const value = item(values, i);
    const shared = j === 0 ? 0 : sharedPrefix(prev, bin);
    if (j > 0) {
      // The slice before this one ends where this entry starts.
      lead = head + at - base;
      slices[3 * (i - 1) + 1] = lead - (slices[3 * (i - 1)] ?? 0);
    }
    slices[3 * i] = lead;
    out[at++] = shared;
    out[at++] = bin.length - shared;
    for (let c = shared; c < bin.length; c++) out[at++] = bin.charCodeAt(c);
    for (let n = value.length; ; n >>>= 7) {
      if (n < 0x80) {
        out[at++] = n;
        break;
      }
      out[at++] = (n & 0x7f) | 0x80;
    }
    out.set(value, at);
    at += value.length;
    prev = bin;
  }
  const last = plan.first + plan.count - 1;
  slices[3 * last + 1] = head + plan.valueLength + 4 - (slices[3 * last] ?? 0); // the last slice ends with the record
}

/**
 * Walk the entries of a PUTRUN record's value, checking each as it goes: `entry` gets the bytes
 * its key shares with the previous key, where its suffix and its value lie in `v`, and where the
 * entry starts in `v`. False if the value is malformed (an entry that runs past the value, a
 * shared length longer than the key before it, an empty key, a value length over 65,536 or in
 * more than 3 bytes, no entry at all).
 */
function walkRun(v: Uint8Array, entry: (shared: number, suffixAt: number, suffixLength: number, valueAt: number, valueLength: number, start: number) => void, from = 0, end = v.length): boolean {
  let prevLength = 0;
  let at = from;
  let count = 0;
  while (at < end) {
    const start = at;
    if (at + 2 > end) return false;
    const shared = byteAt(v, at);
    const suffix = byteAt(v, at + 1);
    at += 2;
    if (shared > prevLength || shared + suffix === 0 || at + suffix > end) return false;
    const suffixAt = at;
    at += suffix;
    let size = 0;
    for (let shift = 0; ; shift += 7) {
      if (at >= end || shift > 14) return false;
      const b = byteAt(v, at++);
      size += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) break;
    }
    if (size > 0x10000 || at + size > end) return false;
    entry(shared, suffixAt, suffix, at, size, start);
    at += size;
    prevLength = shared + suffix;
    count++;
  }
  return count > 0;
}

function noEntry(): void {
  // `walkRun` only checks
}

/**
 * Whether the bytes at `at` in `buf` are a whole, intact PUTRUN record whose value is well
 * formed: what `decodeRecord` and then `runEntries` check (framing, lengths, CRC, then each
 * entry as `walkRun` checks it), without making a decoded record (the value pass at open checks one per ~5 values of
 * a bulk load). False for anything else; the caller decodes the record to learn what it is.
 */
export function intactRun(buf: Uint8Array, at: number): boolean {
  const length = claimedRecordLength(buf, at);
  if (length === undefined || at + length > buf.length || buf[at + 4] !== Op.PUTRUN) return false;
  const body = at + length - 4;
  if (crc32c(buf.subarray(at, body)) !== u32At(buf, body)) return false;
  return walkRun(buf, noEntry, at + RECORD_HEADER + (byteAt(buf, at + 5) | (byteAt(buf, at + 6) << 8)), body);
}

/**
 * Where `runEntries` puts each key together: the bytes of the key before it, then its own suffix
 * (a shared part and a suffix are at most 255 bytes each). Reused: the walk is synchronous.
 */
const keyScratch = Buffer.alloc(512);

/** The entries of a decoded PUTRUN record, or undefined if its value is malformed (`walkRun`). */
export function runEntries(record: DecodedRecord): RunEntry[] | undefined {
  const v = record.value;
  const head = RECORD_HEADER + record.key.length;
  const out: RunEntry[] = [];
  // Each key is read out of `keyScratch` in one call, a flat string: not the previous key's slice
  // joined to the suffix, a string V8 flattens (copies) at the tree's first comparison (replay after a
  // crash during a bulk load decodes hundreds of thousands of them).
  const ok = walkRun(v, (shared, suffixAt, suffixLength, valueAt, valueLength, start) => {
    for (let j = 0; j < suffixLength; j++) keyScratch[shared + j] = byteAt(v, suffixAt + j);
    out.push({ bin: keyScratch.toString('latin1', 0, shared + suffixLength), value: v.subarray(valueAt, valueAt + valueLength), lead: out.length === 0 ? 0 : head + start, length: 0 });
  });
  if (!ok) return undefined;
  out.forEach((e, j) => {
    e.length = (out[j + 1]?.lead ?? record.length) - e.lead;
  });
  return out;
}

/**
 * Where the value of the PUTRUN entry whose slice is `lead` and `length` bytes starts in `buf`,
 * for the record at `at` in `buf` (whose CRC the caller has checked: the value pass at open reads
 * millions of values this way, without decoding keys or allocating). The entries before it are
 * walked and checked as `walkRun` checks them, and so is it: -1 if no entry's slice is that one.
 */
export function runValueStart(buf: Uint8Array, at: number, lead: number, length: number): number {
  const keyLength = byteAt(buf, at + 5) | (byteAt(buf, at + 6) << 8);
  const valueLength = (byteAt(buf, at + 7) | (byteAt(buf, at + 8) << 8) | (byteAt(buf, at + 9) << 16) | (byteAt(buf, at + 10) << 24)) >>> 0;
  const first = at + RECORD_HEADER + keyLength;
  const end = first + valueLength;
  const recordEnd = end + 4;
  let prevLength = 0;
  let p = first;
  for (let j = 0; p < end; j++) {
    const start = p;
    if (p + 2 > end) return -1;
    const shared = byteAt(buf, p);
    const suffix = byteAt(buf, p + 1);
    p += 2 + suffix;
    if (shared > prevLength || shared + suffix === 0 || p > end) return -1;
    let size = 0;
    for (let shift = 0; ; shift += 7) {
      if (p >= end || shift > 14) return -1;
      const b = byteAt(buf, p++);
      size += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) break;
    }
    if (size > 0x10000 || p + size > end) return -1;
    const sliceStart = j === 0 ? at : start;
    if (sliceStart - at === lead) {
      const sliceEnd = p + size === end ? recordEnd : p + size;
      return sliceEnd - sliceStart === length ? p : -1;
    }
    if (sliceStart - at > lead) return -1;
    p += size;
    prevLength = shared + suffix;
  }
  return -1;
}

/** The entry of a decoded PUTRUN record whose slice is `lead` and `length` bytes, or undefined. */
export function runEntryAt(record: DecodedRecord, lead: number, length: number): RunEntry | undefined {
  const entry = runEntries(record)?.find((e) => e.lead === lead);
  return entry?.length === length ? entry : undefined;
}
