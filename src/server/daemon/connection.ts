import type { Socket } from 'node:net';
import { isStatefsError, StatefsError } from '../../errors.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { AuditEvent } from '../audit/audit-record.js';
import { allows, authenticate, type Policy } from '../policy/policy.js';
import type { Frame } from '../protocol/frame.js';
import { FrameReader } from '../protocol/frame-reader.js';
import type { OkResponse, Request } from '../protocol/messages.js';
import type { OpName } from '../protocol/ops.js';
import { decodeRequest } from '../protocol/request-codec.js';
import { encodeResponse, errorResponse, errorResponseToFrame } from '../protocol/response-codec.js';
import { ConnectionTxns, isTxnOpRequest } from './connection-txns.js';
import { execute, getNow, type DispatchHost } from './dispatch.js';
import { needOf, targetOf } from './rights.js';
import { checkSubject } from '../../engine/names.js';

/** What every connection shares with the daemon. */
export interface ConnectionContext {
  host: DispatchHost;
  audit: AuditLog;
  policy(): Policy;
  maxInFlight: number;
  /** Close a connection that sent nothing and waited for nothing this long. */
  idleTimeoutMs: number;
  /** Refuse (EINVAL) a frame not complete this long after its first byte. */
  frameTimeoutMs: number;
  closing(): boolean;
  /** Registers an in-flight request so that `close()` can wait for it. */
  track(work: Promise<void>): void;
  log(message: string): void;
}

type Op = Exclude<Request, { op: 'HELLO' }>;

const AUDITED: ReadonlySet<OpName> = new Set<OpName>(['SNAPSHOT', 'DELETE_SNAP', 'RESTORE_SNAP', 'MOUNT', 'UMOUNT', 'GC_NOW', 'REOPEN']);

/** Refusals audited whatever the op: every quota denial, and every permission denial. */
function auditedRefusal(err: StatefsError): boolean {
  return err.code === 'EDQUOTA' || err.code === 'EPERM';
}

export function toStatefsError(err: unknown): StatefsError {
  if (isStatefsError(err)) return err;
  return StatefsError.EIO(err instanceof Error ? err.message : String(err), { op: 'daemon', cause: err });
}

/**
 * Whether the policy gives `caller` the right `req` needs, on every subject it names, and still
 * has the token the connection authenticated with (`tokenSha256`): a reload that revokes a token
 * refuses the connections opened with it from their next request (statefs-v3.md 11.5).
 */
function permitted(policy: Policy, caller: string, tokenSha256: string, req: Op): boolean {
  if (policy.subjects.get(caller)?.tokenSha256 !== tokenSha256) return false;
  // Mounting another subject's snapshot makes it readable: the caller must be able to read it.
  if (req.op === 'MOUNT' && !allows(policy, caller, 'read', req.owner)) return false;
  const need = needOf(req);
  return need.targets.length === 0 ? allows(policy, caller, need.right) : need.targets.every((t) => allows(policy, caller, need.right, t));
}

/**
 * The error a malformed subject name in `req` gets (`EINVAL`, `ENAMETOOLONG`), before the policy
 * is asked: the code the embedded store gives, not an `EPERM` for a name no policy can hold.
 */
function malformedSubject(req: Op): StatefsError | undefined {
  try {
    for (const subject of needOf(req).targets) checkSubject(subject, req.op);
    return undefined;
  } catch (err) {
    return toStatefsError(err);
  }
}

/** Answers a connection may have queued for a peer that does not read them before it stops reading requests. */
const MAX_UNREAD_ANSWER_BYTES = 1024 * 1024;
/**
 * Transaction ops run outside the in-flight limit whose answers are not sent yet: the frames
 * after them wait (their answers come in a microtask, after the answer bound was checked).
 */
const MAX_QUICK_UNANSWERED = 16;

