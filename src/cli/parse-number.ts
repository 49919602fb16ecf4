import { InvalidArgumentError } from 'commander';

const UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };
const SIZE_RE = /^(\d+)(?:([kmg])(?:ib)?)?$/i;

/** A byte count: plain bytes or a binary suffix (K/KiB, M/MiB, G/GiB). Commander turns the throw into a usage error. */
export function parseSize(text: string): number {
  const match = SIZE_RE.exec(text.trim());
  const digits = match?.[1];
  const unit = UNITS[(match?.[2] ?? '').toLowerCase()];
  if (digits === undefined || unit === undefined) throw new InvalidArgumentError('use bytes or a size like 8MiB, 512K, 1G.');
  const bytes = Number(digits) * unit;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new InvalidArgumentError('the size must be a positive whole number of bytes.');
  return bytes;
}

/** A positive whole number, such as a page size. */
export function parseCount(text: string): number {
  const n = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError('use a positive whole number.');
  return n;
}
