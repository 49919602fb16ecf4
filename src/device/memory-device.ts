import { StatefsError } from '../errors.js';
import type { BlockDevice } from './device.js';

/** An in-memory device. Every write is immediately "durable": use `FaultDevice` to model crashes. */
export class MemoryDevice implements BlockDevice {
  readonly bytes: Uint8Array;

  constructor(sizeOrBytes: number | Uint8Array) {
    this.bytes = typeof sizeOrBytes === 'number' ? new Uint8Array(sizeOrBytes) : sizeOrBytes;
  }

  get size(): number {
    return this.bytes.length;
  }

  read(offset: number, length: number): Promise<Uint8Array> {
    checkRange(this.size, offset, length, 'read');
    return Promise.resolve(this.bytes.slice(offset, offset + length));
  }

  readSync(offset: number, into: Uint8Array): void {
    checkRange(this.size, offset, into.length, 'read');
    into.set(this.bytes.subarray(offset, offset + into.length));
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    checkRange(this.size, offset, data.length, 'write');
    this.bytes.set(data, offset);
    return Promise.resolve();
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

export function checkRange(size: number, offset: number, length: number, op: string): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw StatefsError.EIO(`${op} of ${length} bytes at ${offset} is outside the device (${size} bytes)`, { op, offset });
  }
}
