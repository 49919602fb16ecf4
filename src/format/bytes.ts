/** Little-endian helpers for codecs. u64 values are JS numbers and must stay below 2^53. */
export function view(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

export function setU64(v: DataView, at: number, value: number): void {
  v.setUint32(at, value % 0x1_0000_0000, true);
  v.setUint32(at + 4, Math.floor(value / 0x1_0000_0000), true);
}

export function getU64(v: DataView, at: number): number {
  return v.getUint32(at, true) + v.getUint32(at + 4, true) * 0x1_0000_0000;
}

/**
 * Little-endian u32 into `out` at `at` with byte stores. For codecs on a hot path: a DataView of
 * a small typed array makes V8 give it an ArrayBuffer of its own (~1 µs, a whole put's tenth).
 */
export function putU32(out: Uint8Array, at: number, x: number): void {
  out[at] = x & 0xff;
  out[at + 1] = (x >>> 8) & 0xff;
  out[at + 2] = (x >>> 16) & 0xff;
  out[at + 3] = x >>> 24;
}

/** Little-endian u32 at `at` with byte loads (see `putU32`); the caller has checked the bounds. */
export function u32At(buf: Uint8Array, at: number): number {
  return ((buf[at] ?? 0) | ((buf[at + 1] ?? 0) << 8) | ((buf[at + 2] ?? 0) << 16) | ((buf[at + 3] ?? 0) << 24)) >>> 0;
}

/** `setU64` with byte stores (see `putU32`). */
export function putU64(out: Uint8Array, at: number, x: number): void {
  putU32(out, at, x % 0x1_0000_0000);
  putU32(out, at + 4, Math.floor(x / 0x1_0000_0000));
}

/** Below this length a loop over the chars beats a call into `Buffer.write`. */
const LATIN1_LOOP_MAX = 64;

/**
 * Write the binary string `s` (one char per byte, as names.ts makes them) into `out` at `at`;
 * returns the bytes written. `buf` is `out` as a Buffer, for long strings.
 */
export function writeLatin1(out: Uint8Array, buf: Buffer, at: number, s: string): number {
  const n = s.length;
  if (n > LATIN1_LOOP_MAX) return buf.write(s, at, 'latin1');
  for (let i = 0; i < n; i++) out[at + i] = s.charCodeAt(i);
  return n;
}
