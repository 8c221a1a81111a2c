/**
 * The actor runtime's crossing cost, measured through the real policy actor (round_robin over 8 workers,
 * so each message does a little real work and the reply is a real Decision):
 *
 *   roundtrip.<variant>    one call at a time (await each): the latency a lone request pays, in us.
 *                          Variants: port (default: MessagePort mailbox, atomics disabled), and piscina
 *                          tasks as the mailbox with atomics sync / async / disabled, and sync with
 *                          concurrentTasksPerWorker 8.
 *   throughput.<v>.b<B>    calls/s with batches of at most B calls (1, 16, 256) and enough calls kept
 *                          outstanding to fill 8 batches in flight: what batching buys under load.
 *   codec.<p>.<c>.b256     calls/s in batches of 256, structured clone vs msgpackr-packed, for two
 *                          payloads: completion-feedback records (numbers, short strings) and decide
 *                          messages carrying a 4000-character prompt.
 *
 * Every figure has a twin `<name>.cpu`: process CPU time (host and actor thread, user + system) per call,
 * which other processes on a shared machine disturb far less than wall time.
 * Each figure is the median over ctx.runs; spread is from the min/max of the runs. docs/actors.md quotes
 * these figures and the choice they support.
 */
import { fileURLToPath } from 'node:url';
import { Actor, type ActorTuning } from '../../src/actors/actor.js';
import { WorkerTable } from '../../src/actors/worker-table.js';
import type { PolicyActorInit, PolicyActorMessage, PolicyActorReplies } from '../../src/actors/protocol.js';
import type { CompletionFeedback, RequestFeatures, WorkerInfo } from '../../src/policies/types.js';
import { fleet, SHORT_REQUEST } from '../lib/policy-bench.js';
import { summarize, type BenchContext, type Figure, type Scenario } from '../lib/scenario.js';

type PolicyActor = Actor<PolicyActorMessage, PolicyActorReplies, PolicyActorInit>;

const POLICY_ACTOR = fileURLToPath(new URL('../../src/policies/policy-actor.js', import.meta.url));

const REQUEST: RequestFeatures = SHORT_REQUEST;
const DECIDE: PolicyActorMessage = { t: 'decide', req: REQUEST };

function feedback(i: number): PolicyActorMessage {
  const f: CompletionFeedback = {
    requestId: `req-${i}`,
    url: `http://127.0.0.1:${30000 + (i % 8)}`,
    slot: i % 8,
    success: true,
    sentAt: 1_000_000 + i,
    firstTokenAt: 1_000_030 + i,
    finishedAt: 1_000_900 + i,
    inputTokens: 512,
    outputTokens: 128,
    cachedTokens: 256,
    queueTime: 0.012,
  };
  return { t: 'observe', feedback: f };
}

const LONG_PREFIX = 'You are a helpful assistant. '.repeat(140);

/** A decide message with a long prompt: each call a fresh string, as requests arrive. */
function decideLong(i: number): PolicyActorMessage {
  const text = `${LONG_PREFIX}question ${i}`;
  return { t: 'decide', req: { ...REQUEST, requestId: `req-${i}`, text, inputTokens: Math.ceil(text.length / 4) } };
}

async function startActor(tuning: ActorTuning): Promise<PolicyActor> {
  const table = WorkerTable.create(16);
  const workers = fleet(table, 8);
  const actor = new Actor<PolicyActorMessage, PolicyActorReplies, PolicyActorInit>({
    ...tuning,
    name: 'bench',
    filename: POLICY_ACTOR,
    init: () => ({ spec: { name: 'round_robin', options: {} }, table: table.buffer, workers, tickIntervalMs: 0, seed: 1 }),
  });
  await actor.whenAvailable();
  // warm up both sides' code paths
  for (let i = 0; i < 200; i++) await actor.ask(DECIDE);
  await Promise.all(Array.from({ length: 2000 }, () => actor.ask(DECIDE)));
  return actor;
}

/** A measurement and the process CPU time (both threads, user + system) it took per call, in us. */
interface Measured {
  readonly value: number;
  readonly cpuUs: number;
}

