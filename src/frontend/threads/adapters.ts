/**
 * Thread-side stand-ins for hub objects a front-end thread's data path calls: the circuit-breaker gate,
 * the progress hook, and the policy host of a policy that decides in the main thread. The main-side half of
 * the remote policy (DecideServer) is here too.
 */
import { BreakerState, Field, type SlotRef, type WorkerTable } from '../../actors/worker-table.js';
import { Permit, type BreakerOptions } from '../../workers/breaker.js';
import { leastLoadedDecision } from '../../policies/common.js';
import { plainMembers } from '../../policies/membership.js';
import { Rng } from '../../util/rng.js';
import type { DecideCallback, PolicyHost } from '../../policies/host.js';
import type { CompletionFeedback, Decision, RequestFeatures, WorkerInfo } from '../../policies/types.js';
import type { BreakerGate, RequestProgressHook, RequestProgressView } from '../context.js';
import type { ThreadReporter } from './report.js';
import type { ToMain, ToThread } from './protocol.js';

/**
 * Breakers in a thread: the state (closed / open / half-open) is the shared table's, set by the main
 * thread's CircuitBreakers; outcomes go to it in the report. While half-open, this thread lets at most the
 * same number of probes through at once as the main thread does (so the fleet-wide bound on concurrent
 * probes is that number per front end).
 */
export class ThreadBreakerGate implements BreakerGate {
  private readonly probes: number;
  private readonly inFlight = new Map<number, { generation: number; n: number }>();

  constructor(
    private readonly table: WorkerTable,
    options: BreakerOptions,
    private readonly reporter: ThreadReporter,
  ) {
    this.probes = Math.max(1, options.halfOpenProbes ?? options.successThreshold);
  }

  tryAcquire(ref: SlotRef): Permit {
    const state = this.table.get(ref.slot, Field.Breaker) as BreakerState;
    if (state === BreakerState.Closed) return Permit.Normal;
    if (state === BreakerState.Open) return Permit.Refused;
    let p = this.inFlight.get(ref.slot);
    if (p === undefined || p.generation !== ref.generation) {
      p = { generation: ref.generation, n: 0 };
      this.inFlight.set(ref.slot, p);
    }
    if (p.n >= this.probes) return Permit.Refused;
    p.n++;
    return Permit.Probe;
  }

  record(ref: SlotRef, permit: Permit, success: boolean | undefined): void {
    if (permit === Permit.Probe) {
      const p = this.inFlight.get(ref.slot);
      if (p !== undefined && p.generation === ref.generation && p.n > 0) p.n--;
    }
    this.reporter.breakerOutcome(ref.slot, ref.generation, permit, success);
  }
}

/** The tracker's hook in a thread: the decided view crosses once, through the events hook (the hub calls both). */
export class ThreadProgress implements RequestProgressHook {
  constructor(private readonly reporter: ThreadReporter) {}

  decided(_req: RequestProgressView): void {
    // Carried by ctx.events.decided (the same view): the hub hands it to the tracker as well.
  }

  firstByte(req: RequestProgressView, at: number): void {
    this.reporter.firstByte(req, at);
  }
}

/**
 * A stateful policy (actor-placed, sharded or a plugin) seen from a thread: decisions go to the main
 * thread's PolicyHost in batches (one message per event-loop turn each way) and come back by id. When the
 * hub cannot answer (the thread is shutting down) the decision is the least-loaded available member, with
 * a reason that says so, as the actor host does while its actor restarts.
 */
export class RemotePolicyHost implements PolicyHost {
  readonly placement = 'actor' as const;
  private nextId = 1;
  private readonly pending = new Map<number, DecideCallback>();
  private outbox: { id: number; req: RequestFeatures }[] = [];
  private scheduled = false;
  private closed = false;
  private workers: readonly WorkerInfo[] = [];
  private readonly scratch: WorkerInfo[] = [];
  private readonly rng: Rng;
  private fallbacks = 0;

  constructor(
    readonly name: string,
    private readonly table: WorkerTable,
    private readonly post: (m: ToMain) => void,
    private readonly reporter: ThreadReporter,
    seed: number,
  ) {
    this.rng = new Rng(seed ^ 0x5bd1e995);
  }

  decide(req: RequestFeatures, cb: DecideCallback): void {
    if (this.closed) {
      cb(null, this.fallback());
      return;
    }
    const id = this.nextId++;
    this.pending.set(id, cb);
    this.outbox.push({ id, req });
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.send);
    }
  }

  /** The hub's answers: [id, decision, id, decision, ...]. */
  answer(m: Extract<ToThread, { t: 'decided' }>): void {
    const r = m.replies;
    for (let i = 0; i + 1 < r.length; i += 2) {
      const id = r[i] as number;
      const cb = this.pending.get(id);
      if (cb === undefined) continue;
      this.pending.delete(id);
      cb(null, r[i + 1] as Decision | null);
    }
  }

  observe(f: CompletionFeedback): void {
    this.reporter.feedback(f);
  }

  setWorkers(ws: readonly WorkerInfo[]): void {
    this.workers = plainMembers(ws);
  }

  snapshot(): Promise<unknown> {
    return Promise.resolve({ policy: this.name, placement: 'main thread (from a front-end thread)', pending: this.pending.size, fallbacks: this.fallbacks });
  }

  ready(): Promise<void> {
    return Promise.resolve();
  }

  /** Answer every pending decision locally (the hub will not answer any more). */
  close(): Promise<void> {
    this.closed = true;
    this.outbox = [];
    for (const [id, cb] of this.pending) {
      this.pending.delete(id);
      cb(null, this.fallback());
    }
    return Promise.resolve();
  }

  private readonly send = (): void => {
    this.scheduled = false;
    if (this.outbox.length === 0) return;
    const requests = this.outbox;
    this.outbox = [];
    this.post({ t: 'decide', requests });
  };

  private fallback(): Decision | null {
    this.fallbacks++;
    return leastLoadedDecision(this.table, this.workers, this.scratch, this.rng, 'fallback: front-end thread closing');
  }
}

/** Main side of RemotePolicyHost: decides a thread's batch with the hub's policy and answers in batches. */
export class DecideServer {
  private replies: (number | Decision | null)[] = [];
  private scheduled = false;

  constructor(
    private readonly policy: PolicyHost,
    private readonly post: (m: ToThread) => void,
  ) {}

  decide(m: Extract<ToMain, { t: 'decide' }>): void {
    for (const { id, req } of m.requests) {
      this.policy.decide(req, (_err, d) => {
        this.replies.push(id, d);
        if (!this.scheduled) {
          this.scheduled = true;
          setImmediate(this.send);
        }
      });
    }
  }

  private readonly send = (): void => {
    this.scheduled = false;
    const replies = this.replies;
    this.replies = [];
    if (replies.length > 0) this.post({ t: 'decided', replies });
  };
}
