/**
 * Policy comparison (seed 004's routing-level test): for each policy a FRESH simulated fleet (worker
 * thread) and a FRESH router (`switchyard serve` child process) take the same seeded workload; the runs
 * are reported side by side: compare.json, compare.md, a console table, PNG/SVG plots (TTFT CDF, per-GPU
 * request share, output throughput, cache hit rate) and one self-contained report.html.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { OptionsError } from '../config/options.js';
import { isPolicyName, policyNames, KNOWN_POLICY_NAMES } from '../policies/registry.js';
import type { SimOptions } from '../sim/options.js';
import { barChart, cdfPoints, formatNumber, lineChart, percentFormat } from './charts/svg.js';
import { pngRenderer, writeChart } from './charts/png.js';
import { startFleet, startRouterProcess } from './harness.js';
import { htmlFigure, htmlList, htmlReport, htmlTable } from './html.js';
import type { LoadOptions, WorkloadOptions } from './options.js';
import { markdownTable, textTable } from './report.js';
import { runLoad } from './runner.js';
import { METRIC_DEFINITIONS, type LoadSummary } from './summary.js';

export interface CompareOptions {
  policies: string[];
  simWorkers: number;
  sim: SimOptions;
  workload: WorkloadOptions;
  output: string;
  /** Extra `switchyard serve` flags for every router. */
  routerArgs: string[];
  quiet: boolean;
  progress: LoadOptions['progress'];
}

export interface PolicyRun {
  policy: string;
  dir: string;
  summary: LoadSummary;
  ttftSortedMs: Float64Array;
}

export interface CompareResult {
  dir: string;
  runs: PolicyRun[];
  files: { compareJson: string; markdown: string; html: string; svgs: string[]; pngs: string[] };
  /** Why no PNGs were written (renderer unavailable), else undefined. */
  pngUnavailable: string | undefined;
}

/** Rejects policy names the registry does not know, listing the valid ones. */
export function validatePolicies(names: readonly string[]): void {
  if (names.length === 0) throw new OptionsError('--policies needs at least one policy name');
  const seen = new Set<string>();
  for (const name of names) {
    if (seen.has(name)) throw new OptionsError(`--policies lists "${name}" twice`);
    seen.add(name);
    if (!isPolicyName(name)) {
      const pending = KNOWN_POLICY_NAMES.filter((n) => !isPolicyName(n));
      throw new OptionsError(`unknown policy "${name}"; valid policies: ${policyNames().join(', ')}${pending.length > 0 ? ` (not available yet: ${pending.join(', ')})` : ''}`);
    }
  }
}

function n2(v: unknown, d = 2): string {
  return typeof v === 'number' && Number.isFinite(v) ? v.toFixed(d) : '-';
}

function pct(v: unknown): string {
  return typeof v === 'number' && Number.isFinite(v) ? `${(v * 100).toFixed(1)}%` : '-';
}

function shareSpread(s: LoadSummary, workers: number): { min: number; max: number } {
  const shares = new Array<number>(workers).fill(0);
  for (const g of s.gpu_metrics) if (g.gpu_id >= 0 && g.gpu_id < workers) shares[g.gpu_id] = g.share;
  return { min: Math.min(...shares), max: Math.max(...shares) };
}

export async function runCompare(o: CompareOptions, log: (line: string) => void = (l) => process.stderr.write(l + '\n')): Promise<CompareResult> {
  validatePolicies(o.policies);
  const dir = resolve(o.output);
  mkdirSync(dir, { recursive: true });
  const runs: PolicyRun[] = [];
  for (const policy of o.policies) {
    const runDir = join(dir, policy);
    mkdirSync(runDir, { recursive: true });
    log(`[compare] ${policy}: starting ${o.simWorkers} simulated workers and a router`);
    const fleet = await startFleet(o.sim, o.simWorkers);
    try {
      const router = await startRouterProcess({
        workerUrls: fleet.urls,
        policy,
        seed: o.workload.seed,
        extraArgs: o.routerArgs,
        logPath: join(runDir, 'router.log'),
      });
      try {
        const result = await runLoad(
          {
            ...o.workload,
            url: router.url,
            output: runDir,
            target: 'router',
            gpuFallbackPolicy: policy === 'round_robin' || policy === 'random' ? policy : 'none',
            numGpus: o.simWorkers,
            runId: `${policy}-${o.workload.seed}`,
            quiet: true,
            progress: o.progress,
          },
          { log, label: policy },
        );
        runs.push({ policy, dir: runDir, summary: result.summary, ttftSortedMs: result.ttftSortedMs });
        const s = result.summary;
        log(`[compare] ${policy}: ${s.completed} completed, ${s.failed} failed, ${n2(s.output_throughput, 1)} output tok/s, TTFT p99 ${n2(s['p99_ttft_ms'])} ms`);
      } finally {
        await router.stop();
      }
    } finally {
      await fleet.close();
    }
  }
  return writeCompareOutputs(o, dir, runs);
}

