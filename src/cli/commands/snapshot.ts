import type { Command } from 'commander';
import { defineAction } from '../action.js';
import { requiredOperand, wantsJson } from '../command-input.js';
import { writeJson, writeLines } from '../output.js';
import { addSessionOptions, viaDaemon, withSession } from '../store-session.js';

export function addSnapshotCommand(program: Command): void {
  const cmd = program
    .command('snapshot')
    .description("take a named snapshot of a subject's state; prints the markers the store emits")
    .argument('<subject>', 'subject name')
    .argument('<name>', 'snapshot name')
    .option('--json', 'print a JSON object');
  addSessionOptions(cmd);
  defineAction(cmd, async () => {
    const subject = requiredOperand(cmd, 0);
    const name = requiredOperand(cmd, 1);
    const markers: string[] = [];
    // Embedded, the markers are the store's own: listened to from open until close (the marker
    // comes before `snapshot` resolves, and background work such as a GC cycle may emit markers of
    // its own meanwhile). The content digest is computed in the background; close() waits for it.
    await withSession(cmd, 'write', (store) => store.snapshot(subject, name), {
      onMarker: (line) => {
        markers.push(line);
      },
    });
    // Over --connect the daemon's markers go to its own stdout, out of our sight. The daemon only
    // answers once the snapshot record is durable, which is when the store emits this marker, so
    // print the same line here.
    if (viaDaemon(cmd)) markers.push(`statefs: snapshot subject=${subject} name=${name}`);
    if (wantsJson(cmd)) writeJson({ ok: true, markers });
    else writeLines(markers);
  });
}
