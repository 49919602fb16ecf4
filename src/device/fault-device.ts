import { StatefsError, type ErrorCode } from '../errors.js';
import type { BlockDevice } from './device.js';
import { checkRange } from './memory-device.js';

/** What survives a simulated power cut. */
export interface CrashPlan {
  /** The crash happens while the device executes write number `atWrite` (1-based). */
  atWrite: number;
  /** Bytes of that write that reach the disk before the power goes (0 = none). */
  tornBytes?: number;
  /** Keep earlier unsynced writes (true) or drop them (false, the default). */
  keepUnsynced?: boolean;
}

/** An injected device error. */
export interface FailPlan {
  /** Which call fails (1-based count of calls of that kind). */
  at: number;
  code: Extract<ErrorCode, 'EIO' | 'ENOSPC'>;
  /** Fail every later call of that kind too, not only the `at`-th. */
  sticky?: boolean;
}

export interface FaultPlan {
  crash?: CrashPlan;
  failWrite?: FailPlan;
  failFlush?: FailPlan;
  /**
   * Record every successful write and flush in `trace`, so a test can rebuild what the disk may
   * hold at any point: the writes before the last flush, plus any subset of those after it
   * (test/reliability/ builds crash states and reorderings from it).
   */
  trace?: boolean;
  /** Report the device as sparse (`BlockDevice.sparse`): the journal then writes zeros ahead of its tail in fresh segments. */
  sparse?: boolean;
}

/** One successful device call, in call order (see `FaultPlan.trace`). */
export type TraceEvent = { kind: 'write'; offset: number; data: Uint8Array } | { kind: 'flush' };

interface PendingWrite {
  offset: number;
  data: Uint8Array;
}

/**
 * A device for tests that models what a real disk may keep after a power cut: bytes written but
 * not flushed may be lost. It counts writes, flushes and reads, injects `EIO`/`ENOSPC` at a chosen
 * call, and simulates a crash at a chosen write (optionally tearing that write at a byte offset).
 * After the crash every call fails with `EIO`, as the process would be gone; `diskImage()` is then
 * what the next boot reads.
 */
export class FaultDevice implements BlockDevice {
  writes = 0;
  flushes = 0;
  reads = 0;
  crashed = false;
  /** Reads, writes and flushes together (what `failCalls` counts). */
  calls = 0;
  /** Failures injected so far (by any plan). */
  injected = 0;
  /** Successful writes and flushes, in order, when the plan asks for a trace. */
  readonly trace: TraceEvent[] = [];
  private readonly disk: Uint8Array;
  private pending: PendingWrite[] = [];
  private readonly plan: FaultPlan;
  private callFail: FailPlan | undefined;

  constructor(sizeOrImage: number | Uint8Array, plan: FaultPlan = {}) {
    this.disk = typeof sizeOrImage === 'number' ? new Uint8Array(sizeOrImage) : sizeOrImage.slice();
    this.plan = plan;
  }

  get size(): number {
    return this.disk.length;
  }

  get sparse(): boolean {
    return this.plan.sparse === true;
  }

  /** The durable bytes: what a reboot sees. */
  diskImage(): Uint8Array {
    return this.disk.slice();
  }

  /** Simulate a power cut now, dropping (or keeping) everything not yet flushed. */
  powerCut(keepUnsynced = false): Uint8Array {
    if (!this.crashed) {
      if (keepUnsynced) this.applyPending();
      this.pending = [];
      this.crashed = true;
    }
    return this.diskImage();
  }

  /**
   * Fail device calls of any kind — reads, writes and flushes — counted from now: `at` 1 is the
   * next call. A failed write changes nothing; a failed flush loses the unsynced writes.
   */
  failCalls(plan: FailPlan): void {
    this.callFail = { ...plan, at: plan.at + this.calls };
  }

