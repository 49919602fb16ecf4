import { StatefsError } from '../errors.js';
import { getU64, setU64, u32At, view, writeLatin1 } from './bytes.js';
import { RUN_RECORD_MAX } from './put-run.js';
import { RECORD_OVERHEAD } from './record.js';

/*
 * Index checkpoint. Its payload is split into CKPT records (opcode 0x30), key empty, value:
 *
 *   0   8  ckpt_id      equals the superblock's ckpt_id
 *   8   4  chunk_index  0-based
 *   12  4  chunk_count
 *   16  n  payload bytes (at most CKPT_CHUNK)
 *
 * Payload, little-endian (varint: unsigned LEB128, at most 5 bytes, below 2^32):
 *
 *   0   1  version        5 (versions 1 to 4 are still decoded: see below)
 *   1   8  next_txn_id    transaction ids below this were used
 *   9   4  entry_count
 *   then entry_count live entries, each index key (subject NUL key bytes) as the bytes it shares
 *   with the previous entry's and the rest:
 *       varint shared (at most 320), varint rest_len, rest_len bytes (the key is previous[0, shared) + rest)
 *       1  extent_count (1 for PUT, one per PAYLOAD chunk for transaction values); bit 7 set: the
 *          first extent is a slice of a PUTRUN record that starts past the record's start (the
 *          count is the low 7 bits)
 *       extent_count x (varint segment, varint offset, varint length): records holding the value,
 *          the first followed, with bit 7, by varint lead: the slice's start within its record
 *   8  next_snap_id
 *   4  snapshot_count, then per snapshot:
 *       1+n subject, 1+n name (u8 length, bytes), 8 snap_id, 1 has_digest, [32 sha256],
 *       4 diff_count, then diff_count changes against the next newer snapshot (by snap_id) of
 *       its subject, or for the newest against the live entries of its subject:
 *          2 key_len, key bytes (no subject), 1 extent_count (0 = key absent in the snapshot; bit 7
 *          as above), extents as u32 segment, offset and length, the first followed, with bit 7,
 *          by u32 lead
 *   4  mount_count, then per mount:
 *       1+n caller, 2+n path (u16 length), 1+n owner, 1+n name, 8 snap_id
 *
 * Version 4 has the same bytes without bit 7 (it had no PUTRUN records). Version 3 has the same
 * bytes, but writes every snapshot against the live entries: a change of
 * a live key then gave every snapshot of its subject a difference. Version 2 wrote each entry
 * whole: 2 key_len, key, 1 extent_count, then u32 segment, offset and length per extent (41
 * bytes for a typical entry; versions 3 and 4 about 11, since sorted keys share most of their
 * bytes). Version 1 is version 2 ending after the entries.
 */
export const CHECKPOINT_VERSION = 5;
/** The first version whose snapshots are written against the next newer one. */
export const CHAINED_SNAPSHOTS_VERSION = 4;
/** The first version whose extents may be PUTRUN slices (bit 7 of extent_count). */
const RUN_SLICES_VERSION = 5;
/** Bit 7 of extent_count: the first extent's lead follows it. */
const LEAD_FLAG = 0x80;
/** extent_count without `LEAD_FLAG`. */
const COUNT_MASK = 0x7f;
/**
 * Most bytes an entry's index key may share with the previous one: the longest index key the
 * API writes (a 64-byte subject, NUL, a 255-byte key). Longer keys (only a v1 image's) pay their
 * bytes beyond it; so a payload decodes to at most ~46 key bytes per byte, where sharing up to the
 * 65,535 a key may hold let a 7-byte entry make a 64 KiB string (a crafted payload of 220 kB
 * decoded to 1.2 GB of keys).
 */
const MAX_SHARED = 64 + 1 + 255;
export const CKPT_CHUNK = 64 * 1024;
const CKPT_HEADER = 16;
/** A full CKPT record: framing, chunk header, a whole chunk of payload (all but a payload's last chunk are whole). */
export const CKPT_RECORD_LENGTH = RECORD_OVERHEAD + CKPT_HEADER + CKPT_CHUNK;

export interface CheckpointExtent {
  segment: number;
  offset: number;
  length: number;
  /** Over 0: a PUTRUN slice starting this many bytes into its record (only a first extent). */
  lead?: number;
}

