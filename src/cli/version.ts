import { readFileSync } from 'node:fs';

/**
 * The version in statefs's package.json: the first `package.json` named `statefs` above this
 * module (dist/src/cli/ when built or installed, src/cli/ when run from source).
 */
export function packageVersion(): string {
  for (let up = '../'; up.length <= 5 * 3; up += '../') {
    let text: string;
    try {
      text = readFileSync(new URL(`${up}package.json`, import.meta.url), 'utf8');
    } catch {
      continue;
    }
    const pkg: unknown = JSON.parse(text);
    if (typeof pkg === 'object' && pkg !== null && 'name' in pkg && pkg.name === 'statefs' && 'version' in pkg && typeof pkg.version === 'string') return pkg.version;
  }
  return 'unknown';
}
