import type { Command } from 'commander';
import { defineAction } from '../action.js';
import { requiredOperand, requiredStringOption, wantsJson } from '../command-input.js';
import { writeJson, writeLines } from '../output.js';
import { withStore } from '../store-session.js';

export function addSnapshotCommand(program: Command): void {
  const cmd = program
    .command('snapshot')
    .description("take a named snapshot of a subject's state; prints the markers the store emits")
    .argument('<subject>', 'subject name')
    .argument('<name>', 'snapshot name')
    .requiredOption('--image <path>', 'image file')
    .option('--json', 'print a JSON object');
  defineAction(cmd, async () => {
    const subject = requiredOperand(cmd, 0);
    const name = requiredOperand(cmd, 1);
    const markers: string[] = [];
    await withStore(requiredStringOption(cmd, 'image'), 'write', async (store) => {
      // Listen before the call (the marker comes before `snapshot` resolves), and until the store
      // is closed: background work such as a GC cycle may emit markers of its own meanwhile.
      store.on('marker', (line: unknown) => {
        markers.push(String(line));
      });
      // The content digest is computed in the background; close() waits until it is recorded.
      await store.snapshot(subject, name);
    });
    if (wantsJson(cmd)) writeJson({ ok: true, markers });
    else writeLines(markers);
  });
}