/**
 * A checkpoint's live entries, column by column: a checkpoint holds every key of the store, and
 * an object per entry (or per record) would cost more than the rest of opening it.
 */
export interface CheckpointEntries {
  /** Runs of entries of one subject, in order: the run's entries end before index `end`. */
  runs: { subject: string; end: number }[];
  /** Each entry's key without its subject (a binary string: one char per byte). */
  keys: string[];
  /** Each entry's number of records (at least 1). */
  counts: Uint8Array;
  /** Every entry's records in entry order, three numbers each: segment, offset, length. */
  extents: Uint32Array;
  /** Each entry's first extent's lead (0 but for a slice past a PUTRUN record's start). */
  leads: Uint16Array;
}

export interface CheckpointSnapshot {
  subject: string;
  name: string;
  id: number;
  digest: Uint8Array | undefined;
  /** Keys whose entry differs from the live one: their extents, or null where the snapshot has no value. */
  diff: { key: string; extents: CheckpointExtent[] | null }[];
}

export interface CheckpointMount {
  caller: string;
  path: string;
  owner: string;
  name: string;
  snapId: number;
}

export interface Checkpoint {
  nextTxnId: number;
  entries: CheckpointEntries;
  nextSnapId: number;
  snapshots: CheckpointSnapshot[];
  mounts: CheckpointMount[];
}

export function emptyCheckpoint(): Checkpoint {
  return { nextTxnId: 1, entries: { runs: [], keys: [], counts: new Uint8Array(0), extents: new Uint32Array(0), leads: new Uint16Array(0) }, nextSnapId: 1, snapshots: [], mounts: [] };
}

export function encodeCheckpoint(ckpt: Checkpoint): Uint8Array {
  const encoder = new CheckpointEncoder(entriesBytes(ckpt.entries));
  const { runs, keys, counts, extents, leads } = ckpt.entries;
  let from = 0;
  let x = 0;
  for (const run of runs) {
    for (let i = from; i < run.end; i++) {
      const n = counts[i] ?? 0;
      encoder.entryOf(run.subject, keys[i] ?? '', extents.subarray(x, x + 3 * n), leads[i] ?? 0);
      x += 3 * n;
    }
    from = run.end;
  }
  return encoder.finish(ckpt);
}

/**
 * Encodes a checkpoint's payload entry by entry, so a caller can spread a large index over
 * several turns of the event loop: `entry` for each live entry in order (subjects ascending,
 * each subject's keys ascending), then `finish` with the rest.
 */
export class CheckpointEncoder {
  private readonly w: Writer;
  private count = 0;

  /** `expectedBytes`: about how large the payload will be (it grows if that was short). */
  constructor(expectedBytes: number) {
    this.w = new Writer(expectedBytes + 1024);
    this.w.u8(CHECKPOINT_VERSION);
    this.w.u64(0); // next_txn_id, known at `finish`
    this.w.u32(0); // entry_count, known at `finish`
  }

  /** A live entry held in one record or PUTRUN slice (`lead`), or in several records (`more`). */
  entry(subject: string, key: string, segment: number, offset: number, length: number, lead: number, more: readonly CheckpointExtent[]): void {
    this.indexKey(subject, key);
    this.w.u8((1 + more.length) | (lead === 0 ? 0 : LEAD_FLAG));
    this.w.varint(segment);
    this.w.varint(offset);
    this.w.varint(length);
    if (lead !== 0) this.w.varint(lead);
    for (const x of more) {
      this.w.varint(x.segment);
      this.w.varint(x.offset);
      this.w.varint(x.length);
    }
    this.count++;
  }

  /** A live entry whose records are `extents`: three numbers each (segment, offset, length); `lead` as in `entry`. */
  entryOf(subject: string, key: string, extents: Uint32Array, lead: number): void {
    this.indexKey(subject, key);
    this.w.u8(extents.length / 3 | (lead === 0 ? 0 : LEAD_FLAG));
    extents.forEach((n, i) => {
      this.w.varint(n);
      if (i === 2 && lead !== 0) this.w.varint(lead);
    });
    this.count++;
  }

  private prevSubject: string | undefined;
  private prevKey = '';

