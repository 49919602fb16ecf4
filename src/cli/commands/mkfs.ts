import { stat, unlink } from 'node:fs/promises';
import type { Command } from 'commander';
import { Store } from '../../engine/store.js';
import type { CreateOptions } from '../../engine/store-types.js';
import { isStatefsError } from '../../errors.js';
import { defineAction } from '../action.js';
import { flag, numberOption, requiredOperand, wantsJson } from '../command-input.js';
import { formatBytes } from '../format-bytes.js';
import { writeJson, writeLines } from '../output.js';
import { parseSize } from '../parse-number.js';

export function addMkfsCommand(program: Command): void {
  const cmd = program
    .command('mkfs')
    .description('create and format an image file')
    .argument('<image>', 'image file to create')
    .option('--size <size>', 'image size: bytes or 512K, 8MiB, 1G... (default 256MiB)', parseSize)
    .option('--segment-size <size>', 'segment size (default 1MiB; 256KiB below 64MiB images)', parseSize)
    .option('--force', 'replace an existing file')
    .option('--json', 'print a JSON object');
  defineAction(cmd, async () => {
    const image = requiredOperand(cmd, 0);
    const size = numberOption(cmd, 'size');
    const segmentSize = numberOption(cmd, 'segmentSize');
    const store = await createImage(image, {
      ...(size === undefined ? {} : { size }),
      ...(segmentSize === undefined ? {} : { segmentSize }),
      ...(flag(cmd, 'force') ? { force: true } : {}),
    });
    try {
      const stat = await store.stat();
      if (wantsJson(cmd)) writeJson({ ok: true });
      else writeLines([`${image}: ${formatBytes(stat.capacity)}, ${stat.segments} segments of ${formatBytes(stat.segmentSize)}`]);
    } finally {
      await store.close();
    }
  });
}

/**
 * `Store.create`, minus the half-made file it leaves when formatting fails (say, a size too
 * small for four segments): without this, the retry with a good size would fail with EEXIST.
 */
async function createImage(image: string, options: CreateOptions): Promise<Store> {
  const existed = await stat(image).then(
    () => true,
    () => false,
  );
  try {
    return await Store.create(image, options);
  } catch (err) {
    // EEXIST / EBUSY: the file is someone else's (or was there before); leave it alone.
    const ours = !existed && isStatefsError(err) && err.code !== 'EEXIST' && err.code !== 'EBUSY';
    if (ours) await unlink(image).catch(() => undefined);
    throw err;
  }
}
