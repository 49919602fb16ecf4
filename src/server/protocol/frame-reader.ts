import { StatefsError } from '../../errors.js';
import { DEFAULT_MAX_FRAME, HEADER_SIZE, checkHeader, frameOf, type Frame } from './frame.js';

/**
 * Splits a byte stream into frames. Accepts chunks of any size (one byte at a time works), checks
 * each header byte as it arrives, and never holds more than `maxFrameSize` bytes: the body buffer
 * is allocated only after the header passed. The first error (EINVAL, or ENOTSUP for an unknown
 * version) is sticky: the stream cannot be resynchronised, so the connection must be closed.
 *
 * How a stream is cut into chunks never changes what it yields: frames completed in a chunk before
 * a framing error are still returned (the error is then in `failure`, and thrown by the next push).
 */
export class FrameReader {
  private readonly header = new Uint8Array(HEADER_SIZE);
  private headerFill = 0;
  private frame: Uint8Array | undefined;
  private frameFill = 0;
  private failed: StatefsError | undefined;

  constructor(readonly maxFrameSize: number = DEFAULT_MAX_FRAME) {
    if (!Number.isSafeInteger(maxFrameSize) || maxFrameSize < HEADER_SIZE) {
      throw StatefsError.EINVAL(`max frame size ${maxFrameSize}`, { op: 'frame' });
    }
  }

  /** Bytes held for the frame in progress (0 between frames). */
  get buffered(): number {
    return this.frame === undefined ? this.headerFill : this.frameFill;
  }

  /** The framing error that stopped the stream, if one did. Check it after handling what `push` returned. */
  get failure(): StatefsError | undefined {
    return this.failed;
  }

  /**
   * The frames `chunk` completes. A framing error is thrown when no frame came before it in the
   * chunk; otherwise those frames are returned and the error is left in `failure`.
   */
  push(chunk: Uint8Array): Frame[] {
    if (this.failed !== undefined) throw this.failed;
    const out: Frame[] = [];
    try {
      this.take(chunk, out);
    } catch (err) {
      this.failed = err instanceof StatefsError ? err : StatefsError.EINVAL('frame', { op: 'frame', cause: err });
      this.frame = undefined; // release the partial frame: nothing more will be read
      this.headerFill = 0;
      if (out.length === 0) throw this.failed;
    }
    return out;
  }

  private take(chunk: Uint8Array, out: Frame[]): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.frame === undefined && this.headerFill === 0 && chunk.length - off >= HEADER_SIZE) {
        // A whole header in the chunk, and maybe the whole frame: then the frame is a view of the
        // chunk, not a copy (the decoders copy what they keep).
        const total = checkHeader(chunk.subarray(off, off + HEADER_SIZE), HEADER_SIZE, this.maxFrameSize) ?? HEADER_SIZE;
        if (total <= chunk.length - off) {
          out.push(frameOf(chunk.subarray(off, off + total)));
          off += total;
          continue;
        }
      }
      if (this.frame === undefined) {
        const n = Math.min(HEADER_SIZE - this.headerFill, chunk.length - off);
        this.header.set(chunk.subarray(off, off + n), this.headerFill);
        this.headerFill += n;
        off += n;
        const total = checkHeader(this.header, this.headerFill, this.maxFrameSize);
        if (total === undefined || this.headerFill < HEADER_SIZE) continue;
        this.frame = new Uint8Array(total);
        this.frame.set(this.header);
        this.frameFill = HEADER_SIZE;
      } else {
        const n = Math.min(this.frame.length - this.frameFill, chunk.length - off);
        this.frame.set(chunk.subarray(off, off + n), this.frameFill);
        this.frameFill += n;
        off += n;
      }
      if (this.frameFill === this.frame.length) {
        out.push(frameOf(this.frame));
        this.frame = undefined;
        this.frameFill = 0;
        this.headerFill = 0;
      }
    }
  }
}