  /** The entry's index key as the bytes it shares with the previous entry's, and the rest. */
  private indexKey(subject: string, key: string): void {
    const prev = this.prevSubject;
    // Subjects hold no NUL, so two different subjects differ at or before the shorter one's NUL.
    const common = prev === subject ? subject.length + 1 + commonPrefix(key, this.prevKey) : prev === undefined ? 0 : commonPrefix(subject, prev);
    const shared = Math.min(common, MAX_SHARED);
    this.prevSubject = subject;
    this.prevKey = key;
    this.w.varint(shared);
    this.w.varint(subject.length + 1 + key.length - shared);
    this.w.indexKeyFrom(subject, key, shared);
  }

  /** The payload: the entries given, then `rest`'s transaction id, snapshots and mounts. */
  finish(rest: Omit<Checkpoint, 'entries'>): Uint8Array {
    const w = this.w;
    w.u64(rest.nextSnapId);
    w.u32(rest.snapshots.length);
    for (const snap of rest.snapshots) {
      w.str(snap.subject, 1);
      w.str(snap.name, 1);
      w.u64(snap.id);
      w.u8(snap.digest === undefined ? 0 : 1);
      if (snap.digest !== undefined) w.bytes(snap.digest);
      w.u32(snap.diff.length);
      for (const d of snap.diff) {
        w.str(d.key, 2);
        w.extents(d.extents ?? []);
      }
    }
    w.u32(rest.mounts.length);
    for (const m of rest.mounts) {
      w.str(m.caller, 1);
      w.str(m.path, 2);
      w.str(m.owner, 1);
      w.str(m.name, 1);
      w.u64(m.snapId);
    }
    w.u64At(1, rest.nextTxnId);
    w.u32At(9, this.count);
    return w.finish();
  }
}

export function decodeCheckpoint(buf: Uint8Array): Checkpoint {
  const r = new Reader(buf);
  const version = r.u8();
  if (version < 1 || version > CHECKPOINT_VERSION) throw r.bad(`unknown version ${version}`);
  const nextTxnId = r.u64();
  r.leads = version >= RUN_SLICES_VERSION;
  const entries = version >= 3 ? r.sharedPrefixEntries() : r.entries();
  const ckpt: Checkpoint = { nextTxnId, entries, nextSnapId: 1, snapshots: [], mounts: [] };
  if (version === 1) return r.end(ckpt);
  ckpt.nextSnapId = r.u64();
  for (let n = r.u32(); n > 0; n--) {
    const subject = r.str(1);
    const name = r.str(1);
    const id = r.u64();
    const digest = r.u8() === 1 ? r.bytes(32) : undefined;
    const diff: CheckpointSnapshot['diff'] = [];
    for (let d = r.u32(); d > 0; d--) {
      const key = r.str(2);
      const extents = r.extents();
      diff.push({ key, extents: extents.length === 0 ? null : extents });
    }
    ckpt.snapshots.push({ subject, name, id, digest, diff });
  }
  for (let n = r.u32(); n > 0; n--) {
    ckpt.mounts.push({ caller: r.str(1), path: r.str(2), owner: r.str(1), name: r.str(1), snapId: r.u64() });
  }
  return r.end(ckpt);
}

/** `column` with room for at least `needed` numbers (its contents kept). */
export function grown(column: Uint32Array, needed: number): Uint32Array {
  const bigger = new Uint32Array(Math.max(needed, 2 * column.length));
  bigger.set(column);
  return bigger;
}

/** At most the bytes of the header and the live entries: the bulk of a checkpoint, known before writing it. */
function entriesBytes(entries: CheckpointEntries): number {
  // Per entry at most: 2 x 3 varint bytes for the key's split (keys are under 64 KiB), subject,
  // NUL, key, 1 extent_count, 3 x 5 per extent, 3 for a lead. Keys share bytes, so this is well
  // over: for whole-index checkpoints the builder sizes its buffer from the last one instead.
  let n = 13 + 11 * entries.keys.length + 5 * entries.extents.length;
  let from = 0;
  for (const run of entries.runs) {
    n += (run.end - from) * run.subject.length;
    from = run.end;
  }
  for (const key of entries.keys) n += key.length;
  return n;
}

