/**
 * Cost of one routing decision through a PolicyHost, for random and round_robin:
 *
 *   policy.decide.inline.<policy>.w<N>   ns per decision on the calling thread (InlinePolicyHost), with
 *                                        8 and 256 workers (all available; candidates collected from the
 *                                        shared worker table on every call, as in production).
 *   policy.decide.actor.<policy>.w8      ns per decision through an ActorPolicyHost under load: 1024
 *                                        decisions kept outstanding, so crossings are batched; this is
 *                                        the amortised cost the front end pays per request.
 *   policy.decide.actor.<policy>.w8.cpu  process CPU (front end + actor thread) per decision in that run:
 *                                        steadier than wall time on a shared machine.
 *   policy.decide.actor.<policy>.latency us for one decision alone through the actor (nothing else in
 *                                        flight): the hop a stateful policy adds at low load.
 *
 * Medians over ctx.runs; spread from the min/max of the runs.
 */
import { WorkerTable } from '../../src/actors/worker-table.js';
import { createPolicyHost, type PolicyHost } from '../../src/policies/host.js';
import { aloneUs, fleet, keep, runLoaded, SHORT_REQUEST as REQUEST, sinkValue } from '../lib/policy-bench.js';
import { summarize, type BenchContext, type Figure, type Scenario } from '../lib/scenario.js';

const POLICIES = ['random', 'round_robin'] as const;
const SIZES = [8, 256] as const;
const OUTSTANDING = 1024;

/** ns per inline decision: the median over batches of about 2 ms that fill `ms`. */
function inlineNs(host: PolicyHost, ms: number): number {
  let batch = 1024;
  for (;;) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < batch; i++) host.decide(REQUEST, keep);
    const took = Number(process.hrtime.bigint() - t0) / 1e6;
    if (took >= 0.5) {
      batch = Math.max(1, Math.round((batch * 2) / took));
      break;
    }
    batch *= 4;
  }
  const samples: number[] = [];
  const started = performance.now();
  while (samples.length < 5 || performance.now() - started < ms) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < batch; i++) host.decide(REQUEST, keep);
    samples.push(Number(process.hrtime.bigint() - t0) / batch);
  }
  return summarize(samples).median;
}

function figure(name: string, values: number[], unit: string, note: string): Figure {
  const { median, spread } = summarize(values);
  return { name, value: Math.round(median * 100) / 100, unit, better: 'lower', spread: Math.round(spread * 1000) / 1000, note };
}

const scenario: Scenario = {
  name: 'policy-decide',
  description: 'decide cost for random and round_robin: inline (8 and 256 workers), through the actor host (loaded and alone)',
  gate: true,
  async run(ctx: BenchContext): Promise<Figure[]> {
    const ms = ctx.quick ? 200 : 500;
    const figures: Figure[] = [];
    const report = (f: Figure): void => {
      ctx.log(`${f.name}: ${f.value} ${f.unit} (spread ${f.spread})`);
      figures.push(f);
    };

    for (const name of POLICIES) {
      for (const n of SIZES) {
        const table = WorkerTable.create(256);
        const host = createPolicyHost(name, { seed: 1 }, table, undefined, { placement: 'inline' });
        host.setWorkers(fleet(table, n));
        const samples: number[] = [];
        for (let r = 0; r < ctx.runs; r++) samples.push(inlineNs(host, ms));
        await host.close();
        report(figure(`policy.decide.inline.${name}.w${n}`, samples, 'ns', `inline, ${n} workers`));
      }
    }

    for (const name of POLICIES) {
      const table = WorkerTable.create(16);
      const host = createPolicyHost(name, { seed: 1 }, table, undefined, { placement: 'actor' });
      await host.ready();
      host.setWorkers(fleet(table, 8));
      await runLoaded(host, [REQUEST], 100, OUTSTANDING); // warm-up
      const loaded: number[] = [];
      const loadedCpu: number[] = [];
      const alone: number[] = [];
      for (let r = 0; r < ctx.runs; r++) {
        const m = await runLoaded(host, [REQUEST], ms, OUTSTANDING);
        loaded.push((m.seconds * 1e9) / m.decisions);
        loadedCpu.push(m.cpuNs);
        const rt = await aloneUs(host, REQUEST, ms / 2);
        alone.push(rt.reduce((a, b) => a + b, 0) / rt.length);
      }
      await host.close();
      report(figure(`policy.decide.actor.${name}.w8`, loaded, 'ns', `actor host, ${OUTSTANDING} outstanding`));
      report(figure(`policy.decide.actor.${name}.w8.cpu`, loadedCpu, 'ns', 'process CPU (both threads) per decision'));
      report(figure(`policy.decide.actor.${name}.latency`, alone, 'us', 'actor host, one decision at a time'));
    }
    if (sinkValue() === -1) ctx.log('unreachable'); // keeps the decisions observable to the optimiser
    return figures;
  },
};

export default scenario;
