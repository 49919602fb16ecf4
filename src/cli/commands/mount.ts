import { InvalidArgumentError, type Command } from 'commander';
import { defineAction } from '../action.js';
import { requiredOperand, stringListOption, wantsJson } from '../command-input.js';
import { EXIT_USAGE } from '../exit-codes.js';
import { writeJson } from '../output.js';
import { addSessionOptions, viaDaemon, withSession } from '../store-session.js';

export function addMountCommand(program: Command): void {
  const cmd = program
    .command('mount')
    .description("mount owner's snapshot read-only at /mnt/<label> in caller's namespace")
    .argument('<caller>', 'subject that sees the mount')
    .argument('<owner>', 'subject whose snapshot it is')
    .argument('<name>', 'snapshot name')
    .argument('<mountPath>', 'where it appears: /mnt/<label>')
    .option('--grant <caller:owner>', 'let caller mount snapshots of owner (repeatable)', collectGrant)
    .option('--json', 'print a JSON object');
  addSessionOptions(cmd);
  defineAction(cmd, async () => {
    const caller = requiredOperand(cmd, 0);
    const owner = requiredOperand(cmd, 1);
    const name = requiredOperand(cmd, 2);
    const mountPath = requiredOperand(cmd, 3);
    const grantList = stringListOption(cmd, 'grant');
    // A daemon's grants come from its policy file, not from the command line.
    if (grantList.length > 0 && viaDaemon(cmd)) {
      cmd.error('error: --grant works with --image only: over --connect, grants come from the daemon policy (statefs policy grant)', { exitCode: EXIT_USAGE, code: 'statefs.usage' });
    }
    const grants = grantTable(grantList);
    await withSession(cmd, 'write', (store) => store.mountSnap(caller, owner, name, mountPath), { grants });
    if (wantsJson(cmd)) writeJson({ ok: true });
  });
}

/** Commander's argParser for `--grant`: check the form, and collect every use into a list. */
function collectGrant(value: string, previous: string[] | undefined): string[] {
  splitGrant(value);
  return [...(previous ?? []), value];
}

/** `caller:owner` as its two parts; a usage error (via commander) when either is missing. */
function splitGrant(grant: string): [string, string] {
  const colon = grant.indexOf(':');
  const caller = grant.slice(0, colon);
  const owner = grant.slice(colon + 1);
  if (colon <= 0 || owner === '' || owner.includes(':')) throw new InvalidArgumentError('use caller:owner, such as app:cfg.');
  return [caller, owner];
}

/** The `grants` open option: for each caller, the owners it may mount. */
function grantTable(grants: readonly string[]): Record<string, string[]> {
  const table: Record<string, string[]> = {};
  for (const grant of grants) {
    const [caller, owner] = splitGrant(grant);
    (table[caller] ??= []).push(owner);
  }
  return table;
}
