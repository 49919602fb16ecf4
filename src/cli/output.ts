import { isStatefsError, type ErrorCode } from '../errors.js';
import { EXIT_FAILURE } from './exit-codes.js';

export function writeJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

export function writeLines(lines: readonly string[]): void {
  if (lines.length > 0) process.stdout.write(lines.map((line) => `${line}\n`).join(''));
}

interface Failure {
  code: ErrorCode;
  /** The message without the `CODE: ` prefix a StatefsError carries. */
  message: string;
}

function describeFailure(err: unknown): Failure {
  if (isStatefsError(err)) {
    const prefix = `${err.code}: `;
    return { code: err.code, message: err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message };
  }
  // Anything else is a fault below the store's contract (or a bug): report it as EIO.
  return { code: 'EIO', message: err instanceof Error ? err.message : String(err) };
}

/** The line a failure is reported with: `statefs: CODE: message` and a newline. */
export function failureLine(err: unknown): string {
  return lineOf(describeFailure(err));
}

function lineOf({ code, message }: Failure): string {
  return `statefs: ${code}: ${message}\n`;
}

/** `statefs: CODE: message` on stderr (and the error object on stdout with --json); exit status 1. */
export function reportFailure(err: unknown, json: boolean): void {
  const failure = describeFailure(err);
  process.stderr.write(lineOf(failure));
  if (json) writeJson({ error: failure });
  process.exitCode = EXIT_FAILURE;
}

/** A reader that stops early (`statefs ls | head`) is not an error; drop the rest of the output. */
export function ignoreBrokenPipe(): void {
  process.stdout.on('error', (err: Error) => {
    if (!('code' in err) || err.code !== 'EPIPE') throw err;
  });
}