  read(offset: number, length: number): Promise<Uint8Array> {
    this.reads++;
    if (this.crashed) return lost('read');
    if (this.callFails()) return this.injectedFailure('read', offset);
    checkRange(this.size, offset, length, 'read');
    const out = this.disk.slice(offset, offset + length);
    for (const w of this.pending) overlay(out, offset, w);
    return Promise.resolve(out);
  }

  /** `read` on the calling thread: counted and failed as a read is, the failure thrown. */
  readSync(offset: number, into: Uint8Array): void {
    this.reads++;
    if (this.crashed) throw lostPower('read');
    if (this.callFails()) throw this.injectedError('read', offset);
    checkRange(this.size, offset, into.length, 'read');
    into.set(this.disk.subarray(offset, offset + into.length));
    for (const w of this.pending) overlay(into, offset, w);
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    this.writes++;
    if (this.crashed) return lost('write');
    checkRange(this.size, offset, data.length, 'write');
    const crash = this.plan.crash;
    if (crash?.atWrite === this.writes) {
      if (crash.keepUnsynced === true) this.applyPending();
      this.pending = [];
      const torn = Math.min(crash.tornBytes ?? 0, data.length);
      this.disk.set(data.subarray(0, torn), offset);
      this.crashed = true;
      return lost('write');
    }
    const fail = this.plan.failWrite;
    if (fail !== undefined && hits(fail, this.writes)) {
      this.injected++;
      return Promise.reject(new StatefsError(fail.code, `injected failure of write ${this.writes}`, { op: 'write', offset }));
    }
    if (this.callFails()) return this.injectedFailure('write', offset);
    const copy = data.slice();
    this.pending.push({ offset, data: copy });
    if (this.plan.trace === true) this.trace.push({ kind: 'write', offset, data: copy });
    return Promise.resolve();
  }

  flush(): Promise<void> {
    this.flushes++;
    if (this.crashed) return lost('flush');
    const fail = this.plan.failFlush;
    if (fail !== undefined && hits(fail, this.flushes)) {
      // A failed flush loses the unsynced writes, as Linux may after writeback errors.
      this.pending = [];
      this.injected++;
      return Promise.reject(new StatefsError(fail.code, `injected failure of flush ${this.flushes}`, { op: 'flush' }));
    }
    if (this.callFails()) {
      this.pending = [];
      return this.injectedFailure('flush', undefined);
    }
    this.applyPending();
    if (this.plan.trace === true) this.trace.push({ kind: 'flush' });
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  /** Counts a call; whether `failCalls` fails it. */
  private callFails(): boolean {
    this.calls++;
    return this.callFail !== undefined && hits(this.callFail, this.calls);
  }

  private injectedFailure(op: string, offset: number | undefined): Promise<never> {
    return Promise.reject(this.injectedError(op, offset));
  }

  private injectedError(op: string, offset: number | undefined): StatefsError {
    this.injected++;
    const code = this.callFail?.code ?? 'EIO';
    return new StatefsError(code, `injected failure of device call ${this.calls} (${op})`, offset === undefined ? { op } : { op, offset });
  }

  private applyPending(): void {
    for (const w of this.pending) this.disk.set(w.data, w.offset);
    this.pending = [];
  }
}

function hits(plan: FailPlan, n: number): boolean {
  return plan.sticky === true ? n >= plan.at : n === plan.at;
}

function lost(op: string): Promise<never> {
  return Promise.reject(lostPower(op));
}

function lostPower(op: string): StatefsError {
  return StatefsError.EIO('device lost power (simulated crash)', { op });
}

/** Copy the part of `w` that overlaps [offset, offset + out.length) into `out`. */
function overlay(out: Uint8Array, offset: number, w: PendingWrite): void {
  const start = Math.max(offset, w.offset);
  const end = Math.min(offset + out.length, w.offset + w.data.length);
  if (start >= end) return;
  out.set(w.data.subarray(start - w.offset, end - w.offset), start - offset);
}
