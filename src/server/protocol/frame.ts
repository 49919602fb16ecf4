import { StatefsError } from '../../errors.js';
import { putU32 } from '../../format/bytes.js';
import { WireWriter } from './wire-writer.js';

/*
 * Frame (both directions), little-endian:
 *
 *   offset size field
 *   0      4    length      bytes after this field (7 + body length), so length >= 7
 *   4      1    version     FRAME_VERSION (1); anything else is ENOTSUP
 *   5      1    kind        1 = request, 2 = response; anything else is EINVAL
 *   6      4    request_id  chosen by the client, echoed in the response (0 = connection-level)
 *   10     1    op          operation code (ops.ts); 0 only in connection-level error responses
 *   11     ...  body        op- and kind-specific (request-codec.ts, response-codec.ts)
 *
 * A frame's total size (4 + length) is at most the reader's max frame size (default 1 MiB).
 */
export const FRAME_VERSION = 1;
export const KIND_REQUEST = 1;
export const KIND_RESPONSE = 2;
export const HEADER_SIZE = 11;
export const DEFAULT_MAX_FRAME = 1024 * 1024;

export type FrameKind = typeof KIND_REQUEST | typeof KIND_RESPONSE;

/** One complete frame as `FrameReader` delivers it (version already checked). */
export interface Frame {
  kind: FrameKind;
  requestId: number;
  op: number;
  body: Uint8Array;
}

function fail(why: string): StatefsError {
  return StatefsError.EINVAL(`frame: ${why}`, { op: 'frame' });
}

/**
 * Validates the first `have` bytes of a frame header, as far as they go, so that a bad frame is
 * refused before its body is buffered. Returns the total frame size once the length is known.
 */
export function checkHeader(header: Uint8Array, have: number, maxFrameSize: number): number | undefined {
  if (have < 4) return undefined;
  const length = ((header[0] ?? 0) | ((header[1] ?? 0) << 8) | ((header[2] ?? 0) << 16) | ((header[3] ?? 0) << 24)) >>> 0;
  if (length < HEADER_SIZE - 4) throw fail(`length ${length} is shorter than the header`);
  if (length + 4 > maxFrameSize) throw fail(`frame of ${length + 4} bytes over the limit of ${maxFrameSize}`);
  if (have >= 5) {
    const version = header[4] ?? 0;
    if (version !== FRAME_VERSION) throw StatefsError.ENOTSUP(`protocol version ${version}`, { op: 'frame' });
  }
  if (have >= 6) {
    const kind = header[5] ?? 0;
    if (kind !== KIND_REQUEST && kind !== KIND_RESPONSE) throw fail(`kind ${kind}`);
  }
  return length + 4;
}

/** Builds a frame; a frame over `maxFrameSize` is EFBIG (the caller answers with an error instead). */
export function encodeFrame(kind: FrameKind, requestId: number, op: number, body: Uint8Array, maxFrameSize = DEFAULT_MAX_FRAME): Uint8Array {
  const w = frameWriter(body.length);
  w.raw(body);
  return sealFrame(w, kind, requestId, op, maxFrameSize);
}

/** A writer for one frame's body, with room for the header before it (see `sealFrame`). */
export function frameWriter(bodyBytes = 53): WireWriter {
  return new WireWriter(HEADER_SIZE + bodyBytes, HEADER_SIZE);
}

/**
 * The frame whose body `w` (from `frameWriter`) holds: the header is written into the room left
 * before the body, so the frame is built in one buffer. EFBIG over `maxFrameSize`.
 */
export function sealFrame(w: WireWriter, kind: FrameKind, requestId: number, op: number, maxFrameSize = DEFAULT_MAX_FRAME): Uint8Array {
  const out = w.bytesWritten();
  const total = out.length;
  if (total > maxFrameSize) throw StatefsError.EFBIG(`frame of ${total} bytes over the limit of ${maxFrameSize}`, { op: 'encode' });
  if (!Number.isInteger(requestId) || requestId < 0 || requestId > 0xffff_ffff) throw StatefsError.EINVAL(`request id ${requestId}`, { op: 'encode' });
  putU32(out, 0, total - 4);
  out[4] = FRAME_VERSION;
  out[5] = kind;
  putU32(out, 6, requestId);
  out[10] = op;
  return out;
}

/** Reads the kind, request id and op of a complete, checked frame buffer. */
export function frameOf(buf: Uint8Array): Frame {
  const kind = buf[5];
  if (kind !== KIND_REQUEST && kind !== KIND_RESPONSE) throw fail(`kind ${String(kind)}`); // checked by checkHeader; narrows here
  const requestId = ((buf[6] ?? 0) | ((buf[7] ?? 0) << 8) | ((buf[8] ?? 0) << 16) | ((buf[9] ?? 0) << 24)) >>> 0;
  return { kind, requestId, op: buf[10] ?? 0, body: buf.subarray(HEADER_SIZE) };
}
