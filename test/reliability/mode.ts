/**
 * Fast or thorough (issue 9): `npm test` runs the fast mode; `STATEFS_RELIABILITY=thorough` runs
 * every reliability suite at its full size. Every suite is seeded: `STATEFS_SEED` replays a run.
 */
export const thorough = process.env.STATEFS_RELIABILITY === 'thorough';

/** The fast-mode or the thorough-mode size of something. */
export function byMode<T>(fast: T, thorough_: T): T {
  return thorough ? thorough_ : fast;
}

/** `STATEFS_SEED` when set (a whole number), else `fallback` (fixed so CI runs are repeatable). */
export function seedFromEnv(fallback: number): number {
  const raw = process.env.STATEFS_SEED;
  if (raw === undefined || raw === '') return fallback;
  const seed = Number(raw);
  if (!Number.isSafeInteger(seed)) throw new Error(`STATEFS_SEED=${raw} is not a whole number`);
  return seed;
}

/** A positive whole number from the environment, else `fallback`. */
export function countFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${name}=${raw} is not a positive whole number`);
  return n;
}
