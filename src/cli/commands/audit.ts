import type { Command } from 'commander';
import { formatAuditHead, parseAuditHead, verifyAuditLog } from '../../server/audit/verify.js';
import { defineAction } from '../action.js';
import { requiredOperand, stringOption, wantsJson } from '../command-input.js';
import { writeJson, writeLines } from '../output.js';

export function addAuditCommand(program: Command): void {
  const audit = program.command('audit').description("check the daemon's hash-chained audit log");
  const cmd = audit
    .command('verify')
    .description('check every line of an audit log and its chain (EINTEGRITY naming the first bad line)')
    .argument('<file>', 'audit log file')
    .option('--expect-head <seq:hash>', 'a head recorded earlier (the daemon prints it at shutdown): detects lines removed from the end')
    .option('--json', 'print a JSON object');
  defineAction(cmd, async () => {
    const file = requiredOperand(cmd, 0);
    const headText = stringOption(cmd, 'expectHead');
    const expectHead = headText === undefined ? undefined : parseAuditHead(headText);
    if (headText !== undefined && expectHead === undefined) cmd.error('error: --expect-head: use <seq>:<64 hex digits>, as printed by verify.');
    const { lines, head } = await verifyAuditLog(file, expectHead);
    if (wantsJson(cmd)) writeJson({ ok: true, lines, head });
    else writeLines([`ok ${lines} lines, head ${formatAuditHead(head)}`]);
  });
}
