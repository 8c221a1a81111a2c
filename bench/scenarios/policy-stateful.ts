/**
 * The routing policies' own costs (the stateless basics are in policy-decide.ts):
 *
 *   policy.inline.<policy>.w<N>          ns per decision on the calling thread, 8 and 256 workers, over a
 *                                        generated-shared-prefix prompt pool (64 groups x 64 questions,
 *                                        ~2.3 KB prompts): cache_aware pays its tree match + insert here.
 *   policy.actor.<policy>.rate           decisions/s through ONE policy actor with batching (1024 kept
 *                                        outstanding, 100-character prompts as in policy-decide), and
 *   policy.actor.<policy>.rate.cpu       process CPU (both threads) per decision in that run (ns): steadier
 *                                        than the rate on a shared machine, where the rate is whatever CPU
 *                                        the other tenants leave.
 *   policy.actor.cache_aware.rate.prompt2k  the same with the ~2.3 KB prompt pool (clone cost included).
 *   policy.actor.<policy>.hop            us for one decision alone through the actor (nothing else in flight).
 *   policy.large_prompt.actor_ms         a 200 KB prompt decided by cache_aware in its actor: p50 of the
 *   policy.large_prompt.actor_ms.max     round trip (and its max) over 40 prompts from 8 families (the
 *                                        tree holds every family, so matching walks the whole prefix);
 *   policy.large_prompt.inline_ms        what the same decision costs on the calling thread (p50);
 *   policy.large_prompt.frontend_busy_ms the front end's own event-loop time per such decision (event-loop
 *                                        utilisation: cloning the text and posting it), and
 *   policy.large_prompt.frontend_gap_ms  the longest the front end's event loop went without a turn while
 *                                        those decisions ran through the actor (a ticker on setImmediate;
 *                                        on a shared machine this includes the OS preempting the process).
 *
 * Medians over ctx.runs; spread from the min/max of the runs.
 */
import { WorkerTable } from '../../src/actors/worker-table.js';
import { createPolicyHost, type PolicyHost } from '../../src/policies/host.js';
import type { RequestFeatures } from '../../src/policies/types.js';
import { aloneUs, fleet, keep, runLoaded, SHORT_REQUEST as SHORT, sinkValue } from '../lib/policy-bench.js';
import { Rng } from '../../src/util/rng.js';
import { summarize, type BenchContext, type Figure, type Scenario } from '../lib/scenario.js';

const POLICIES = ['cache_aware', 'shortest_queue', 'power_of_two', 'marginal_utility'] as const;
const SIZES = [8, 256] as const;
const OUTSTANDING = 1024;

function words(rng: Rng, chars: number): string {
  const vocab = ['alpha', 'beta', 'gamma', 'delta', 'route', 'token', 'cache', 'prefix', 'worker', 'stream', 'queue', 'model'];
  let s = '';
  while (s.length < chars) s += vocab[rng.int(0, vocab.length - 1)] + (rng.next() < 0.1 ? '. ' : ' ');
  return s.slice(0, chars);
}

/** 64 groups x 64 questions: a 2 KB system prompt per group and a 256-character question. */
function promptPool(): RequestFeatures[] {
  const rng = new Rng(42);
  const out: RequestFeatures[] = [];
  const systems = Array.from({ length: 64 }, (_, g) => `group ${g}: ${words(rng, 2048)}`);
  for (let q = 0; q < 64; q++) {
    for (let g = 0; g < 64; g++) {
      const text = `${systems[g]}\nQuestion ${q}: ${words(rng, 256)}`;
      out.push({ requestId: `p-${g}-${q}`, route: 'chat', text, inputTokens: Math.ceil(text.length / 4), maxNewTokens: 128, stream: true });
    }
  }
  return out;
}

/** ns per inline decision over the pool, median of ~2 ms batches filling `ms`. */
function inlineNs(host: PolicyHost, pool: readonly RequestFeatures[], ms: number): number {
  let k = 0;
  const batch = 256;
  const samples: number[] = [];
  const started = performance.now();
  while (samples.length < 5 || performance.now() - started < ms) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < batch; i++) {
      host.decide(pool[k] as RequestFeatures, keep);
      k = k + 1 === pool.length ? 0 : k + 1;
    }
    samples.push(Number(process.hrtime.bigint() - t0) / batch);
  }
  return summarize(samples).median;
}

