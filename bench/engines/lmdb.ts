// lmdb-js 3.x with its default durability: each write transaction is synced before its promise
// resolves (overlappingSync, the Linux default, resolves a put once flushed). Binary values,
// string keys (ordered-binary: byte order).
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { syncFile } from '../lib/disk.js';
import { hasMethods, loadPeer } from '../lib/peer-require.js';
import { prefixEnd } from '../lib/keys.js';
import type { BenchEngine, EngineFactory } from './engine.js';

interface LmdbDatabase {
  put(key: string, value: Uint8Array): Promise<boolean>;
  putSync(key: string, value: Uint8Array): boolean;
  transactionSync<T>(action: () => T): T;
  get(key: string): Uint8Array | undefined;
  /** A buffer reused by the next call: read it before the next get. */
  getBinaryFast(key: string): Uint8Array | undefined;
  getKeys(range: { start: string; end: string; limit: number }): Iterable<unknown>;
  backup(path: string, compact: boolean): Promise<void>;
  close(): Promise<void>;
}

interface LmdbModule {
  open(options: { path: string; encoding: 'binary' }): LmdbDatabase;
}

const DB_METHODS = ['put', 'putSync', 'transactionSync', 'get', 'getBinaryFast', 'getKeys', 'backup', 'close'];

function isLmdbModule(mod: unknown): mod is LmdbModule {
  return hasMethods(mod, ['open']);
}

function isLmdbDatabase(db: unknown): db is LmdbDatabase {
  return hasMethods(db, DB_METHODS);
}

const DATA = 'lmdb';

function openDb(dir: string): BenchEngine {
  const mod = loadPeer('lmdb');
  if (!isLmdbModule(mod)) throw new Error('lmdb: the module has no open()');
  const db: unknown = mod.open({ path: join(dir, DATA), encoding: 'binary' });
  if (!isLmdbDatabase(db)) throw new Error(`lmdb: the database lacks one of ${DB_METHODS.join(', ')}`);
  const copyDir = (tag: string): string => join(dir, `backup-${tag}`);
  return {
    put: async (key, value) => {
      await db.put(key, value);
    },
    bulkLoad: (count, keyOf, valueOf) => {
      // One write transaction for the whole load: one commit, one sync.
      db.transactionSync(() => {
        for (let i = 0; i < count; i++) db.putSync(keyOf(i), valueOf(i));
      });
      return Promise.resolve('putSync in one transactionSync (one commit and sync)');
    },
    getters: [
      { name: 'get', kind: 'sync', get: (key) => db.get(key) },
      { name: 'getBinaryFast', kind: 'sync', get: (key) => db.getBinaryFast(key) },
    ],
    list: (prefix, limit) => {
      let n = 0;
      for (const key of db.getKeys({ start: prefix, end: prefixEnd(prefix), limit })) if (typeof key === 'string') n++;
      return Promise.resolve(n);
    },
    snapshot: async (tag) => {
      // A copy of the environment (no compaction) into a directory, like the store's own layout.
      await mkdir(copyDir(tag));
      await db.backup(copyDir(tag), false);
      await syncFile(join(copyDir(tag), 'data.mdb'));
    },
    afterSnapshot: (tag) => rm(copyDir(tag), { recursive: true, force: true }),
    close: () => db.close(),
  };
}

export const lmdbEngine: EngineFactory = {
  create: (dir) => Promise.resolve(openDb(dir)),
  open: (dir) => Promise.resolve(openDb(dir)),
  dataPath: (dir) => join(dir, DATA),
  describe:
    'lmdb-js 3.x, `open({ path, encoding: "binary" })`: default sync (every commit flushed before its promise resolves); ' +
    'W1/W2 `await put()`, W3 one `transactionSync` of `putSync`s; W4 `get` and `getBinaryFast` (reused buffer); ' +
    'W7 `backup(path, false)` (file copy) + fdatasync.',
};
