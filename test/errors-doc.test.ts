import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ERROR_CODES, StatefsError, type ErrorCode } from '../src/errors.js';
import { guardResources } from './hygiene.js';

guardResources();

/** The error table of docs/storage/errors.md (tests run from dist/test/, so the doc is two levels up). */
const DOC = new URL('../../docs/storage/errors.md', import.meta.url);

/** A table row: | `CODE` | wire | when | */
const ROW = /^\|\s*`([A-Z]+)`\s*\|\s*(\d+)\s*\|.*\|\s*$/;

function documentedCodes(): [string, number][] {
  const rows: [string, number][] = [];
  for (const line of readFileSync(DOC, 'utf8').split('\n')) {
    const m = ROW.exec(line);
    if (m === null) continue;
    const [, code = '', wire = ''] = m;
    rows.push([code, Number(wire)]);
  }
  return rows;
}

function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERROR_CODES, code);
}

/** Call the static factory named `code` with placeholder arguments. */
function make(code: ErrorCode): StatefsError {
  return code === 'ENOTDIR' ? StatefsError.ENOTDIR('/state/a/b', '/state/a') : StatefsError[code]('placeholder');
}

test('errors.md lists exactly the codes of ERROR_CODES, with their wire numbers, in order', () => {
  const documented = documentedCodes();
  assert.ok(documented.length > 0, 'no table rows found in errors.md');
  assert.deepEqual(documented, Object.entries(ERROR_CODES));
});

test('errors.md lists codes in ascending wire-number order, each number once', () => {
  const wires = documentedCodes().map(([, wire]) => wire);
  assert.deepEqual(wires, [...wires].sort((a, b) => a - b));
  assert.equal(new Set(wires).size, wires.length);
});

test('every code has a static factory that makes an error with that code and wire number', () => {
  for (const [code, wire] of documentedCodes()) {
    assert.ok(isErrorCode(code), `${code} is not an ErrorCode`);
    assert.equal(typeof StatefsError[code], 'function', `StatefsError.${code} is not a factory`);
    const err = make(code);
    assert.ok(err instanceof StatefsError);
    assert.equal(err.code, code);
    assert.equal(err.errno, wire);
    assert.equal(err.errno, ERROR_CODES[code]);
    assert.ok(err.message.startsWith(`${code}: `), `${code} message: ${err.message}`);
  }
});

test('factories carry the context they are given', () => {
  const err = StatefsError.EINTEGRITY('bad record', { op: 'open', subject: 'app', key: '/state/a', name: 'snap', offset: 4096 });
  assert.equal(err.op, 'open');
  assert.equal(err.subject, 'app');
  assert.equal(err.key, '/state/a');
  assert.equal(err.target, 'snap');
  assert.equal(err.offset, 4096);
  const notDir = StatefsError.ENOTDIR('/state/a/b', '/state/a');
  assert.equal(notDir.key, '/state/a/b');
});