/** One client connection: framing, HELLO, rights, pipelined dispatch. Never throws out of a handler. */
export class Connection {
  readonly #socket: Socket;
  readonly #ctx: ConnectionContext;
  readonly #reader = new FrameReader();
  #caller: string | undefined;
  /** The policy's hash of the token the connection authenticated with. */
  #tokenSha256 = '';
  /** Whether the caller may read `owner`'s data under the policy in force now (reads through mounts). */
  readonly #mayRead = (owner: string): boolean => this.#caller !== undefined && allows(this.#ctx.policy(), this.#caller, 'read', owner);
  #inFlight = 0;
  #dead = false;
  #timer: NodeJS.Timeout | undefined;
  /** Whether `#timer` limits a partial frame (else it is the idle timer). */
  #timerForFrame = false;
  /** When the first byte of the frame now half received arrived (undefined between frames). */
  #frameStarted: number | undefined;
  /** Frames read but not yet handled (`#pump`), from `#next` on. */
  #pending: Frame[] = [];
  #next = 0;
  /** Whether `#pump` waits for the peer to read its answers. */
  #awaitingDrain = false;
  /** Whether the peer closed its side (it sends nothing more). */
  #peerEnded = false;
  /** Transactions this connection holds open (aborted when it closes). */
  readonly #txns = new ConnectionTxns();
  /** Transaction ops run outside the in-flight limit (`#runTxnOpNow`) whose answers are not sent yet. */
  #quick = 0;

