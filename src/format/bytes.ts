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