/** Appends little-endian fields to a growing buffer. */
class Writer {
  private buf: Uint8Array;
  private v: DataView;
  /** The same bytes as a Buffer, for latin1 string writes. */
  private b: Buffer;
  private at = 0;

  /** `capacity`: the expected size (a million-key checkpoint is not grown by doubling from 1 KiB). */
  constructor(capacity: number) {
    this.buf = new Uint8Array(capacity);
    this.v = view(this.buf);
    this.b = Buffer.from(this.buf.buffer);
  }

  private room(n: number): DataView {
    if (this.at + n > this.buf.length) {
      // By half, not double: a checkpoint of a large index is tens of MB, and its size is estimated well.
      const bigger = new Uint8Array(Math.max(this.buf.length + (this.buf.length >>> 1), this.at + n));
      bigger.set(this.buf.subarray(0, this.at));
      this.buf = bigger;
      this.v = view(bigger);
      this.b = Buffer.from(bigger.buffer);
    }
    return this.v;
  }

  u8(x: number): void {
    this.room(1).setUint8(this.at, x);
    this.at += 1;
  }
  u16(x: number): void {
    this.room(2).setUint16(this.at, x, true);
    this.at += 2;
  }
  u32(x: number): void {
    this.room(4).setUint32(this.at, x, true);
    this.at += 4;
  }
  u64(x: number): void {
    setU64(this.room(8), this.at, x);
    this.at += 8;
  }
  /** Overwrite the u32 at `at` (already written). */
  u32At(at: number, x: number): void {
    this.v.setUint32(at, x, true);
  }
  /** Overwrite the u64 at `at` (already written). */
  u64At(at: number, x: number): void {
    setU64(this.v, at, x);
  }
  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.at);
    this.at += b.length;
  }
  /** A binary string with a 1- or 2-byte length prefix. */
  str(s: string, lengthBytes: 1 | 2): void {
    if (lengthBytes === 1) this.u8(s.length);
    else this.u16(s.length);
    this.room(s.length);
    this.at += writeLatin1(this.buf, this.b, this.at, s);
  }
  /** Unsigned LEB128 of `x` (below 2^32): 7 bits per byte, low first, high bit set on all but the last. */
  varint(x: number): void {
    this.room(5);
    const buf = this.buf;
    let at = this.at;
    while (x >= 0x80) {
      buf[at++] = (x & 0x7f) | 0x80;
      x >>>= 7;
    }
    buf[at++] = x;
    this.at = at;
  }
  /** The bytes of the index key `subject NUL key` from byte `from` on (keys are short: a char loop). */
  indexKeyFrom(subject: string, key: string, from: number): void {
    const length = subject.length + 1 + key.length;
    this.room(length - from);
    const buf = this.buf;
    let at = this.at;
    for (let i = from; i < subject.length; i++) buf[at++] = subject.charCodeAt(i);
    if (from <= subject.length) buf[at++] = 0;
    for (let i = Math.max(0, from - subject.length - 1); i < key.length; i++) buf[at++] = key.charCodeAt(i);
    this.at = at;
  }
  extents(list: readonly CheckpointExtent[]): void {
    const lead = list[0]?.lead ?? 0;
    this.u8(list.length | (lead === 0 ? 0 : LEAD_FLAG));
    list.forEach((x, i) => {
      this.u32(x.segment);
      this.u32(x.offset);
      this.u32(x.length);
      if (i === 0 && lead !== 0) this.u32(lead);
    });
  }
  /** The bytes written: a view, not a copy (a checkpoint of a million keys is tens of MB, and every caller copies it into records anyway). */
  finish(): Uint8Array {
    return this.buf.subarray(0, this.at);
  }
}

/** Reads little-endian fields, failing with `EINTEGRITY` instead of reading past the end. */
class Reader {
  private at = 0;
  /** Whether extent_count's bit 7 flags a lead (version 5 on). */
  leads = false;
  private readonly v: DataView;
  private readonly b: Buffer;