  constructor(socket: Socket, ctx: ConnectionContext) {
    this.#socket = socket;
    this.#ctx = ctx;
    socket.on('data', (chunk: Buffer) => {
      this.#onData(chunk);
      this.#arm();
    });
    this.#arm();
    socket.on('error', (err) => {
      ctx.log(`connection error: ${err.message}`);
    });
    socket.on('close', () => {
      this.#dead = true;
      clearTimeout(this.#timer);
      this.#txns.abortAll();
    });
    // The daemon's sockets allow half-open streams: a peer that sent its requests and closed its
    // side still gets every answer; the connection ends once none is left to give.
    socket.on('end', () => {
      this.#peerEnded = true;
      this.#endWhenAnswered();
    });
  }

  /** After the peer's end: end ours once every request read is answered. */
  #endWhenAnswered(): void {
    if (this.#peerEnded && !this.#dead && this.#inFlight === 0 && this.#quick === 0 && this.#next >= this.#pending.length) this.end();
  }

  /**
   * One timer per connection: a frame must complete within `frameTimeoutMs` of its first byte,
   * however its bytes trickle in (a slow-loris peer cannot hold a slot); otherwise a connection
   * with no request in flight is closed after `idleTimeoutMs`.
   */
  #arm(): void {
    if (this.#dead) {
      clearTimeout(this.#timer);
      return;
    }
    if (this.#awaitingDrain) {
      // Reading stopped for backpressure: no frame clock runs (its bytes wait unread), and a peer
      // that reads none of its answers for idleTimeoutMs is gone, its requests unanswered.
      clearTimeout(this.#timer);
      this.#timerForFrame = true; // not the idle timer the fast path below refreshes
      this.#timer = setTimeout(() => {
        if (this.#dead) return;
        if (this.#awaitingDrain) this.end();
        else this.#arm();
      }, this.#ctx.idleTimeoutMs);
      this.#timer.unref();
      return;
    }
    const partial = this.#reader.buffered > 0;
    if (!partial && this.#timer !== undefined && !this.#timerForFrame) {
      // The common case, between frames with the idle timer running: restart it (no new timer).
      this.#frameStarted = undefined;
      this.#timer.refresh();
      return;
    }
    clearTimeout(this.#timer);
    if (!partial) this.#frameStarted = undefined;
    else this.#frameStarted ??= Date.now();
    this.#timerForFrame = partial;
    const ms = this.#frameStarted === undefined ? this.#ctx.idleTimeoutMs : Math.max(0, this.#frameStarted + this.#ctx.frameTimeoutMs - Date.now());
    this.#timer = setTimeout(() => {
      if (this.#dead) return;
      if (partial) {
        this.#fatal(errorResponse(0, undefined, StatefsError.EINVAL(`a frame stayed incomplete for ${this.#ctx.frameTimeoutMs} ms`, { op: 'read' })));
      } else if (this.#inFlight === 0) {
        this.end();
      } else {
        this.#arm();
      }
    }, ms);
    this.#timer.unref();
  }

  /** Ends the connection once everything queued is written. */
  /**
   * Whether `policy` no longer holds the token this connection authenticated with (replaced, or
   * its subject removed): the daemon ends such a connection at a reload, which aborts its
   * transactions and gives their slots back (refusing its requests alone let a client that kept
   * talking hold them; review).
   */
  tokenRevoked(policy: Policy): boolean {
    return this.#caller !== undefined && policy.subjects.get(this.#caller)?.tokenSha256 !== this.#tokenSha256;
  }

  /** Whether `req`, allowed when read, still is under the policy in force (token included). */
  #stillAllowed(caller: string, req: Op): boolean {
    return permitted(this.#ctx.policy(), caller, this.#tokenSha256, req);
  }

  /** The token was revoked: abort the connection's transactions now (slots back) and end it. */
  revoke(): void {
    this.#txns.abortAll();
    this.end();
  }

  end(): void {
    this.#dead = true;
    this.#socket.end();
    // A peer that never closes its side must not hold the daemon's shutdown.
    setTimeout(() => this.#socket.destroy(), 1000).unref();
  }

  /** Backpressure: while the peer does not read its answers, stop reading its requests. */
  #send(frame: Uint8Array): void {
    if (this.#socket.destroyed || !this.#socket.writable) return;
    if (!this.#socket.write(frame)) this.#awaitDrain();
  }

  /**
   * Stop reading until the peer has read the answers queued for it; then handle the frames
   * already read (`#pump`), and read again only once none is left: reading on could end the
   * stream (a peer that half-closed) with requests read and never answered.
   */
  #awaitDrain(): void {
    if (!this.#socket.isPaused()) this.#socket.pause();
    if (this.#awaitingDrain) return;
    this.#awaitingDrain = true;
    this.#arm();
    this.#socket.once('drain', () => {
      this.#awaitingDrain = false;
      this.#frameStarted = undefined; // a partial frame's clock starts again with reading
      this.#arm(); // the peer read: not idle
      this.#pump();
    });
  }

  /** Answer with one error frame and close: the stream cannot be trusted any more. */
  #fatal(frame: Uint8Array): void {
    this.#dead = true;
    if (!this.#socket.destroyed && this.#socket.writable) this.#socket.end(frame);
  }

  #stopped(): boolean {
    return this.#dead;
  }

  #onData(chunk: Buffer): void {
    if (this.#dead) return;
    let frames: Frame[];
    try {
      frames = this.#reader.push(chunk);
    } catch (err) {
      this.#fatal(errorResponse(0, undefined, toStatefsError(err)));
      return;
    }
    if (frames.length > 0) this.#frameStarted = undefined; // the frame now partial, if any, began in this chunk
    if (this.#next >= this.#pending.length) {
      this.#pending = frames;
      this.#next = 0;
    } else {
      for (const frame of frames) this.#pending.push(frame);
    }
    this.#pump();
  }

  /**
   * Handle the frames read, in order, while the answers the peer has not read stay under
   * MAX_UNREAD_ANSWER_BYTES (1 MiB): a chunk of pipelined GETs (answered on the spot, outside the
   * in-flight limit) from a peer that never reads would otherwise buffer every answer (2,000
   * GETs of a 64 KiB value in one 64 KiB chunk: 128 MiB). Past the bound, reading stops until
   * the peer has read enough.
   */
  #pump(): void {
    while (this.#next < this.#pending.length) {
      if (this.#stopped()) return; // a fatal frame before this one closed the connection
      if (this.#socket.writableLength > MAX_UNREAD_ANSWER_BYTES) {
        this.#awaitDrain();
        return;
      }
      if (this.#quick >= MAX_QUICK_UNANSWERED) return; // resumed once their answers are sent (#runTxnOpNow)
      const frame = this.#pending[this.#next++];
      if (frame !== undefined) this.#onFrame(frame);
    }
    this.#pending = [];
    this.#next = 0;
    // A framing error after the frames above: they were answered, now refuse the rest.
    const failure = this.#reader.failure;
    if (failure !== undefined && !this.#stopped()) this.#fatal(errorResponse(0, undefined, failure));
    else if (!this.#awaitingDrain && this.#socket.isPaused() && !this.#stopped()) this.#socket.resume();
    this.#endWhenAnswered();
  }

  #onFrame(frame: Frame): void {
    let req: Request;
    try {
      req = decodeRequest(frame);
    } catch (err) {
      this.#fatal(errorResponseToFrame(frame.requestId, frame.op, toStatefsError(err)));
      return;
    }
    if (req.op === 'HELLO') {
      this.#hello(req.requestId, req.token);
      return;
    }
    if (this.#caller === undefined) {
      this.#denyHello(req.requestId, req.op, 'the first request must be HELLO');
      return;
    }
    if (this.#ctx.closing()) {
      this.#refuse(req, StatefsError.EAGAIN('the daemon is shutting down', { op: req.op }));
      return;
    }
    if (isTxnOpRequest(req) && this.#runTxnOpNow(this.#caller, req)) return;
    if (req.op === 'TXN_BEGIN') this.#txns.queued(req.txn, req.subject); // it waits: refusals meanwhile are kept for it
    if (this.#inFlight >= this.#ctx.maxInFlight) {
      this.#refuse(req, StatefsError.EAGAIN(`more than ${this.#ctx.maxInFlight} requests in flight on this connection`, { op: req.op }));
      return;
    }
    if (req.op === 'GET' && this.#answerGetNow(this.#caller, req)) return;
    if (req.op === 'PUT' && this.#putNow(this.#caller, req)) return;
    this.#inFlight += 1;
    const caller = this.#caller;
    const work = this.#run(caller, req).finally(() => {
      this.#inFlight -= 1;
      this.#endWhenAnswered();
    });
    this.#ctx.track(work);
  }

  /** Answer `err` to a request the daemon will not run; a transaction it belongs to hears of it first. */
  #refuse(req: Op, err: StatefsError): void {
    if (isTxnOpRequest(req)) this.#txns.refused(req, err);
    this.#send(errorResponse(req.requestId, req.op, err));
  }

  /**
   * A permitted transaction op other than a commit while the store is ready: it finishes without
   * waiting for the disk, so it takes no in-flight slot (the ops of a pipelined transaction are
   * not cut by the limit). It reaches the transaction now, in the order read; its answer follows
   * in a microtask. False: the ordinary path (a denial is audited there, a reopen waited for).
   */
  #runTxnOpNow(caller: string, req: Extract<Op, { txn: number }>): boolean {
    if (req.op === 'TXN_COMMIT' || this.#ctx.host.ready() === undefined || !permitted(this.#ctx.policy(), caller, this.#tokenSha256, req)) return false;
    this.#quick += 1;
    const work = execute(this.#ctx.host, req, this.#txns, this.#mayRead, () => this.#stillAllowed(caller, req))
      .then(
        (res) => {
          this.#reply(req, res);
        },
        (err: unknown) => {
          this.#reply(req, toStatefsError(err));
        },
      )
      .finally(() => {
        this.#quick -= 1;
        if (!this.#awaitingDrain && this.#next < this.#pending.length) this.#pump();
        this.#endWhenAnswered();
      });
    this.#ctx.track(work);
    return true;
  }

  #hello(requestId: number, token: string): void {
    if (this.#caller !== undefined) {
      this.#send(errorResponse(requestId, 'HELLO', StatefsError.EINVAL('already authenticated', { op: 'HELLO' })));
      return;
    }
    const subject = authenticate(this.#ctx.policy(), token);
    if (subject === undefined) {
      this.#denyHello(requestId, 'HELLO', 'unknown token');
      return;
    }
    this.#caller = subject;
    this.#tokenSha256 = this.#ctx.policy().subjects.get(subject)?.tokenSha256 ?? '';
    this.#send(encodeResponse({ status: 'ok', op: 'HELLO', requestId, subject }));
  }

  #denyHello(requestId: number, op: OpName, why: string): void {
    this.#fatal(errorResponse(requestId, op, StatefsError.EPERM(why, { op })));
    this.#ctx.track(this.#audit({ subject: '(unauthenticated)', op, result: 'EPERM', detail: why }));
  }

  async #audit(event: AuditEvent): Promise<void> {
    try {
      await this.#ctx.audit.append(event);
    } catch (err) {
      this.#ctx.log(`audit append failed: ${toStatefsError(err).message}`);
    }
  }

  /**
   * A permitted GET while the store is ready: read and answer at once (errors included). False:
   * the request takes the ordinary path (a denial is audited there, a reopen waited for).
   */
  #answerGetNow(caller: string, req: Extract<Op, { op: 'GET' }>): boolean {
    if (!permitted(this.#ctx.policy(), caller, this.#tokenSha256, req)) return false;
    let res: OkResponse | undefined;
    try {
      res = getNow(this.#ctx.host, req, this.#mayRead);
    } catch (err) {
      const e = toStatefsError(err);
      if (e.code === 'EPERM') this.#ctx.track(this.#audit({ subject: caller, op: req.op, target: req.subject, result: 'EPERM' }));
      this.#send(errorResponse(req.requestId, req.op, e));
      return true;
    }
    if (res === undefined) return false;
    this.#reply(req, res);
    return true;
  }

  /**
   * A permitted PUT of a well-formed subject while the store is ready: handed to the store now,
   * as `#run` would hand it, without `#run`'s promises around the store's (a put's daemon CPU is
   * mostly such steps; docs/performance.md). It takes an in-flight slot until it is durable, and
   * its answer, and an audit of a quota or permission refusal, follow as `#run`'s would. False:
   * the ordinary path (a denial is audited there, a reopen waited for).
   */
  #putNow(caller: string, req: Extract<Op, { op: 'PUT' }>): boolean {
    if (malformedSubject(req) !== undefined || !permitted(this.#ctx.policy(), caller, this.#tokenSha256, req)) return false;
    const { requestId, op, subject, key, value } = req;
    const durable = this.#ctx.host.useNow((store) => store.put(subject, key, value));
    if (durable === undefined) return false;
    this.#inFlight += 1;
    const work = durable
      .then(
        () => {
          this.#send(encodeResponse({ status: 'ok', requestId, op }));
        },
        async (err: unknown) => {
          const e = toStatefsError(err);
          if (auditedRefusal(e)) await this.#audit({ subject: caller, op, target: subject, result: e.code });
          this.#send(errorResponse(requestId, op, e));
        },
      )
      .finally(() => {
        this.#inFlight -= 1;
        this.#endWhenAnswered();
      });
    this.#ctx.track(work);
    return true;
  }

  async #run(caller: string, req: Op): Promise<void> {
    const target = targetOf(req);
    const base = { subject: caller, op: req.op, ...(target === undefined ? {} : { target }) };
    const policy = this.#ctx.policy();
    const need = needOf(req);
    const malformed = malformedSubject(req);
    if (malformed !== undefined) {
      if (isTxnOpRequest(req)) this.#txns.refused(req, malformed);
      this.#send(errorResponse(req.requestId, req.op, malformed));
      return;
    }
    if (!permitted(policy, caller, this.#tokenSha256, req)) {
      const revoked = policy.subjects.get(caller)?.tokenSha256 !== this.#tokenSha256;
      const why = revoked ? `the token this connection authenticated with no longer names ${caller}` : `${caller} may not ${need.right}${target === undefined ? '' : ` ${target}`}`;
      const err = StatefsError.EPERM(why, { op: req.op, subject: caller });
      if (isTxnOpRequest(req)) this.#txns.refused(req, err); // now: a commit read after it must see it
      await this.#audit({ ...base, result: 'EPERM', detail: { right: need.right } });
      this.#send(errorResponse(req.requestId, req.op, err));
      return;
    }
    let res: OkResponse | StatefsError;
    try {
      res = await execute(this.#ctx.host, req, this.#txns, this.#mayRead, () => this.#stillAllowed(caller, req));
    } catch (err) {
      res = toStatefsError(err);
    }
    // Refused when it ran (the policy changed while it waited): as a refusal at reading, a
    // refused transaction write fails the commit, a refused commit or abort aborts.
    if (res instanceof StatefsError && res.code === 'EPERM' && isTxnOpRequest(req)) this.#txns.refused(req, res);
    if (req.op === 'TXN_BEGIN') this.#txns.settled(req.txn);
    // Image totals are shared; per-subject lines (and snapshot names) only for subjects the caller may read.
    const visible = (subject: string): boolean => allows(policy, caller, 'read', subject);
    if (!(res instanceof StatefsError) && res.op === 'STAT') {
      res = { ...res, stat: { ...res.stat, subjects: res.stat.subjects.filter((x) => visible(x.subject)), snapshots: res.stat.snapshots.filter((x) => visible(x.subject)) } };
    }
    if (!(res instanceof StatefsError) && res.op === 'LIST_MOUNTS') {
      // A mount names its owner's snapshot: only for callers who may read that owner (rule 5).
      res = { ...res, mounts: res.mounts.filter((m) => visible(m.owner)) };
    }
    if (!(res instanceof StatefsError) && res.op === 'GC_PLAN') {
      res = { ...res, plan: { ...res.plan, pinnedBySnapshots: res.plan.pinnedBySnapshots.filter((x) => visible(x.subject)) } };
    }
    // Administrative acts, and every quota denial.
    if (AUDITED.has(req.op) || (res instanceof StatefsError && auditedRefusal(res))) {
      const detail = !(res instanceof StatefsError) && res.op === 'GC_NOW' ? { detail: { freedBytes: res.result.freedBytes } } : {};
      await this.#audit({ ...base, result: res instanceof StatefsError ? res.code : 'OK', ...detail });
    }
    this.#reply(req, res);
  }

  #reply(req: Op, res: OkResponse | StatefsError): void {
    if (res instanceof StatefsError) {
      this.#send(errorResponse(req.requestId, req.op, res));
      return;
    }
    try {
      this.#send(encodeResponse(res));
    } catch (err) {
      this.#send(errorResponse(req.requestId, req.op, toStatefsError(err)));
    }
  }
}
