import { stat } from 'node:fs/promises';
import { Presets, SingleBar } from 'cli-progress';
import type { Command } from 'commander';
import { fsck, type FsckFinding, type FsckOptions, type FsckReport } from '../../engine/fsck.js';
import { defineAction } from '../action.js';
import { flag, requiredOperand, wantsJson } from '../command-input.js';
import { EXIT_NOT_CHECKED } from '../exit-codes.js';
import { reportFailure, writeJson, writeLines } from '../output.js';

/** Images larger than this get a progress bar (on a terminal, without --json). */
const PROGRESS_MIN_BYTES = 4 * 1024 * 1024;

export function addFsckCommand(program: Command): void {
  const cmd = program
    .command('fsck')
    .description('check an image for damage (exit 0 clean, 1 repairable or repaired, 2 unrecoverable, 75 not checked: missing, locked or unreadable); --repair fixes what it can')
    .argument('<image>', 'image file')
    .option('--repair', 'fix repairable problems (appends ABORT / UMOUNT records, rewrites a damaged superblock slot), then re-check')
    .option('--dry-run', 'with --repair: print what the repair would do and write nothing (alone: the plain check, which never writes)')
    .option('--json', 'print the report as a JSON object');
  defineAction(cmd, async () => {
    const image = requiredOperand(cmd, 0);
    const repair = flag(cmd, 'repair');
    const dryRun = flag(cmd, 'dryRun');
    const json = wantsJson(cmd);

    const bar = json || !process.stderr.isTTY ? undefined : await progressBar(image);
    const options: FsckOptions = { repair, dryRun };
    if (bar !== undefined) {
      options.onProgress = (fraction, phase) => {
        bar.update(Math.round(fraction * 100), { phase });
      };
    }
    let report: FsckReport;
    try {
      report = await fsck(image, options);
    } catch (err) {
      // The image was never checked: the usual failure line, with a status fsck's 0/1/2 cannot be.
      reportFailure(err, json);
      process.exitCode = EXIT_NOT_CHECKED;
      return;
    } finally {
      bar?.stop();
    }

    if (json) writeJson(report);
    else {
      const plan = repair && dryRun && report.exitCode === 1 ? repairPlan(report.findings) : [];
      writeLines([
        ...report.findings.map((f) => `${f.offset} ${f.severity} ${f.reason}: ${f.message}`),
        ...(plan.length > 0 ? ['repair plan (dry run: nothing was written):', ...plan.map((step) => `  ${step}`)] : []),
        summary(report),
      ]);
    }
    // fsck's own statuses: 0 clean, 1 repairable or repaired, 2 unrecoverable. A failure before the
    // check (no image, a locked image) was reported above with status 75.
    process.exitCode = report.exitCode;
  });
}

/** A bar on stderr, started at 0%, for an image large enough to be worth one; undefined otherwise. */
async function progressBar(image: string): Promise<SingleBar | undefined> {
  // An image that cannot be stat'ed is left to fsck, which reports why.
  const size = await stat(image).then(
    (s) => s.size,
    () => 0,
  );
  if (size <= PROGRESS_MIN_BYTES) return undefined;
  const bar = new SingleBar(
    { stream: process.stderr, format: 'fsck [{bar}] {percentage}% {phase}', hideCursor: true, clearOnComplete: true },
    Presets.shades_classic,
  );
  bar.start(100, 0, { phase: 'starting' });
  return bar;
}

function summary(report: FsckReport): string {
  if (report.exitCode === 0) return 'clean';
  if (report.exitCode === 2) return 'unrecoverable';
  return report.repaired ? 'repaired' : 'repairable problems found (run with --repair)';
}

/** What `--repair` would do for each repairable finding (the steps fsck's repair takes). */
function repairPlan(findings: readonly FsckFinding[]): string[] {
  const steps: string[] = [];
  for (const f of findings) {
    if (f.severity !== 'repairable') continue;
    switch (f.reason) {
      case 'superblock-a-damaged':
        steps.push(`rewrite superblock slot A from slot B at byte ${f.offset}`);
        break;
      case 'superblock-b-damaged':
        steps.push(`rewrite superblock slot B from slot A at byte ${f.offset}`);
        break;
      case 'orphaned-transaction': {
        const txn = /^transaction (.+) was prepared but never committed or aborted$/.exec(f.message)?.[1];
        steps.push(`append ABORT for ${txn === undefined ? 'the transaction' : `transaction ${txn}`} prepared at byte ${f.offset}`);
        break;
      }
      case 'mount-missing-snapshot': {
        const mount = /^(.+) mounts (.+), which does not exist$/.exec(f.message);
        steps.push(mount === null ? `append UMOUNT for the mount: ${f.message}` : `append UMOUNT for ${mount[1] ?? ''} (snapshot ${mount[2] ?? ''} does not exist)`);
        break;
      }
      default:
        steps.push(`no automatic repair for ${f.reason} at byte ${f.offset}`);
    }
  }
  return steps;
}
