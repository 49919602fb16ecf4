import { InvalidArgumentError, type Command } from 'commander';
import { checkSubject } from '../../engine/names.js';
import { StatefsError, isStatefsError } from '../../errors.js';
import { loadPolicy, savePolicy } from '../../server/policy/policy-file.js';
import { GRANT_RIGHTS, RIGHTS, checkQuota, emptyPolicy, hashToken, newToken, type Policy, type Right, type SubjectPolicy } from '../../server/policy/policy.js';
import { defineAction } from '../action.js';
import { numberOption, requiredOperand, stringListOption, wantsJson } from '../command-input.js';
import { formatBytes } from '../format-bytes.js';
import { writeJson, writeLines } from '../output.js';
import { parseSize } from '../parse-number.js';

const DEFAULT_RIGHTS = 'read,write';
const DEFAULT_GRANT_RIGHTS = 'read,mount';
/** How much of a token hash `show` prints. */
const HASH_PREFIX = 8;

/** `read,write`: a comma-separated list of rights from `allowed`, in canonical order. Bad input is a usage error. */
function parseRights(text: string, allowed: readonly Right[]): Right[] {
  const names = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const name of names) {
    if (!allowed.some((r) => r === name)) throw new InvalidArgumentError(`unknown right ${JSON.stringify(name)}: use ${allowed.join(', ')}.`);
  }
  return allowed.filter((r) => names.includes(r));
}

/** The `--rights` option, parsed (and checked) by `parseRights`; absent: `fallback`. */
function rightsOption(cmd: Command, fallback: string, allowed: readonly Right[]): Right[] {
  if (cmd.getOptionValue('rights') === undefined) return parseRights(fallback, allowed);
  const names = stringListOption(cmd, 'rights');
  return allowed.filter((r) => names.includes(r));
}

/** The policy file, or an empty policy if there is none yet. */
async function loadOrEmpty(path: string): Promise<Policy> {
  try {
    return await loadPolicy(path);
  } catch (err) {
    if (isStatefsError(err) && err.code === 'ENOENT') return emptyPolicy();
    throw err;
  }
}

function entryOf(policy: Policy, file: string, subject: string, op: string): SubjectPolicy {
  const entry = policy.subjects.get(subject);
  if (entry === undefined) throw StatefsError.ENOENT(`subject ${subject} in ${file}`, { op, subject });
  return entry;
}

function describeQuota(entry: SubjectPolicy): string {
  return entry.quota === undefined ? 'none' : `soft ${formatBytes(entry.quota.soft)}, hard ${formatBytes(entry.quota.hard)}`;
}