function flat(s: string): string {
  return JSON.parse(JSON.stringify(s)) as string;
}

/** 8 families of 200 KB prompts (a 190 KB shared body, a 10 KB tail of their own). */
function largePrompts(): RequestFeatures[] {
  const rng = new Rng(7);
  const bodies = Array.from({ length: 8 }, (_, f) => `family ${f} ${words(rng, 190 * 1024)}`);
  const out: RequestFeatures[] = [];
  for (let i = 0; i < 48; i++) {
    // flat, as JSON.parse hands a request's text to the front end (a concatenation would be flattened,
    // i.e. copied into a fresh 200 KB string, by whatever reads it first: a cost of building it here)
    const text = flat(`${bodies[i % 8]} ${words(rng, 10 * 1024)}`);
    out.push({ requestId: `big-${i}`, route: 'generate', text, inputTokens: Math.ceil(text.length / 4), maxNewTokens: 16, stream: false });
  }
  return out;
}

async function largePromptRun(ctx: BenchContext, prompts: readonly RequestFeatures[]): Promise<{ p50: number; max: number; gap: number; busy: number; inline: number }> {
  const table = WorkerTable.create(16);
  const ws = fleet(table, 8);
  const host = createPolicyHost('cache_aware', { seed: 1 }, table, undefined, { placement: 'actor' });
  await host.ready();
  host.setWorkers(ws);
  // warm the thread, teach the tree every family (the first 8 prompts), then measure the rest
  for (let i = 0; i < 500; i++) await new Promise<void>((r) => host.decide(SHORT, () => r()));
  for (let i = 0; i < 8; i++) await new Promise<void>((r) => host.decide(prompts[i] as RequestFeatures, () => r()));
  // round trips, and the front end's busy time (event-loop utilisation: what it spent, not waited)
  const times: number[] = [];
  const elu0 = performance.eventLoopUtilization();
  for (let i = 8; i < prompts.length; i++) {
    const s = performance.now();
    await new Promise<void>((r) => host.decide(prompts[i] as RequestFeatures, (err, d) => (keep(err, d), r())));
    times.push(performance.now() - s);
  }
  const busy = performance.eventLoopUtilization(elu0).active / (prompts.length - 8);
  // again with a ticker on the front end's loop: its longest turn while decisions run
  let maxGap = 0;
  let ticking = true;
  let last = performance.now();
  const tick = (): void => {
    const now = performance.now();
    if (now - last > maxGap) maxGap = now - last;
    last = now;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  for (let i = 8; i < prompts.length; i++) await new Promise<void>((r) => host.decide(prompts[i] as RequestFeatures, (err, d) => (keep(err, d), r())));
  ticking = false;
  await host.close();
  // the same decisions on the calling thread
  const inline = createPolicyHost('cache_aware', { seed: 1 }, table, undefined, { placement: 'inline' });
  inline.setWorkers(ws);
  for (let i = 0; i < 8; i++) inline.decide(prompts[i] as RequestFeatures, keep);
  const inlineTimes: number[] = [];
  for (let i = 8; i < prompts.length; i++) {
    const s = performance.now();
    inline.decide(prompts[i] as RequestFeatures, keep);
    inlineTimes.push(performance.now() - s);
  }
  await inline.close();
  const sorted = [...times].sort((a, b) => a - b);
  ctx.log(
    `200 KB prompts: actor p50 ${summarize(times).median.toFixed(3)} ms, max ${(sorted.at(-1) ?? 0).toFixed(3)} ms, front end busy ${busy.toFixed(3)} ms ` +
      `per decision, loop gap max ${maxGap.toFixed(3)} ms, inline p50 ${summarize(inlineTimes).median.toFixed(3)} ms`,
  );
  return { p50: summarize(times).median, max: sorted.at(-1) ?? 0, gap: maxGap, busy, inline: summarize(inlineTimes).median };
}

function figure(name: string, values: number[], unit: string, better: 'higher' | 'lower', note: string): Figure {
  const { median, spread } = summarize(values);
  const digits = median >= 1000 ? 0 : 3;
  return { name, value: Number(median.toFixed(digits)), unit, better, spread: Math.round(spread * 1000) / 1000, note };
}

const scenario: Scenario = {
  name: 'policy-stateful',
  description: 'cache_aware, shortest_queue, power_of_two, marginal_utility: inline ns/decision, actor decisions/s and hop, 200 KB prompts',
  async run(ctx: BenchContext): Promise<Figure[]> {
    const ms = ctx.quick ? 300 : 1000;
    const figures: Figure[] = [];
    const report = (f: Figure): void => {
      ctx.log(`${f.name}: ${f.value} ${f.unit} (spread ${f.spread})`);
      figures.push(f);
    };
    const pool = promptPool();

    for (const name of POLICIES) {
      for (const n of SIZES) {
        const samples: number[] = [];
        for (let r = 0; r < ctx.runs; r++) {
          const table = WorkerTable.create(256);
          const host = createPolicyHost(name, { seed: 1 }, table, undefined, { placement: 'inline' });
          host.setWorkers(fleet(table, n));
          inlineNs(host, pool, ms / 4); // warm: the tree holds the pool, the JIT is hot
          samples.push(inlineNs(host, pool, ms));
          await host.close();
        }
        report(figure(`policy.inline.${name}.w${n}`, samples, 'ns', 'lower', `inline, ${n} workers, ~2.3 KB prompts`));
      }
    }

    for (const name of ['cache_aware', 'marginal_utility'] as const) {
      const table = WorkerTable.create(16);
      const host = createPolicyHost(name, { seed: 1 }, table, undefined, { placement: 'actor' });
      await host.ready();
      host.setWorkers(fleet(table, 8));
      await runLoaded(host, [SHORT], 200, OUTSTANDING); // warm-up
      const rates: number[] = [];
      const cpus: number[] = [];
      const hops: number[] = [];
      for (let r = 0; r < ctx.runs; r++) {
        const m = await runLoaded(host, [SHORT], ms, OUTSTANDING);
        rates.push(m.decisions / m.seconds);
        cpus.push(m.cpuNs);
        hops.push(summarize(await aloneUs(host, SHORT, ms / 2)).median);
      }
      report(figure(`policy.actor.${name}.rate`, rates, 'decisions/s', 'higher', `one actor, ${OUTSTANDING} outstanding, 100-char prompts`));
      report(figure(`policy.actor.${name}.rate.cpu`, cpus, 'ns', 'lower', 'process CPU (both threads) per decision'));
      report(figure(`policy.actor.${name}.hop`, hops, 'us', 'lower', 'one decision alone through the actor'));
      if (name === 'cache_aware') {
        await runLoaded(host, pool, 300, OUTSTANDING);
        const big: number[] = [];
        for (let r = 0; r < ctx.runs; r++) {
          const m = await runLoaded(host, pool, ms, OUTSTANDING);
          big.push(m.decisions / m.seconds);
        }
        report(figure('policy.actor.cache_aware.rate.prompt2k', big, 'decisions/s', 'higher', 'one actor, ~2.3 KB prompts (clone + tree)'));
      }
      await host.close();
    }

    const prompts = largePrompts();
    const p50: number[] = [];
    const max: number[] = [];
    const gap: number[] = [];
    const busy: number[] = [];
    const inline: number[] = [];
    for (let r = 0; r < ctx.runs; r++) {
      const m = await largePromptRun(ctx, prompts);
      p50.push(m.p50);
      max.push(m.max);
      gap.push(m.gap);
      busy.push(m.busy);
      inline.push(m.inline);
    }
    report(figure('policy.large_prompt.actor_ms', p50, 'ms', 'lower', '200 KB prompt, cache_aware in its actor, p50 round trip'));
    report(figure('policy.large_prompt.actor_ms.max', max, 'ms', 'lower', 'slowest of 40'));
    report(figure('policy.large_prompt.inline_ms', inline, 'ms', 'lower', 'the same decision on the calling thread'));
    report(figure('policy.large_prompt.frontend_busy_ms', busy, 'ms', 'lower', 'front-end event-loop time spent per decision (clone + send)'));
    report(figure('policy.large_prompt.frontend_gap_ms', gap, 'ms', 'lower', 'longest event-loop turn of the front end meanwhile (OS noise included)'));
    if (sinkValue() === -1) ctx.log('unreachable');
    return figures;
  },
};

export default scenario;
