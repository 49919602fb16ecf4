// classic-level 3.x (LevelDB): every durable write with `{ sync: true }`; utf8 keys, binary values.
import { join } from 'node:path';
import { hasMethods, peerExport } from '../lib/peer-require.js';
import { prefixEnd } from '../lib/keys.js';
import type { BenchEngine, EngineFactory } from './engine.js';

interface PutOp {
  type: 'put';
  key: string;
  value: Uint8Array;
}

interface ClassicLevelDb {
  open(): Promise<void>;
  put(key: string, value: Uint8Array, options: { sync: boolean }): Promise<void>;
  batch(ops: PutOp[], options: { sync: boolean }): Promise<void>;
  get(key: string): Promise<Uint8Array | undefined>;
  getSync(key: string): Uint8Array | undefined;
  keys(range: { gte: string; lt: string; limit: number }): { all(): Promise<unknown[]> };
  close(): Promise<void>;
}

type ClassicLevelCtor = new (location: string, options: { keyEncoding: 'utf8'; valueEncoding: 'view' }) => ClassicLevelDb;

const DB_METHODS = ['open', 'put', 'batch', 'get', 'getSync', 'keys', 'close'];
const BULK_CHUNK = 10_000;
const DATA = 'leveldb';

function isCtor(value: unknown): value is ClassicLevelCtor {
  return typeof value === 'function';
}

function isDb(db: unknown): db is ClassicLevelDb {
  return hasMethods(db, DB_METHODS);
}

async function openDb(dir: string): Promise<BenchEngine> {
  const ctor = peerExport('classic-level', 'ClassicLevel');
  if (!isCtor(ctor)) throw new Error('classic-level: the module has no ClassicLevel class');
  const db: unknown = new ctor(join(dir, DATA), { keyEncoding: 'utf8', valueEncoding: 'view' });
  if (!isDb(db)) throw new Error(`classic-level: the database lacks one of ${DB_METHODS.join(', ')}`);
  await db.open();
  return {
    put: (key, value) => db.put(key, value, { sync: true }),
    bulkLoad: async (count, keyOf, valueOf) => {
      // Unsynced batches, then the last one synced: LevelDB's sync write fsyncs the log, and
      // earlier logs' tables were synced when written, so everything is durable at the end.
      for (let from = 0; from < count; from += BULK_CHUNK) {
        const to = Math.min(count, from + BULK_CHUNK);
        const ops: PutOp[] = [];
        for (let i = from; i < to; i++) ops.push({ type: 'put', key: keyOf(i), value: valueOf(i) });
        await db.batch(ops, { sync: to === count });
      }
      return `batch of ${BULK_CHUNK}, only the last with { sync: true }`;
    },
    getters: [
      { name: 'get', kind: 'async', get: (key) => db.get(key) },
      { name: 'getSync', kind: 'sync', get: (key) => db.getSync(key) },
    ],
    list: async (prefix, limit) => (await db.keys({ gte: prefix, lt: prefixEnd(prefix), limit }).all()).length,
    close: () => db.close(),
  };
}

export const classicLevelEngine: EngineFactory = {
  create: (dir) => openDb(dir),
  open: (dir) => openDb(dir),
  dataPath: (dir) => join(dir, DATA),
  describe:
    'classic-level 3.x (LevelDB), utf8 keys, `view` values: W1/W2 `put(k, v, { sync: true })` awaited; W3 `batch()` of 10,000, ' +
    'the last with `{ sync: true }`; W4 `get` and `getSync`; W7: none (LevelDB snapshots are in-memory only).',
};
