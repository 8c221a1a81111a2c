/**
 * Node-level sweep (seed 004's test_sweep.sh): one simulated server, restarted FRESH for each
 * --max-running-requests value, takes the same seeded workload directly (no router); throughput and
 * latency per value: sweep.json, sweep.md, a console table, two plots (PNG + SVG) and report.html.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { OptionsError } from '../config/options.js';
import type { SimOptions } from '../sim/options.js';
import { formatNumber, lineChart } from './charts/svg.js';
import { pngRenderer, writeChart } from './charts/png.js';
import { startFleet } from './harness.js';
import { htmlFigure, htmlList, htmlReport, htmlTable } from './html.js';
import type { LoadOptions, WorkloadOptions } from './options.js';
import { markdownTable, textTable } from './report.js';
import { runLoad } from './runner.js';
import { METRIC_DEFINITIONS, type LoadSummary } from './summary.js';

export interface SweepOptions {
  maxRunningRequests: number[];
  sim: SimOptions;
  workload: WorkloadOptions;
  output: string;
  quiet: boolean;
  progress: LoadOptions['progress'];
}

export interface SweepPoint {
  maxRunningRequests: number;
  dir: string;
  summary: LoadSummary;
}

export interface SweepResult {
  dir: string;
  points: SweepPoint[];
  files: { sweepJson: string; markdown: string; html: string; svgs: string[]; pngs: string[] };
  pngUnavailable: string | undefined;
}

function n2(v: unknown, d = 2): string {
  return typeof v === 'number' && Number.isFinite(v) ? v.toFixed(d) : '-';
}

export async function runSweep(o: SweepOptions, log: (line: string) => void = (l) => process.stderr.write(l + '\n')): Promise<SweepResult> {
  if (o.maxRunningRequests.length === 0) throw new OptionsError('--max-running-requests needs at least one value');
  for (const v of o.maxRunningRequests) if (!Number.isInteger(v) || v < 1) throw new OptionsError(`--max-running-requests values must be integers >= 1, got ${v}`);
  const dir = resolve(o.output);
  mkdirSync(dir, { recursive: true });
  const points: SweepPoint[] = [];
  for (const mrr of o.maxRunningRequests) {
    const runDir = join(dir, `mrr-${mrr}`);
    log(`[sweep] max-running-requests ${mrr}: starting a fresh simulated server`);
    const fleet = await startFleet({ ...o.sim, maxRunningRequests: mrr }, 1);
    try {
      const r = await runLoad(
        { ...o.workload, url: fleet.urls[0]!, output: runDir, target: 'server', gpuFallbackPolicy: 'none', numGpus: 1, runId: `mrr${mrr}-${o.workload.seed}`, quiet: true, progress: o.progress },
        { log, label: `mrr ${mrr}` },
      );
      points.push({ maxRunningRequests: mrr, dir: runDir, summary: r.summary });
      log(`[sweep] max-running-requests ${mrr}: ${n2(r.summary.request_throughput)} req/s, ${n2(r.summary.output_throughput, 1)} output tok/s, E2E p50 ${n2(r.summary['median_e2e_latency_ms'])} ms`);
    } finally {
      await fleet.close();
    }
  }
  return writeSweepOutputs(o, dir, points);
}

export function writeSweepOutputs(o: SweepOptions, dir: string, points: readonly SweepPoint[]): SweepResult {
  const headers = ['max-running-requests', 'completed', 'failed', 'req/s', 'out tok/s', 'concurrency', 'TTFT p50 ms', 'TTFT p99 ms', 'TPOT p50 ms', 'E2E p50 ms', 'E2E p99 ms', 'total p50 ms', 'queue p50 ms', 'cache hit'];
  const rows = points.map((p) => {
    const s = p.summary;
    return [
      String(p.maxRunningRequests),
      String(s.completed),
      String(s.failed),
      n2(s.request_throughput),
      n2(s.output_throughput, 1),
      n2(s['concurrency']),
      n2(s['median_ttft_ms']),
      n2(s['p99_ttft_ms']),
      n2(s['median_tpot_ms']),
      n2(s['median_e2e_latency_ms']),
      n2(s['p99_e2e_latency_ms']),
      n2(s['median_total_latency_ms']),
      n2(s['median_queue_ms']),
      Number.isFinite(s.cache_hit_rate) ? `${(s.cache_hit_rate * 100).toFixed(1)}%` : '-',
    ];
  });
  const workloadLine = `${o.workload.dataset} dataset, ${points[0]?.summary['num_prompts'] ?? '?'} prompts, request rate ${Number.isFinite(o.workload.requestRate) ? o.workload.requestRate : 'inf'} req/s, seed ${o.workload.seed}, ${o.workload.disableStream ? 'non-streaming' : 'streaming'}`;
  const timeNote = o.sim.timeScale === 1 ? 'time scale 1 (modelled GPU time)' : `server at --sim-time-scale ${o.sim.timeScale} (${formatNumber(1 / o.sim.timeScale)}x faster than the modelled GPU)`;
  const xs = points.map((p) => p.maxRunningRequests);
  const xLog = xs.length > 1 && Math.max(...xs) / Math.min(...xs) >= 8;
  const series = (key: string): [number, number][] => points.map((p) => [p.maxRunningRequests, Number(p.summary[key])]);
  const svgs = {
    sweep_throughput: {
      svg: lineChart({
        title: 'Throughput vs max-running-requests (one simulated server)',
        subtitle: workloadLine,
        xLabel: `max-running-requests${xLog ? ' (log scale)' : ''}`,
        yLabel: 'output tokens / s',
        xLog,
        xTicks: xs,
        yMin: 0,
        series: [{ name: 'output throughput (tok/s)', points: points.map((p) => [p.maxRunningRequests, p.summary.output_throughput] as [number, number]), markers: true }],
      }),
      caption: 'Output token throughput per --max-running-requests value.',
    },
    sweep_latency: {
      svg: lineChart({
        title: 'Latency vs max-running-requests (one simulated server)',
        subtitle: `${workloadLine}; ${timeNote}`,
        xLabel: `max-running-requests${xLog ? ' (log scale)' : ''}`,
        yLabel: 'latency (ms)',
        xLog,
        xTicks: xs,
        yMin: 0,
        series: [
          { name: 'TTFT p50', points: series('median_ttft_ms'), markers: true },
          { name: 'TTFT p99', points: series('p99_ttft_ms'), markers: true, dashed: true },
          { name: 'E2E p50', points: series('median_e2e_latency_ms'), markers: true },
          { name: 'E2E p99', points: series('p99_e2e_latency_ms'), markers: true, dashed: true },
        ],
      }),
      caption: 'TTFT and E2E latency (p50 solid, p99 dashed) per --max-running-requests value.',
    },
  };
  const svgFiles: string[] = [];
  const pngFiles: string[] = [];
  for (const [name, c] of Object.entries(svgs)) {
    const w = writeChart(c.svg, join(dir, name));
    svgFiles.push(w.svg);
    if (w.png !== undefined) pngFiles.push(w.png);
  }
  const pngUnavailable = pngRenderer().reason;
  const json = {
    generated_at: new Date().toISOString(),
    config: {
      max_running_requests: o.maxRunningRequests,
      sim: { profile: o.sim.profile, time_scale: o.sim.timeScale, disable_radix_cache: o.sim.disableRadixCache, seed: o.sim.seed },
      workload: { ...o.workload, request_rate: Number.isFinite(o.workload.requestRate) ? o.workload.requestRate : 'inf' },
    },
    definitions: METRIC_DEFINITIONS,
    results: points.map((p) => {
      const pick: Record<string, unknown> = {};
      for (const k of Object.keys(p.summary)) if (k !== 'definitions') pick[k] = p.summary[k];
      return { max_running_requests: p.maxRunningRequests, dir: p.dir, ...pick };
    }),
    plots: { svg: svgFiles, png: pngFiles, png_unavailable: pngUnavailable ?? null },
  };
  const jsonPath = join(dir, 'sweep.json');
  writeFileSync(jsonPath, JSON.stringify(json, null, 2) + '\n');
  const md = [
    '# Node-level sweep: max-running-requests',
    '',
    `- Workload: ${workloadLine}`,
    `- One simulated server (profile ${o.sim.profile}), fresh per value; times in ms, ${timeNote}`,
    '',
    markdownTable(headers, rows),
    '',
    ...Object.keys(svgs).map((name) => (pngFiles.length > 0 ? `![${name}](${name}.png)` : `![${name}](${name}.svg)`)),
    '',
  ].join('\n');
  const mdPath = join(dir, 'sweep.md');
  writeFileSync(mdPath, md);
  const htmlPath = join(dir, 'report.html');
  writeFileSync(
    htmlPath,
    htmlReport(
      'Switchyard node-level sweep: max-running-requests',
      [`Workload: ${workloadLine}`, `One simulated server (profile ${o.sim.profile}), fresh per value; ${timeNote}`, `Generated ${json.generated_at}`],
      [
        { heading: 'Results', html: htmlTable(headers, rows) },
        ...Object.values(svgs).map((c) => ({ heading: c.caption.replace(/\.$/, ''), html: htmlFigure(c.svg, c.caption) })),
        { heading: 'Definitions', html: htmlList(Object.values(METRIC_DEFINITIONS)) },
      ],
    ),
  );
  if (!o.quiet) process.stdout.write(`\n${textTable(headers, rows)}\n\n`);
  return { dir, points: [...points], files: { sweepJson: jsonPath, markdown: mdPath, html: htmlPath, svgs: svgFiles, pngs: pngFiles }, pngUnavailable };
}
