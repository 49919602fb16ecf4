import { Command } from 'commander';
import { addAuditCommand } from './commands/audit.js';
import { addDelCommand } from './commands/del.js';
import { addDiffCommand } from './commands/diff.js';
import { addFsckCommand } from './commands/fsck.js';
import { addGcCommand } from './commands/gc.js';
import { addGetCommand } from './commands/get.js';
import { addLsCommand } from './commands/ls.js';
import { addMkfsCommand } from './commands/mkfs.js';
import { addMountCommand } from './commands/mount.js';
import { addMountsCommand } from './commands/mounts.js';
import { addPolicyCommand } from './commands/policy.js';
import { addPutCommand } from './commands/put.js';
import { addSelftestCommand } from './commands/selftest.js';
import { addServeCommand } from './commands/serve.js';
import { addRestoreCommand, addSnapRmCommand } from './commands/snapshot-change.js';
import { addSnapshotCommand } from './commands/snapshot.js';
import { addSnapsCommand } from './commands/snaps.js';
import { addStatCommand } from './commands/stat.js';
import { addTxnCommand } from './commands/txn.js';
import { addUmountCommand } from './commands/umount.js';
import { addVerifyCommand } from './commands/verify.js';
import { hintAfterError } from './help-hint.js';
import { packageVersion } from './version.js';

/**
 * The `statefs` command tree. Settings are made before the subcommands are added, which copy
 * them: commander throws instead of exiting (the entry point picks the status). The usage hints
 * are set last, once every command exists.
 */
export function buildProgram(): Command {
  const program = new Command('statefs')
    .description('StateFS images from the command line: create, read, write, list, inspect, collect garbage, snapshot, mount and check; serve an image (the daemon)')
    .version(packageVersion())
    .exitOverride()
    .configureOutput({
      outputError: (message, write) => {
        write(`statefs: ${message.replace(/^error: /, '')}`);
      },
    });
  addMkfsCommand(program);
  addPutCommand(program);
  addGetCommand(program);
  addDelCommand(program);
  addLsCommand(program);
  addStatCommand(program);
  addGcCommand(program);
  addTxnCommand(program);
  addSnapshotCommand(program);
  addSnapsCommand(program);
  addSnapRmCommand(program);
  addRestoreCommand(program);
  addDiffCommand(program);
  addVerifyCommand(program);
  addFsckCommand(program);
  addMountCommand(program);
  addUmountCommand(program);
  addMountsCommand(program);
  addAuditCommand(program);
  addPolicyCommand(program);
  addServeCommand(program);
  addSelftestCommand(program);
  hintAfterError(program, 'statefs');
  return program;
}