function tableRows(o: CompareOptions, runs: readonly PolicyRun[]): { headers: string[]; rows: string[][] } {
  const slo = o.workload.slo !== undefined;
  const headers = ['policy', 'completed', 'failed', 'req/s', 'out tok/s', 'TTFT mean ms', 'TTFT p50 ms', 'TTFT p99 ms', 'TPOT p50 ms', 'ITL p99 ms', 'E2E p50 ms', 'E2E p99 ms', 'cache hit', 'GPU share min-max'];
  if (slo) headers.push('goodput req/s');
  const rows = runs.map((r) => {
    const s = r.summary;
    const sp = shareSpread(s, o.simWorkers);
    const row = [
      r.policy,
      String(s.completed),
      String(s.failed),
      n2(s.request_throughput),
      n2(s.output_throughput, 1),
      n2(s['mean_ttft_ms']),
      n2(s['median_ttft_ms']),
      n2(s['p99_ttft_ms']),
      n2(s['median_tpot_ms']),
      n2(s['p99_itl_ms']),
      n2(s['median_e2e_latency_ms']),
      n2(s['p99_e2e_latency_ms']),
      pct(s.cache_hit_rate),
      `${pct(sp.min)}-${pct(sp.max)}`,
    ];
    if (slo) row.push(n2(s['goodput']));
    return row;
  });
  return { headers, rows };
}

