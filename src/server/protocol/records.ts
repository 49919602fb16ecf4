import type { GcResult } from '../../engine/compactor.js';
import type { MountInfo, SnapshotInfo, SnapshotPin, StoreStat, SubjectStat } from '../../engine/store-types.js';
import type { WireGcPlan } from './messages.js';
import type { WireReader } from './wire-reader.js';
import type { WireWriter } from './wire-writer.js';

/*
 * Structured results inside response bodies (primitives: wire-writer.ts):
 *
 *   SnapshotInfo  string name | u64 id | u64 keys | u64 bytes | u64 exclusive_bytes | opt string digest
 *   MountInfo     string path | string owner | string name
 *   GcResult      u64 freed_bytes | u64 moved_bytes | u64 scanned_bytes | u64 remaining_garbage_bytes
 *                 | u64 segments_freed
 *   GcPlan        GcResult | list of u32 segments | list of SnapshotPin pinned_by_snapshots
 *   SnapshotPin   string subject | string name | u64 exclusive_bytes
 *   StoreStat     u64 capacity | u64 segment_size | u64 segments | u64 segments_used | u64 segments_free
 *                 | u64 used_bytes | u64 live_bytes | u64 garbage_bytes | u64 free_bytes
 *                 | list of SubjectStat subjects | list of SnapshotPin snapshots
 *   SubjectStat   string subject | u64 keys | u64 live_bytes | u64 snapshot_only_bytes | u64 snapshots
 *
 * The minimum encoded size of each record bounds a list count before any element is read.
 */

export function writeSnapshotInfo(w: WireWriter, s: SnapshotInfo): void {
  w.str(s.name).u64(s.id).u64(s.keys).u64(s.bytes).u64(s.exclusiveBytes).optStr(s.digest);
}

export function readSnapshotInfos(r: WireReader): SnapshotInfo[] {
  const n = r.count(2 + 32 + 1);
  const out: SnapshotInfo[] = [];
  for (let i = 0; i < n; i++) {
    const base = { name: r.str(), id: r.u64(), keys: r.u64(), bytes: r.u64(), exclusiveBytes: r.u64() };
    const digest = r.optStr();
    out.push(digest === undefined ? base : { ...base, digest });
  }
  return out;
}

export function writeMountInfo(w: WireWriter, m: MountInfo): void {
  w.str(m.path).str(m.owner).str(m.name);
}

export function readMountInfos(r: WireReader): MountInfo[] {
  const n = r.count(6);
  const out: MountInfo[] = [];
  for (let i = 0; i < n; i++) out.push({ path: r.str(), owner: r.str(), name: r.str() });
  return out;
}

export function writeGcResult(w: WireWriter, g: GcResult): void {
  w.u64(g.freedBytes).u64(g.movedBytes).u64(g.scannedBytes).u64(g.remainingGarbageBytes).u64(g.segmentsFreed);
}

export function readGcResult(r: WireReader): GcResult {
  return { freedBytes: r.u64(), movedBytes: r.u64(), scannedBytes: r.u64(), remainingGarbageBytes: r.u64(), segmentsFreed: r.u64() };
}

function writePins(w: WireWriter, pins: readonly SnapshotPin[]): void {
  w.u32(pins.length);
  for (const p of pins) w.str(p.subject).str(p.name).u64(p.exclusiveBytes);
}

function readPins(r: WireReader): SnapshotPin[] {
  const n = r.count(2 + 2 + 8);
  const out: SnapshotPin[] = [];
  for (let i = 0; i < n; i++) out.push({ subject: r.str(), name: r.str(), exclusiveBytes: r.u64() });
  return out;
}

export function writeGcPlan(w: WireWriter, p: WireGcPlan): void {
  writeGcResult(w, p);
  w.u32(p.segments.length);
  for (const s of p.segments) w.u32(s);
  writePins(w, p.pinnedBySnapshots);
}

export function readGcPlan(r: WireReader): WireGcPlan {
  const result = readGcResult(r);
  const n = r.count(4);
  const segments: number[] = [];
  for (let i = 0; i < n; i++) segments.push(r.u32());
  return { ...result, segments, pinnedBySnapshots: readPins(r) };
}

export function writeStoreStat(w: WireWriter, s: StoreStat): void {
  w.u64(s.capacity).u64(s.segmentSize).u64(s.segments).u64(s.segmentsUsed).u64(s.segmentsFree);
  w.u64(s.usedBytes).u64(s.liveBytes).u64(s.garbageBytes).u64(s.freeBytes);
  w.u32(s.subjects.length);
  for (const x of s.subjects) w.str(x.subject).u64(x.keys).u64(x.liveBytes).u64(x.snapshotOnlyBytes).u64(x.usedBytes).u64(x.snapshots);
  writePins(w, s.snapshots);
}

export function readStoreStat(r: WireReader): StoreStat {
  const head = {
    capacity: r.u64(),
    segmentSize: r.u64(),
    segments: r.u64(),
    segmentsUsed: r.u64(),
    segmentsFree: r.u64(),
    usedBytes: r.u64(),
    liveBytes: r.u64(),
    garbageBytes: r.u64(),
    freeBytes: r.u64(),
  };
  const n = r.count(2 + 40);
  const subjects: SubjectStat[] = [];
  for (let i = 0; i < n; i++) subjects.push({ subject: r.str(), keys: r.u64(), liveBytes: r.u64(), snapshotOnlyBytes: r.u64(), usedBytes: r.u64(), snapshots: r.u64() });
  return { ...head, subjects, snapshots: readPins(r) };
}
