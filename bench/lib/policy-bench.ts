/**
 * What the policy benchmarks share (policy-decide, policy-stateful, actor-roundtrip): the short request
 * they decide, a fleet in a worker table, a sink that keeps decisions observable to the optimiser, and the
 * two ways of driving a host through its actor: loaded (many decisions outstanding, each answer issues
 * the next, so crossings are batched) and alone (one decision at a time: the hop).
 */
import type { WorkerTable } from '../../src/actors/worker-table.js';
import type { PolicyHost } from '../../src/policies/host.js';
import type { Decision, RequestFeatures, WorkerInfo } from '../../src/policies/types.js';

/** A ~100-character chat request: the decision's own cost without a long text's. */
export const SHORT_REQUEST: RequestFeatures = {
  requestId: 'bench-1',
  route: 'chat',
  text: 'You are a helpful assistant. Summarize the following text in three sentences: the quick brown fox.',
  inputTokens: 25,
  maxNewTokens: 128,
  stream: true,
};

/** n healthy workers allocated in the table, as membership entries. */
export function fleet(table: WorkerTable, n: number): WorkerInfo[] {
  const out: WorkerInfo[] = [];
  for (let i = 0; i < n; i++) {
    const ref = table.allocate({ healthy: true, nodeId: i });
    out.push({ slot: ref.slot, generation: ref.generation, url: `http://127.0.0.1:${30000 + i}`, nodeId: i });
  }
  return out;
}

let sink = 0;
/** A decide callback that uses the decision (so it cannot be optimised away). */
export const keep = (_err: Error | null, d: Decision | null): void => {
  if (d !== null) sink += d.slot;
};
/** Read once at the end of a scenario, for the same reason. */
export function sinkValue(): number {
  return sink;
}

/** Process CPU (user + system, every thread) in microseconds. */
export function cpuNowUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

export interface LoadedRun {
  readonly decisions: number;
  readonly seconds: number;
  /** Process CPU (both threads) per decision, ns. */
  readonly cpuNs: number;
}

/**
 * Keep `outstanding` decisions in flight for about `ms` (each answer issues the next, cycling through
 * `pool`), then wait for the last answers.
 */
export function runLoaded(host: PolicyHost, pool: readonly RequestFeatures[], ms: number, outstanding: number): Promise<LoadedRun> {
  return new Promise((resolve) => {
    let done = 0;
    let inFlight = 0;
    let stopped = false;
    let k = 0;
    const t0 = performance.now();
    const cpu0 = cpuNowUs();
    const next = (): RequestFeatures => {
      const r = pool[k] as RequestFeatures;
      k = k + 1 === pool.length ? 0 : k + 1;
      return r;
    };
    const cb = (err: Error | null, d: Decision | null): void => {
      inFlight--;
      done++;
      keep(err, d);
      if (!stopped && (done & 255) === 0 && performance.now() - t0 >= ms) stopped = true;
      if (!stopped) {
        inFlight++;
        host.decide(next(), cb);
      } else if (inFlight === 0) {
        resolve({ decisions: done, seconds: (performance.now() - t0) / 1000, cpuNs: ((cpuNowUs() - cpu0) * 1000) / done });
      }
    };
    for (let i = 0; i < outstanding; i++) {
      inFlight++;
      host.decide(next(), cb);
    }
  });
}

/** Round trips (us) of one decision alone through the host, for about `ms`. */
export async function aloneUs(host: PolicyHost, req: RequestFeatures, ms: number): Promise<number[]> {
  const samples: number[] = [];
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    const s = performance.now();
    await new Promise<void>((resolve) => host.decide(req, (err, d) => (keep(err, d), resolve())));
    samples.push((performance.now() - s) * 1000);
  }
  return samples;
}
