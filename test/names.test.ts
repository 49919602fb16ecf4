import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { KEY_ROOT, MAX_KEY_BYTES, checkKey, checkSubject } from '../src/engine/names.js';
import { StatefsError } from '../src/errors.js';
import { guardResources } from './hygiene.js';

guardResources();

/** The key rules as written in the spec, checked the slow way: what `checkKey` must agree with. */
function referenceKey(key: string, root: string): { bin: string } | { code: string } {
  if (!key.isWellFormed()) return { code: 'EINVAL' };
  const bin = Buffer.from(key, 'utf8').toString('latin1');
  if (bin.length > MAX_KEY_BYTES) return { code: 'ENAMETOOLONG' };
  if (!bin.startsWith(root) || bin.length === root.length) return { code: 'EINVAL' };
  if (bin.includes('\0')) return { code: 'EINVAL' };
  const components = bin.slice(root.length).split('/');
  if (components.some((c) => c === '' || c === '.' || c === '..')) return { code: 'EINVAL' };
  return { bin };
}

function actualKey(key: string, root: string): { bin: string } | { code: string } {
  try {
    return { bin: checkKey(key, 'get', 'app', root) };
  } catch (err) {
    if (err instanceof StatefsError) return { code: err.code };
    throw err;
  }
}

test('checkKey accepts exactly the canonical keys under its root, ASCII or not', () => {
  const part = fc.constantFrom('a', 'b', '.', '..', '...', '', 'é', '\0', 'x'.repeat(120), '.a', 'a.');
  const keyArb = fc.tuple(fc.constantFrom(KEY_ROOT, '/mnt/', '/state', '/', ''), fc.array(part, { maxLength: 6 })).map(([root, parts]) => root + parts.join('/'));
  fc.assert(
    fc.property(keyArb, fc.constantFrom(KEY_ROOT, '/mnt/'), (key, root) => {
      assert.deepEqual(actualKey(key, root), referenceKey(key, root), JSON.stringify(key));
    }),
    { seed: 20261126, numRuns: 3000 },
  );
  for (const key of ['/state/a/', '/state//a', '/state/a/./b', '/state/a/..', '/state/.', `/state/${'k'.repeat(MAX_KEY_BYTES)}`]) {
    assert.deepEqual(actualKey(key, KEY_ROOT), referenceKey(key, KEY_ROOT), key);
  }
});

test('checkSubject keeps refusing bad subjects after a good one passed', () => {
  assert.equal(checkSubject('billing', 'get'), 'billing');
  assert.equal(checkSubject('billing', 'get'), 'billing');
  for (const bad of ['', 'Bad', '-x', 'a b', undefined, 7]) {
    assert.throws(() => checkSubject(bad, 'get'), (err: unknown) => err instanceof StatefsError && (err.code === 'EINVAL' || err.code === 'ENAMETOOLONG'), String(bad));
  }
  assert.equal(checkSubject('billing', 'get'), 'billing');
});

test('a key that is only its root says that it needs a name after the root', () => {
  for (const root of [KEY_ROOT, '/mnt/']) {
    assert.throws(() => checkKey(root, 'put', 'app', root), {
      code: 'EINVAL',
      message: `EINVAL: invalid: key "${root}" has no name: a key needs one after ${root}, e.g. ${root}config`,
    });
  }
  assert.throws(() => checkKey('/state', 'put', 'app'), { code: 'EINVAL', message: 'EINVAL: invalid: key "/state" must be a path under /state/' });
});
