/*
 * Copies of stored values handed to callers. Each `get` must return bytes the caller owns (the
 * store's own copy must not be changed through it), but a fresh ArrayBuffer per value is the
 * single largest cost of a point read: typed arrays over 64 bytes get an off-heap backing store,
 * allocated and tracked one by one. Small copies are carved out of shared 8 KiB slabs instead —
 * as Node's Buffer pool does — so a returned view may share its ArrayBuffer with other returned
 * values (read it through its own `byteOffset`/`byteLength`).
 */
const SLAB = 8 * 1024;
/** Values larger than this get a buffer of their own. */
const POOLED_MAX = SLAB >>> 2;

let slab = new ArrayBuffer(SLAB);
/** `slab` as a Buffer, for copying values held as strings into it (`copyOutText`). */
let slabBuffer = Buffer.from(slab);
let used = 0;

/** Below this length a byte loop beats creating a view of the source for `set` (about 50 ns on this machine at any length; the loop crosses it near 24 bytes). */
const LOOP_MAX = 24;

/** A copy, that the caller owns, of the `length` bytes at `start` of `bytes`. */
export function copyOut(bytes: Uint8Array, start: number, length: number): Uint8Array {
  if (length > POOLED_MAX) return new Uint8Array(bytes.subarray(start, start + length)); // not slice(): on a Buffer that is a view
  const at = carve(length);
  const out = new Uint8Array(slab, at, length);
  copyInto(bytes, start, length, out);
  return out;
}

/** A copy, that the caller owns, of the bytes of a value held as a binary string (`ownText`). */
export function copyOutText(text: string): Uint8Array {
  const length = text.length;
  if (length > POOLED_MAX) return new Uint8Array(Buffer.from(text, 'latin1'));
  const at = carve(length);
  if (length <= LOOP_MAX) {
    const out = new Uint8Array(slab, at, length);
    for (let i = 0; i < length; i++) out[i] = text.charCodeAt(i);
    return out;
  }
  slabBuffer.write(text, at, length, 'latin1');
  return new Uint8Array(slab, at, length);
}

/** Where `length` bytes start in the current slab (a new slab when it is full). */
function carve(length: number): number {
  if (used + length > SLAB) {
    slab = new ArrayBuffer(SLAB);
    slabBuffer = Buffer.from(slab);
    used = 0;
  }
  const at = used;
  used += (length + 7) & ~7; // keep views 8-byte aligned, as the Buffer pool does
  return at;
}

/** Copy the `length` bytes at `start` of `bytes` to the start of `target` (which has room). */
export function copyInto(bytes: Uint8Array, start: number, length: number, target: Uint8Array): void {
  if (length <= LOOP_MAX) for (let i = 0; i < length; i++) target[i] = bytes[start + i] ?? 0;
  else target.set(bytes.subarray(start, start + length));
}

/** Copy the bytes of a value held as a binary string to the start of `target` (which has room). */
export function copyTextInto(text: string, target: Uint8Array): void {
  const length = text.length;
  if (length <= LOOP_MAX) for (let i = 0; i < length; i++) target[i] = text.charCodeAt(i);
  else Buffer.from(target.buffer, target.byteOffset, length).write(text, 0, length, 'latin1');
}

/**
 * The store's own copy of a caller's value as a binary string (one char per byte). A string lives
 * on the JS heap: about a fifth of the cost of a typed array over a buffer of its own, which gets
 * an off-heap backing store allocated and tracked one by one (the largest cost of a put), and
 * smaller in memory. Whatever the caller does to its bytes later, the string does not change.
 */
export function ownText(value: Uint8Array): string {
  return (Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength)).toString('latin1');
}

/**
 * The store's own copy of a caller's value: a plain Uint8Array over a buffer of its own. Not
 * `value.slice()`: on a Buffer that is a view of the caller's memory (and for a string's bytes, of
 * Node's shared Buffer pool), so a later change to the caller's buffer would change the stored value.
 */
export function ownCopy(value: Uint8Array): Uint8Array {
  return new Uint8Array(value);
}

/**
 * The store's own copy of a batch of values, all in one new buffer (one allocation instead of
 * one per value), in order and back to back: value i starts where value i-1 ends. The buffer
 * lives while any of these values is still held, so memory kept for replaced values is bounded by
 * the batch's size — the same rule open uses for the values it reads segment by segment.
 */
export function packValues(values: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const v of values) total += v.length;
  const packed = new Uint8Array(total);
  let at = 0;
  for (const v of values) {
    packed.set(v, at);
    at += v.length;
  }
  return packed;
}