  constructor(private readonly buf: Uint8Array) {
    this.v = view(buf);
    this.b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  bad(what: string): StatefsError {
    return StatefsError.EINTEGRITY(`checkpoint payload: ${what}`, { op: 'open' });
  }
  private need(n: number): number {
    if (this.at + n > this.buf.length) throw this.bad('truncated');
    const at = this.at;
    this.at += n;
    return at;
  }
  u8(): number {
    return this.v.getUint8(this.need(1));
  }
  u16(): number {
    return this.v.getUint16(this.need(2), true);
  }
  u32(): number {
    return this.v.getUint32(this.need(4), true);
  }
  u64(): number {
    return getU64(this.v, this.need(8));
  }
  bytes(n: number): Uint8Array {
    const at = this.need(n);
    return this.buf.slice(at, at + n);
  }
  str(lengthBytes: 1 | 2): string {
    const n = lengthBytes === 1 ? this.u8() : this.u16();
    const at = this.need(n);
    return this.b.toString('latin1', at, at + n);
  }
  /** `entry_count`, and the columns for that many entries (extents: 3 numbers each, grown as needed). */
  private startColumns(): Omit<CheckpointEntries, 'extents'> {
    const total = this.u32();
    if (total > this.buf.length) throw this.bad('truncated'); // each entry takes bytes: do not allocate for a garbage count
    return { runs: [], keys: [], counts: new Uint8Array(total), leads: new Uint16Array(total) };
  }
  /**
   * The live entries. Each key is decoded straight from its bytes, as its own string: a slice of
   * the whole index key would keep that string alive for as long as the key is indexed. This runs
   * once per key at open, so fields are read with byte loads, not a call each: the subject is
   * found and compared with the previous one in a loop (subjects are short), and an entry's
   * extents are bounds-checked once.
   */
  entries(): CheckpointEntries {
    const { runs, keys, counts, leads } = this.startColumns();
    let extents: Uint32Array = new Uint32Array(3 * counts.length);
    const buf = this.buf;
    let used = 0;
    let run: { subject: string; end: number } | undefined;
    let subjectAt = 0;
    let subjectLength = -1;
    for (let i = 0; i < counts.length; i++) {
      const length = this.u16();
      const at = this.need(length);
      const end = at + length;
      let nul = at;
      while (nul < end && buf[nul] !== 0) nul++;
      if (nul === at || nul === end) throw this.bad('record key has no subject');
      if (run === undefined || !sameBytes(buf, subjectAt, subjectLength, at, nul - at)) {
        run = { subject: this.b.toString('latin1', at, nul), end: 0 };
        runs.push(run);
        subjectAt = at;
        subjectLength = nul - at;
      }
      keys.push(this.b.toString('latin1', nul + 1, end));
      run.end = keys.length;
      const count = this.u8();
      if (count === 0) throw this.bad('entry without extents');
      counts[i] = count;
      if (used + 3 * count > extents.length) extents = grown(extents, used + 3 * count);
      for (let x = this.need(12 * count), stop = x + 12 * count; x < stop; x += 4) extents[used++] = u32At(buf, x);
    }
    return { runs, keys, counts, extents: extents.subarray(0, used), leads };
  }
  /**
   * An unsigned LEB128 below 2^32 (at most 5 bytes). Runs five times per entry at open: the
   * one-byte case is kept small enough to inline, and no step needs a float.
   */
  varint(): number {
    const b = this.buf[this.at];
    if (b === undefined || b >= 0x80) return this.longVarint();
    this.at++;
    return b;
  }
  private longVarint(): number {
    const buf = this.buf;
    let at = this.at;
    let x = 0;
    for (let shift = 0; ; shift += 7) {
      if (at >= buf.length) throw this.bad('truncated');
      const b = buf[at++] ?? 0;
      if (shift === 28) {
        if (b > 0x0f) throw this.bad('varint over 32 bits');
        x += b * 0x1000_0000; // the top 4 bits: past int32, so added, not shifted
        break;
      }
      x |= (b & 0x7f) << shift;
      if (b < 0x80) break;
    }
    this.at = at;
    return x;
  }
  /**
   * The live entries of a version 3 or 4 payload (`entries` decodes versions 1 and 2 into the same
   * columns). The index key is rebuilt in one scratch buffer from the bytes it shares with the
   * previous one; the subject is decoded again only where the shared bytes stop inside it.
   */
  sharedPrefixEntries(): CheckpointEntries {
    const { runs, keys, counts, leads } = this.startColumns();
    let extents: Uint32Array = new Uint32Array(3 * counts.length);
    const buf = this.buf;
    let used = 0;
    let run: { subject: string; end: number } | undefined;
    let key = Buffer.alloc(256);
    let length = 0; // of the previous index key
    let nul = -1; // where the previous index key's subject ends
    for (let i = 0; i < counts.length; i++) {
      const shared = this.varint();
      const rest = this.varint();
      if (shared > length) throw this.bad('key shares more bytes than the previous key has');
      if (shared > MAX_SHARED) throw this.bad(`key shares more than ${MAX_SHARED} bytes`);
      const next = shared + rest;
      if (next > 0xffff) throw this.bad('index key over 65535 bytes');
      if (next > key.length) {
        const bigger = Buffer.alloc(Math.max(next, 2 * key.length));
        bigger.set(key.subarray(0, shared));
        key = bigger;
      }
      const at = this.need(rest);
      for (let j = 0; j < rest; j++) key[shared + j] = buf[at + j] ?? 0;
      length = next;
      if (run === undefined || shared <= nul) {
        nul = 0;
        while (nul < length && key[nul] !== 0) nul++;
        if (nul === 0 || nul === length) throw this.bad('record key has no subject');
        const subject = key.toString('latin1', 0, nul);
        if (run?.subject !== subject) runs.push((run = { subject, end: 0 }));
      }
      keys.push(key.toString('latin1', nul + 1, length));
      run.end = keys.length;
      const flags = this.u8();
      const count = this.leads ? flags & COUNT_MASK : flags;
      if (count === 0) throw this.bad('entry without extents');
      counts[i] = count;
      if (used + 3 * count > extents.length) extents = grown(extents, used + 3 * count);
      for (let x = 0; x < 3 * count; x++) {
        extents[used++] = this.varint();
        if (x === 2 && count !== flags) leads[i] = this.lead(this.varint());
      }
    }
    return { runs, keys, counts, extents: extents.subarray(0, used), leads };
  }
  extents(): CheckpointExtent[] {
    const out: CheckpointExtent[] = [];
    const flags = this.u8();
    const count = this.leads ? flags & COUNT_MASK : flags;
    for (let n = count; n > 0; n--) {
      const x: CheckpointExtent = { segment: this.u32(), offset: this.u32(), length: this.u32() };
      if (out.length === 0 && count !== flags) x.lead = this.lead(this.u32());
      out.push(x);
    }
    if (count !== flags && count === 0) throw this.bad('lead flag on an absent key');
    return out;
  }
  /** A lead read: over 0 (a flag says one follows) and within a run record. */
  private lead(n: number): number {
    if (n === 0 || n >= RUN_RECORD_MAX) throw this.bad(`PUTRUN slice lead ${n}`);
    return n;
  }
  end<T>(value: T): T {
    if (this.at !== this.buf.length) throw this.bad('trailing bytes');
    return value;
  }
}

/** How many chars `a` and `b` share from their start. */
function commonPrefix(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

/** Whether the `length` bytes at `a` and at `b` of `buf` are equal (`length` -1: never). */
function sameBytes(buf: Uint8Array, a: number, length: number, b: number, bLength: number): boolean {
  if (length !== bLength) return false;
  for (let i = 0; i < length; i++) if (buf[a + i] !== buf[b + i]) return false;
  return true;
}

export function encodeCheckpointChunk(id: number, index: number, count: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(CKPT_HEADER + data.length);
  out.set(encodeCheckpointChunkHeader(id, index, count), 0);
  out.set(data, CKPT_HEADER);
  return out;
}

/** The header of a CKPT record's value, which its slice of the payload follows. */
export function encodeCheckpointChunkHeader(id: number, index: number, count: number): Uint8Array {
  const out = new Uint8Array(CKPT_HEADER);
  const v = view(out);
  setU64(v, 0, id);
  v.setUint32(8, index, true);
  v.setUint32(12, count, true);
  return out;
}

export function decodeCheckpointChunk(value: Uint8Array): { id: number; index: number; count: number; data: Uint8Array } | undefined {
  if (value.length < CKPT_HEADER) return undefined;
  const v = view(value);
  return { id: getU64(v, 0), index: v.getUint32(8, true), count: v.getUint32(12, true), data: value.subarray(CKPT_HEADER) };
}
