// better-sqlite3 12 in WAL mode with synchronous=FULL: every commit fsyncs the WAL.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { syncFile } from '../lib/disk.js';
import { hasMethods, loadPeer } from '../lib/peer-require.js';
import { prefixEnd } from '../lib/keys.js';
import type { BenchEngine, EngineFactory } from './engine.js';

interface Statement {
  run(...params: unknown[]): unknown;
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
  pluck(): Statement;
}

interface SqliteDb {
  pragma(source: string): unknown;
  exec(source: string): unknown;
  prepare(source: string): Statement;
  transaction<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void;
  close(): unknown;
}

type SqliteCtor = new (path: string) => SqliteDb;

const DB_METHODS = ['pragma', 'exec', 'prepare', 'transaction', 'close'];
const STATEMENT_METHODS = ['run', 'get', 'all', 'pluck'];
const DATA = 'kv.sqlite';

function isCtor(value: unknown): value is SqliteCtor {
  return typeof value === 'function';
}

function isDb(db: unknown): db is SqliteDb {
  return hasMethods(db, DB_METHODS);
}

function isStatement(st: unknown): st is Statement {
  return hasMethods(st, STATEMENT_METHODS);
}

function prepare(db: SqliteDb, source: string): Statement {
  const st: unknown = db.prepare(source);
  if (!isStatement(st)) throw new Error(`better-sqlite3: a statement lacks one of ${STATEMENT_METHODS.join(', ')}`);
  return st;
}

function openDb(dir: string): BenchEngine {
  const ctor = loadPeer('better-sqlite3');
  if (!isCtor(ctor)) throw new Error('better-sqlite3: the module is not the Database class');
  const db: unknown = new ctor(join(dir, DATA));
  if (!isDb(db)) throw new Error(`better-sqlite3: the database lacks one of ${DB_METHODS.join(', ')}`);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID');
  const insert = prepare(db, 'INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)');
  const select = prepare(db, 'SELECT v FROM kv WHERE k = ?').pluck();
  const range = prepare(db, 'SELECT k FROM kv WHERE k >= ? AND k < ? ORDER BY k LIMIT ?').pluck();
  const vacuumInto = prepare(db, 'VACUUM INTO ?');
  const putAll = db.transaction((writes: readonly (readonly [string, Uint8Array])[]) => {
    for (const [key, value] of writes) insert.run(key, value);
  });
  const putRange = db.transaction((count: number, keyOf: (i: number) => string, valueOf: (i: number) => Uint8Array) => {
    for (let i = 0; i < count; i++) insert.run(keyOf(i), valueOf(i));
  });
  const copyPath = (tag: string): string => join(dir, `vacuum-${tag}.sqlite`);
  const get = (key: string): Uint8Array | undefined => {
    const v = select.get(key);
    return v instanceof Uint8Array ? v : undefined;
  };
  return {
    put: (key, value) => {
      insert.run(key, value); // one autocommit transaction: the WAL is fsynced before run() returns
      return Promise.resolve();
    },
    putGroup: (writes) => {
      putAll(writes);
      return Promise.resolve();
    },
    bulkLoad: (count, keyOf, valueOf) => {
      putRange(count, keyOf, valueOf);
      return Promise.resolve('INSERTs in one transaction (one commit and fsync)');
    },
    getters: [{ name: 'get', kind: 'sync', get }],
    list: (prefix, limit) => Promise.resolve(range.all(prefix, prefixEnd(prefix), limit).length),
    snapshot: async (tag) => {
      vacuumInto.run(copyPath(tag));
      await syncFile(copyPath(tag));
    },
    afterSnapshot: (tag) => rm(copyPath(tag), { force: true }),
    close: () => {
      db.close();
      return Promise.resolve();
    },
  };
}

export const sqliteEngine: EngineFactory = {
  create: (dir) => Promise.resolve(openDb(dir)),
  open: (dir) => Promise.resolve(openDb(dir)),
  dataPath: (dir) => dir,
  describe:
    'better-sqlite3 12, `journal_mode=WAL`, `synchronous=FULL`, table `kv(k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID`: ' +
    'W1 one INSERT per autocommit transaction; W2 64 INSERTs per transaction; W3 one transaction; ' +
    'W4 prepared SELECT; W7 `VACUUM INTO` + fdatasync. On-disk size: the database, WAL and shm files.',
};