export function addPolicyCommand(program: Command): void {
  const policy = program.command('policy').description("edit the daemon's policy file: subjects, tokens, rights, grants and quotas");

  const add = policy
    .command('add-subject')
    .description('add a subject (creating the file if missing); prints its new token once, on the last line')
    .argument('<policy>', 'policy file')
    .argument('<subject>', 'subject name')
    .option('--rights <list>', `comma-separated rights from ${RIGHTS.join(',')} (default ${DEFAULT_RIGHTS})`, (text) => parseRights(text, RIGHTS))
    .option('--json', 'print a JSON object (it holds the token)');
  defineAction(add, async () => {
    const file = requiredOperand(add, 0);
    const subject = checkSubject(requiredOperand(add, 1), 'policy.add-subject');
    const rights = rightsOption(add, DEFAULT_RIGHTS, RIGHTS);
    const doc = await loadOrEmpty(file);
    if (doc.subjects.has(subject)) throw StatefsError.EEXIST(`subject ${subject} in ${file}`, { op: 'policy.add-subject', subject });
    const token = newToken();
    doc.subjects.set(subject, { tokenSha256: hashToken(token), rights, grants: [] });
    await savePolicy(file, doc);
    if (wantsJson(add)) writeJson({ ok: true, subject, rights, token });
    else writeLines([`added ${subject} to ${file} with rights ${rights.join(',') || '(none)'}; its token, shown only this once:`, token]);
  });

  const grant = policy
    .command('grant')
    .description("let <subject> use rights on <owner>'s data (replaces an earlier grant)")
    .argument('<policy>', 'policy file')
    .argument('<subject>', 'the subject that receives the grant')
    .argument('<owner>', 'the subject whose data it may use')
    .option('--rights <list>', `comma-separated rights from ${GRANT_RIGHTS.join(',')} (default ${DEFAULT_GRANT_RIGHTS})`, (text) => parseRights(text, GRANT_RIGHTS))
    .option('--json', 'print a JSON object');
  defineAction(grant, async () => {
    const op = 'policy.grant';
    const file = requiredOperand(grant, 0);
    const subject = checkSubject(requiredOperand(grant, 1), op);
    const owner = checkSubject(requiredOperand(grant, 2), op);
    const rights = rightsOption(grant, DEFAULT_GRANT_RIGHTS, GRANT_RIGHTS);
    if (owner === subject) throw StatefsError.EINVAL(`${subject} needs no grant for its own data`, { op, subject });
    const doc = await loadPolicy(file);
    const entry = entryOf(doc, file, subject, op);
    entry.grants = [...entry.grants.filter((g) => g.owner !== owner), { owner, rights }];
    await savePolicy(file, doc);
    if (wantsJson(grant)) writeJson({ ok: true, subject, owner, rights });
    else writeLines([`${subject} may now use ${rights.join(',') || '(nothing)'} on ${owner}'s data`]);
  });

  const quota = policy
    .command('quota')
    .description("set a subject's soft and hard quota (live plus snapshot-held bytes)")
    .argument('<policy>', 'policy file')
    .argument('<subject>', 'subject name')
    .requiredOption('--soft <size>', 'warn above this: bytes or 512K, 8MiB, 1G...', parseSize)
    .requiredOption('--hard <size>', 'refuse writes above this (EDQUOTA): bytes or 512K, 8MiB, 1G...', parseSize)
    .option('--json', 'print a JSON object');
  defineAction(quota, async () => {
    const op = 'policy.quota';
    const file = requiredOperand(quota, 0);
    const subject = checkSubject(requiredOperand(quota, 1), op);
    const soft = numberOption(quota, 'soft');
    const hard = numberOption(quota, 'hard');
    if (soft === undefined || hard === undefined) throw new TypeError('statefs policy quota: --soft and --hard are required');
    const q = checkQuota(soft, hard);
    const doc = await loadPolicy(file);
    const entry = entryOf(doc, file, subject, op);
    entry.quota = q;
    await savePolicy(file, doc);
    if (wantsJson(quota)) writeJson({ ok: true, subject, quota: q });
    else writeLines([`${subject}: quota ${describeQuota(entry)}`]);
  });

  const rm = policy
    .command('rm')
    .description('remove a subject: its token stops working')
    .argument('<policy>', 'policy file')
    .argument('<subject>', 'subject name')
    .option('--json', 'print a JSON object');
  defineAction(rm, async () => {
    const op = 'policy.rm';
    const file = requiredOperand(rm, 0);
    const subject = checkSubject(requiredOperand(rm, 1), op);
    const doc = await loadPolicy(file);
    entryOf(doc, file, subject, op);
    doc.subjects.delete(subject);
    await savePolicy(file, doc);
    if (wantsJson(rm)) writeJson({ ok: true, subject });
    else writeLines([`removed ${subject} from ${file}`]);
  });

  const show = policy
    .command('show')
    .description('list subjects, rights, grants and quotas')
    .argument('<policy>', 'policy file')
    .option('--json', 'print a JSON object');
  defineAction(show, async () => {
    const doc = await loadPolicy(requiredOperand(show, 0));
    const subjects = [...doc.subjects.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    if (wantsJson(show)) {
      writeJson({
        version: doc.version,
        subjects: subjects.map(([subject, e]) => ({
          subject,
          tokenSha256Prefix: e.tokenSha256.slice(0, HASH_PREFIX),
          rights: e.rights,
          grants: e.grants,
          ...(e.quota === undefined ? {} : { quota: e.quota }),
        })),
      });
      return;
    }
    const lines: string[] = [];
    for (const [subject, e] of subjects) {
      lines.push(`${subject}: rights ${e.rights.join(',') || '(none)'}; token sha256 ${e.tokenSha256.slice(0, HASH_PREFIX)}...; quota ${describeQuota(e)}`);
      for (const g of e.grants) lines.push(`  grant on ${g.owner}: ${g.rights.join(',') || '(none)'}`);
    }
    if (lines.length === 0) lines.push('no subjects');
    writeLines(lines);
  });
}
