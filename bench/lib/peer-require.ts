// The peers live in bench/node_modules (bench/package.json), not in the main package: they are
// loaded at run time by name, never imported statically, and typed by small local interfaces
// whose shape each adapter checks right where it takes the module.
import { createRequire } from 'node:module';
import { BENCH_PACKAGE_JSON } from './paths.js';

const requireFromBench = createRequire(BENCH_PACKAGE_JSON);

export function peerInstalled(name: string): boolean {
  try {
    requireFromBench.resolve(name);
    return true;
  } catch {
    return false;
  }
}

export function loadPeer(name: string): unknown {
  const mod: unknown = requireFromBench(name);
  return mod;
}

/** One named export of a peer module (undefined if the module is not an object or lacks it). */
export function peerExport(name: string, exportName: string): unknown {
  const mod = loadPeer(name);
  return (typeof mod === 'object' || typeof mod === 'function') && mod !== null ? Reflect.get(mod, exportName) : undefined;
}

/** True when `value` is an object or function with a function under each of `names`. */
export function hasMethods(value: unknown, names: readonly string[]): boolean {
  if ((typeof value !== 'object' && typeof value !== 'function') || value === null) return false;
  return names.every((name) => typeof Reflect.get(value, name) === 'function');
}