function cpuNow(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** Mean microseconds per call, one call outstanding at a time. */
async function sequentialUs(actor: PolicyActor, ms: number): Promise<Measured> {
  let n = 0;
  const cpu0 = cpuNow();
  const t0 = performance.now();
  let elapsed = 0;
  while ((elapsed = performance.now() - t0) < ms) {
    await actor.ask(DECIDE);
    n++;
  }
  return { value: (elapsed * 1000) / n, cpuUs: (cpuNow() - cpu0) / n };
}

/** Calls per second with `window` calls kept outstanding (closed loop), each answer issuing the next call. */
function closedLoopRate(actor: PolicyActor, next: (i: number) => PolicyActorMessage, window: number, ms: number): Promise<Measured> {
  return new Promise((resolve, reject) => {
    let issued = 0;
    let done = 0;
    let outstanding = 0;
    let stopped = false;
    const cpu0 = cpuNow();
    const t0 = performance.now();
    const cb = (err: Error | null): void => {
      outstanding--;
      if (err !== null) {
        stopped = true;
        reject(err);
        return;
      }
      done++;
      if (!stopped && (done & 63) === 0 && performance.now() - t0 >= ms) stopped = true;
      if (!stopped) {
        outstanding++;
        actor.call(next(issued++), cb);
      } else if (outstanding === 0) resolve({ value: (done * 1000) / (performance.now() - t0), cpuUs: (cpuNow() - cpu0) / done });
    };
    for (let i = 0; i < window; i++) {
      outstanding++;
      actor.call(next(issued++), cb);
    }
  });
}

const LATENCY_VARIANTS: readonly (readonly [string, ActorTuning])[] = [
  ['port', { transport: 'port' }],
  ['task_sync', { transport: 'task', atomics: 'sync' }],
  ['task_async', { transport: 'task', atomics: 'async' }],
  ['task_disabled', { transport: 'task', atomics: 'disabled' }],
  ['task_sync_c8', { transport: 'task', atomics: 'sync', concurrentTasksPerWorker: 8 }],
];

const THROUGHPUT_VARIANTS: readonly (readonly [string, ActorTuning])[] = [
  ['port', { transport: 'port' }],
  ['task_sync_c8', { transport: 'task', atomics: 'sync', concurrentTasksPerWorker: 8 }],
];

const BATCHES = [1, 16, 256] as const;
const IN_FLIGHT = 8;

function figure(name: string, values: number[], unit: string, better: 'higher' | 'lower', note?: string): Figure {
  const { median, spread } = summarize(values);
  return { name, value: Math.round(median * 100) / 100, unit, better, spread: Math.round(spread * 1000) / 1000, ...(note === undefined ? {} : { note }) };
}

const scenario: Scenario = {
  name: 'actor-roundtrip',
  description: 'actor runtime: single-call latency per transport/atomics mode, batched throughput (batches of 1/16/256), clone vs msgpack',
  gate: true,
  async run(ctx: BenchContext): Promise<Figure[]> {
    const ms = ctx.quick ? 150 : 350;
    const figures: Figure[] = [];

    // Each group's actors run side by side and the rounds are interleaved (variant A, B, C, A, B, C, ...),
    // so drift on a shared machine hits every variant alike.
    const group = async (
      entries: readonly { name: string; tuning: ActorTuning; measure: (a: PolicyActor) => Promise<Measured>; unit: string; better: 'higher' | 'lower'; note: string }[],
    ): Promise<void> => {
      const actors: PolicyActor[] = [];
      for (const e of entries) actors.push(await startActor(e.tuning));
      const samples: Measured[][] = entries.map(() => []);
      for (let r = 0; r < ctx.runs; r++) {
        for (let i = 0; i < entries.length; i++) samples[i]!.push(await entries[i]!.measure(actors[i]!));
      }
      await Promise.all(actors.map((a) => a.close()));
      entries.forEach((e, i) => {
        const f = figure(e.name, samples[i]!.map((m) => m.value), e.unit, e.better, e.note);
        // CPU per call is far less sensitive than wall time to other processes on a shared machine.
        const c = figure(`${e.name}.cpu`, samples[i]!.map((m) => m.cpuUs), 'us', 'lower', 'process CPU (both threads) per call');
        ctx.log(`${f.name}: ${f.value} ${f.unit} (spread ${f.spread}); cpu ${c.value} us/call (spread ${c.spread})`);
        figures.push(f, c);
      });
    };

    await group(
      LATENCY_VARIANTS.map(([label, tuning]) => ({
        name: `actor.roundtrip.${label}`,
        tuning,
        measure: (a: PolicyActor) => sequentialUs(a, ms),
        unit: 'us',
        better: 'lower' as const,
        note: 'one call outstanding',
      })),
    );

    await group(
      THROUGHPUT_VARIANTS.flatMap(([label, tuning]) =>
        BATCHES.map((b) => {
          const window = Math.max(2 * IN_FLIGHT * b, 16);
          return {
            name: `actor.throughput.${label}.b${b}`,
            tuning: { ...tuning, maxBatch: b, maxBatchesInFlight: IN_FLIGHT },
            measure: (a: PolicyActor) => closedLoopRate(a, () => DECIDE, window, ms),
            unit: 'calls/s',
            better: 'higher' as const,
            note: `batches <= ${b}, ${window} outstanding`,
          };
        }),
      ),
    );

    const payloads = [
      ['feedback', feedback, 'completion-feedback records (observe)'],
      ['decide4k', decideLong, 'decide with a 4000-character prompt'],
    ] as const;
    await group(
      payloads.flatMap(([what, make, note]) =>
        (['clone', 'msgpack'] as const).map((codec) => ({
          name: `actor.codec.${what}.${codec}.b256`,
          tuning: { codec, maxBatch: 256, maxBatchesInFlight: IN_FLIGHT },
          measure: (a: PolicyActor) => closedLoopRate(a, make, 2 * IN_FLIGHT * 256, ms),
          unit: 'calls/s',
          better: 'higher' as const,
          note,
        })),
      ),
    );
    return figures;
  },
};

export default scenario;
