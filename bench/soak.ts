/**
 * `npm run soak -- --minutes N`: steady load with faults injected through a router in front of simulated
 * workers (bench/lib/soak-run.ts), reporting errors by kind (and which the faults explain), requests
 * accepted and lost, counters left over at the end and the router's memory trend, as a table and JSON.
 *
 *   npm run soak -- --minutes 5                       the defaults (20 req/s, 3 workers, every fault)
 *   npm run soak -- --minutes 30 --rate 50 --json out.json
 *   npm run soak -- --faults kill,hang --max-rss-slope-mb-per-min 2
 *   npm run soak -- --checks                          the one-shot checks instead (bench/lib/soak-checks.ts)
 *
 * Exit status: 0 when nothing was lost, no counter leaked and the RSS slope stayed under its threshold;
 * 1 otherwise; 2 for bad flags.
 */
import { writeFileSync } from 'node:fs';
import { parseOptions, HelpRequested, OptionsError, type OptionSpec } from '../src/config/options.js';
import { FAULT_KINDS, type FaultKind } from './lib/soak-report.js';
import { runSoak } from './lib/soak-run.js';
import { runChecks } from './lib/soak-checks.js';

const SPECS = [
  { name: 'minutes', type: 'number', default: 5, min: 0.05, env: false, metavar: 'N', help: 'length of the load phase' },
  { name: 'rate', type: 'number', default: 20, min: 0.1, env: false, metavar: 'R', help: 'mean requests per second (Poisson arrivals)' },
  { name: 'workers', type: 'integer', default: 3, min: 1, max: 32, env: false, help: 'simulated workers, each its own `switchyard sim` process' },
  { name: 'stream-fraction', type: 'number', default: 0.5, min: 0, max: 1, env: false, help: 'share of streaming requests' },
  { name: 'long-stream-fraction', type: 'number', default: 0.2, min: 0, max: 1, env: false, help: 'share of streams with long answers (1000-3000 tokens), so that kills land mid-stream' },
  { name: 'abort-fraction', type: 'number', default: 0.05, min: 0, max: 1, env: false, help: 'share of requests the client abandons mid-way (they ask for long answers)' },
  { name: 'max-tokens', type: 'integer', default: 128, min: 8, env: false, help: 'output lengths are uniform in [8, this]' },
  { name: 'time-scale', type: 'number', default: 0.05, min: 0.001, env: false, help: "the workers' --time-scale (0.05 = 20x a simulated H100)" },
  { name: 'policy', type: 'string', default: 'cache_aware', env: false, help: "the router's --policy" },
  { name: 'faults', type: 'list', default: [...FAULT_KINDS], env: false, metavar: 'KIND[,KIND]', help: `faults injected in turn (${FAULT_KINDS.join(', ')}); an empty string for none` },
  { name: 'fault-every-secs', type: 'number', default: 30, min: 1, env: false, help: 'one fault starts this often (shorter runs fit every kind in)' },
  { name: 'fault-secs', type: 'number', default: 8, min: 0.5, env: false, help: 'how long each fault lasts (at most 60% of the period)' },
  { name: 'warmup-secs', type: 'number', min: 0, env: false, help: 'no faults, and no memory slope, before this (default 20% of the run, at most 60 s)' },
  { name: 'sample-secs', type: 'number', default: 5, min: 0.5, env: false, help: "the router's memory and counters are sampled this often (a full GC first)" },
  { name: 'request-timeout-secs', type: 'number', default: 5, min: 0.1, env: false, help: "the router's --request-timeout-secs (ends requests to a hanging worker)" },
  { name: 'client-timeout-secs', type: 'number', default: 60, min: 1, env: false, help: 'a request without a complete answer by then is lost' },
  { name: 'max-rss-slope-mb-per-min', type: 'number', default: 5, env: false, help: "fail when the router's RSS grows faster over the steady part" },
  { name: 'max-heap-slope-mb-per-min', type: 'number', env: false, help: "fail when the router's live heap grows faster (default: report only)" },
  { name: 'router-args', type: 'string', default: '', env: false, metavar: '"--FLAG V ..."', help: 'extra router flags (space-separated)' },
  { name: 'seed', type: 'integer', default: 1, env: false, help: 'seed of arrivals, prompts, lengths and aborts' },
  { name: 'json', type: 'string', env: false, metavar: 'PATH', help: 'also write the JSON result (with every memory sample) here' },
  { name: 'checks', type: 'boolean', default: false, env: false, help: 'run the one-shot checks instead: 10,000 aborted streams, a worker killed mid-load, an admission burst' },
  { name: 'aborts', type: 'integer', default: 10_000, min: 1, env: false, help: '--checks: streams to abort' },
  { name: 'requests', type: 'integer', default: 2000, min: 4, env: false, help: '--checks: non-streaming requests around the kill' },
] as const satisfies readonly OptionSpec[];

async function main(): Promise<number> {
  let o;
  try {
    o = parseOptions(SPECS, process.argv.slice(2), { command: 'soak (npm run soak -- [options])', summary: 'Steady load with faults injected through the router; reports errors, lost requests, leaked counters and memory growth.' });
  } catch (err) {
    if (err instanceof HelpRequested) {
      process.stdout.write(err.text);
      return 0;
    }
    if (err instanceof OptionsError) {
      process.stderr.write(`soak: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (o.checks) {
    console.log(JSON.stringify(await runChecks(o.aborts, o.requests), null, 2));
    return 0;
  }
  const faults = o.faults.filter((f) => f !== '');
  for (const f of faults) {
    if (!(FAULT_KINDS as readonly string[]).includes(f)) {
      process.stderr.write(`soak: unknown fault '${f}' (one of ${FAULT_KINDS.join(', ')})\n`);
      return 2;
    }
  }
  const result = await runSoak({
    minutes: o.minutes,
    rate: o.rate,
    workers: o.workers,
    streamFraction: o.streamFraction,
    longStreamFraction: o.longStreamFraction,
    abortFraction: o.abortFraction,
    maxTokens: o.maxTokens,
    timeScale: o.timeScale,
    policy: o.policy,
    sampleSecs: o.sampleSecs,
    warmupSecs: o.warmupSecs,
    faultEverySecs: o.faultEverySecs,
    faultSecs: o.faultSecs,
    faults: faults as FaultKind[],
    requestTimeoutSecs: o.requestTimeoutSecs,
    clientTimeoutSecs: o.clientTimeoutSecs,
    seed: o.seed,
    maxRssSlopeMbPerMin: o.maxRssSlopeMbPerMin,
    maxHeapSlopeMbPerMin: o.maxHeapSlopeMbPerMin,
    routerArgs: o.routerArgs.split(/\s+/).filter((a) => a !== ''),
    log: (m) => process.stderr.write(`[soak] ${m}\n`),
  });
  console.log(result.text);
  console.log('');
  console.log(JSON.stringify(result.summary));
  if (o.json !== undefined) writeFileSync(o.json, JSON.stringify({ ...result.summary, samples: result.samples }, null, 2));
  return result.summary.verdict.pass ? 0 : 1;
}

process.exitCode = await main().catch((err: unknown) => {
  process.stderr.write(`soak: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return 1;
});
