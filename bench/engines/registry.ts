// The engines by name, and whether each can run here (peers need `npm run bench`'s install).
import type { EngineName } from '../lib/config.js';
import { peerInstalled } from '../lib/peer-require.js';
import { classicLevelEngine } from './classic-level.js';
import type { EngineFactory } from './engine.js';
import { lmdbEngine } from './lmdb.js';
import { sqliteEngine } from './sqlite.js';
import { statefsEngine } from './statefs.js';

export const ENGINES: Record<EngineName, EngineFactory> = {
  statefs: statefsEngine,
  lmdb: lmdbEngine,
  'classic-level': classicLevelEngine,
  sqlite: sqliteEngine,
};

/** The npm package each peer needs; StateFS needs none. */
const PEER_PACKAGE: Record<EngineName, string | undefined> = {
  statefs: undefined,
  lmdb: 'lmdb',
  'classic-level': 'classic-level',
  sqlite: 'better-sqlite3',
};

export function engineMissing(name: EngineName): string | undefined {
  const pkg = PEER_PACKAGE[name];
  return pkg === undefined || peerInstalled(pkg) ? undefined : `${pkg} is not installed in bench/node_modules`;
}