export function writeCompareOutputs(o: CompareOptions, dir: string, runs: readonly PolicyRun[]): CompareResult {
  const { headers, rows } = tableRows(o, runs);
  const scale = o.sim.timeScale;
  const timeNote = scale === 1 ? 'latencies are wall-clock ms of the simulated fleet (time scale 1: modelled GPU time)' : `latencies are wall-clock ms with the fleet at --sim-time-scale ${scale} (${formatNumber(1 / scale)}x faster than the modelled GPU)`;
  const workloadLine = `${o.workload.dataset} dataset, ${runs[0]?.summary['num_prompts'] ?? '?'} prompts, request rate ${Number.isFinite(o.workload.requestRate) ? o.workload.requestRate : 'inf'} req/s, burstiness ${o.workload.burstiness}, seed ${o.workload.seed}, ${o.workload.api} API, ${o.workload.disableStream ? 'non-streaming' : 'streaming'}`;
  const fleetLine = `${o.simWorkers} simulated workers (profile ${o.sim.profile}, max-running-requests ${o.sim.maxRunningRequests}, radix cache ${o.sim.disableRadixCache ? 'off' : 'on'}), a fresh fleet and router per policy`;

  // ---------------------------------------------------------------- charts
  const svgs: Record<string, { svg: string; caption: string; heading: string }> = {};
  svgs['ttft_cdf'] = {
    svg: lineChart({
      title: 'TTFT distribution per policy (CDF)',
      subtitle: workloadLine,
      xLabel: 'time to first token (ms, log scale)',
      yLabel: 'fraction of requests',
      xLog: true,
      yMin: 0,
      yMax: 1,
      yFormat: percentFormat,
      series: runs.map((r) => ({ name: r.policy, points: cdfPoints(r.ttftSortedMs), step: true })),
    }),
    caption: 'Empirical CDF of TTFT (request sent -> first non-empty content chunk) per policy; further left and steeper is better.',
    heading: 'TTFT distribution per policy',
  };
  const gpuCats = Array.from({ length: o.simWorkers }, (_, g) => `GPU ${g}`);
  svgs['gpu_share'] = {
    svg: barChart({
      title: 'Per-GPU request share per policy',
      subtitle: `${o.simWorkers} workers; an even split is ${percentFormat(1 / o.simWorkers)} each`,
      xLabel: 'GPU (worker, by X-SGLang-Worker)',
      yLabel: 'share of requests',
      categories: gpuCats,
      series: runs.map((r) => {
        const v = new Array<number>(o.simWorkers).fill(0);
        for (const g of r.summary.gpu_metrics) if (g.gpu_id >= 0 && g.gpu_id < o.simWorkers) v[g.gpu_id] = g.share;
        return { name: r.policy, values: v };
      }),
      yFormat: percentFormat,
      valueFormat: (v) => `${Math.round(v * 100)}%`,
    }),
    caption: 'Fraction of the requests each GPU served, per policy.',
    heading: 'Per-GPU request share (chart)',
  };
  svgs['output_throughput'] = {
    svg: barChart({
      title: 'Output token throughput per policy',
      subtitle: scale === 1 ? 'wall-clock tokens/s of the simulated fleet (time scale 1: modelled GPU speed)' : `wall-clock tokens/s with the fleet at --sim-time-scale ${scale} (${formatNumber(1 / scale)}x the modelled GPU speed)`,
      xLabel: 'policy',
      yLabel: 'output tokens / s',
      categories: runs.map((r) => r.policy),
      series: [{ name: '', values: runs.map((r) => r.summary.output_throughput) }],
      colorByCategory: true,
      valueFormat: (v) => formatNumber(v),
    }),
    caption: 'Generated tokens per second over the run (start -> last completion).',
    heading: 'Output token throughput',
  };
  svgs['cache_hit_rate'] = {
    svg: barChart({
      title: 'Prefix cache hit rate per policy',
      subtitle: 'cached prompt tokens / prompt tokens, as the workers report them',
      xLabel: 'policy',
      yLabel: 'cache hit rate',
      categories: runs.map((r) => r.policy),
      series: [{ name: '', values: runs.map((r) => (Number.isFinite(r.summary.cache_hit_rate) ? r.summary.cache_hit_rate : 0)) }],
      yMax: 1,
      colorByCategory: true,
      yFormat: percentFormat,
      valueFormat: percentFormat,
    }),
    caption: 'meta_info.cached_tokens (or usage.prompt_tokens_details.cached_tokens) over prompt tokens.',
    heading: 'Prefix cache hit rate',
  };
  const plotsDir = join(dir, 'plots');
  mkdirSync(plotsDir, { recursive: true });
  const svgFiles: string[] = [];
  const pngFiles: string[] = [];
  for (const [name, c] of Object.entries(svgs)) {
    const w = writeChart(c.svg, join(plotsDir, name));
    svgFiles.push(w.svg);
    if (w.png !== undefined) pngFiles.push(w.png);
  }
  const pngUnavailable = pngRenderer().reason;

  // ---------------------------------------------------------------- compare.json
  const compareJson = {
    generated_at: new Date().toISOString(),
    config: {
      policies: o.policies,
      sim_workers: o.simWorkers,
      sim: { profile: o.sim.profile, time_scale: o.sim.timeScale, max_running_requests: o.sim.maxRunningRequests, disable_radix_cache: o.sim.disableRadixCache, seed: o.sim.seed },
      router_args: o.routerArgs,
      workload: { ...o.workload, request_rate: Number.isFinite(o.workload.requestRate) ? o.workload.requestRate : 'inf' },
    },
    definitions: METRIC_DEFINITIONS,
    results: runs.map((r) => {
      const s = r.summary;
      const pick: Record<string, unknown> = {};
      for (const k of Object.keys(s)) if (k !== 'definitions' && k !== 'gpu_metrics') pick[k] = s[k];
      return { policy: r.policy, dir: r.dir, ...pick, gpu_share: Array.from({ length: o.simWorkers }, (_, g) => s.gpu_metrics.find((m) => m.gpu_id === g)?.share ?? 0), gpu_metrics: s.gpu_metrics };
    }),
    plots: { svg: svgFiles, png: pngFiles, png_unavailable: pngUnavailable ?? null },
  };
  const compareJsonPath = join(dir, 'compare.json');
  writeFileSync(compareJsonPath, JSON.stringify(compareJson, null, 2) + '\n');

  // ---------------------------------------------------------------- markdown
  const gpuHeaders = ['policy', ...gpuCats];
  const gpuRows = runs.map((r) => [r.policy, ...Array.from({ length: o.simWorkers }, (_, g) => pct(r.summary.gpu_metrics.find((m) => m.gpu_id === g)?.share ?? 0))]);
  const md = [
    '# Policy comparison',
    '',
    `- Workload: ${workloadLine}`,
    `- Fleet: ${fleetLine}`,
    `- Times in ms; ${timeNote}`,
    '- Definitions: shared/reference/peers-and-metrics.md (TTFT: sent -> first content chunk; ITL pooled; TPOT = (E2E - TTFT)/(out - 1); E2E: sent -> last byte); percentiles: linear interpolation (numpy default)',
    '',
    markdownTable(headers, rows),
    '',
    '## Per-GPU request share',
    '',
    markdownTable(gpuHeaders, gpuRows),
    '',
    '## Plots',
    '',
    ...Object.keys(svgs).map((name) => (pngFiles.length > 0 ? `![${name}](plots/${name}.png)` : `![${name}](plots/${name}.svg)`)),
    '',
  ].join('\n');
  const mdPath = join(dir, 'compare.md');
  writeFileSync(mdPath, md);

  // ---------------------------------------------------------------- html
  const html = htmlReport(
    `Switchyard policy comparison: ${o.policies.join(' vs ')}`,
    [`Workload: ${workloadLine}`, `Fleet: ${fleetLine}`, `Times in ms; ${timeNote}`, `Generated ${compareJson.generated_at}`],
    [
      { heading: 'Results', html: htmlTable(headers, rows) },
      { heading: 'Per-GPU request share', html: htmlTable(gpuHeaders, gpuRows) },
      ...Object.values(svgs).map((c) => ({ heading: c.heading, html: htmlFigure(c.svg, c.caption) })),
      { heading: 'Definitions', html: htmlList(Object.values(METRIC_DEFINITIONS)) },
    ],
  );
  const htmlPath = join(dir, 'report.html');
  writeFileSync(htmlPath, html);

  if (!o.quiet) {
    process.stdout.write(`\n${textTable(headers, rows)}\n\nPer-GPU request share\n${textTable(gpuHeaders, gpuRows)}\n\n`);
  }
  return { dir, runs: [...runs], files: { compareJson: compareJsonPath, markdown: mdPath, html: htmlPath, svgs: svgFiles, pngs: pngFiles }, pngUnavailable };
}
