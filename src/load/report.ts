/** Console output of a load run: bench_serving's result block, a per-GPU table, and a TTY progress bar. */
import type { LoadSummary } from './summary.js';

function num(v: unknown, digits = 2): string {
  if (typeof v !== 'number' || Number.isNaN(v)) return '-';
  return v.toFixed(digits);
}

function pct(v: unknown): string {
  if (typeof v !== 'number' || Number.isNaN(v)) return '-';
  return (v * 100).toFixed(1) + '%';
}

/** A plain text table with right-aligned numeric columns. */
export function textTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? '').length)));
  const line = (cells: readonly string[]): string => cells.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** A GitHub-flavoured markdown table. */
export function markdownTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  return [
    `| ${headers.map(esc).join(' | ')} |`,
    `| ${headers.map((_, c) => (c === 0 ? '---' : '---:')).join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

export function formatSummary(s: LoadSummary): string {
  const g = (k: string): unknown => s[k];
  const kv = (label: string, value: string): string => `${label.padEnd(40)}${value.padStart(14)}`;
  const lines = [
    '============ Serving Benchmark Result ============',
    kv('Backend / API:', `${String(g('backend'))}`),
    kv('Target:', `${String(g('target'))}`),
    kv('Traffic request rate:', String(g('request_rate'))),
    kv('Max request concurrency:', g('max_concurrency') === null ? 'not set' : String(g('max_concurrency'))),
    kv('Successful requests:', String(s.completed)),
    kv('Failed requests:', String(s.failed)),
    kv('Benchmark duration (s):', num(s.duration)),
    kv('Total input tokens:', String(g('total_input_tokens'))),
    kv('Total generated tokens:', String(g('total_output_tokens'))),
    kv('Request throughput (req/s):', num(s.request_throughput)),
    kv('Input token throughput (tok/s):', num(g('input_throughput'))),
    kv('Output token throughput (tok/s):', num(s.output_throughput)),
    kv('Concurrency:', num(g('concurrency'))),
    kv('Cache hit rate:', pct(s.cache_hit_rate)),
  ];
  if (g('goodput') !== undefined) lines.push(kv('Goodput (req/s):', num(g('goodput'))));
  const block = (title: string, key: string, extra: string[] = []): void => {
    lines.push(`${'-'.repeat(15)}${title}${'-'.repeat(Math.max(0, 35 - title.length))}`);
    lines.push(kv(`Mean ${key.toUpperCase()} (ms):`, num(g(`mean_${key}_ms`))));
    lines.push(kv(`Median ${key.toUpperCase()} (ms):`, num(g(`median_${key}_ms`))));
    for (const p of extra) lines.push(kv(`${p.toUpperCase()} ${key.toUpperCase()} (ms):`, num(g(`${p}_${key}_ms`))));
    lines.push(kv(`P99 ${key.toUpperCase()} (ms):`, num(g(`p99_${key}_ms`))));
  };
  block('End-to-End Latency', 'e2e_latency');
  block('Time to First Token', 'ttft');
  block('Time per Output Token (excl. 1st token)', 'tpot');
  block('Inter-Token Latency', 'itl', ['p95']);
  block('Total Latency (incl. queueing)', 'total_latency');
  block('Client-side Queueing', 'queue');
  const lag = g('send_lag') as { p50_ms: number; p99_ms: number; max_ms: number } | undefined;
  if (lag !== undefined) lines.push(kv('Generator send lag p50/p99/max (ms):', `${num(lag.p50_ms, 3)}/${num(lag.p99_ms, 3)}/${num(lag.max_ms, 3)}`));
  lines.push('==================================================');
  if (s.gpu_metrics.length > 0) {
    lines.push('');
    lines.push('Per GPU (gpu_id from X-SGLang-Worker; see gpu_id_sources in summary.json)');
    lines.push(
      textTable(
        ['GPU', 'requests', 'share', 'failed', 'req/s', 'out tok/s', 'cache hit', 'TTFT p50', 'TTFT p99', 'E2E p50', 'E2E p99'],
        s.gpu_metrics.map((m) => [
          String(m.gpu_id),
          String(m.requests),
          pct(m.share),
          String(m.failed),
          num(m.request_throughput),
          num(m.output_throughput, 1),
          pct(m.cache_hit_rate),
          num(m.median_ttft_ms),
          num(m.p99_ttft_ms),
          num(m.median_e2e_latency_ms),
          num(m.p99_e2e_latency_ms),
        ]),
      ),
    );
  }
  return lines.join('\n');
}

/** A one-line progress bar on a TTY stream, redrawn a few times a second; silent elsewhere. */
export class ProgressBar {
  private timer: NodeJS.Timeout | undefined;
  private readonly started = Date.now();

  constructor(
    private readonly stream: NodeJS.WriteStream,
    private readonly total: number,
    private readonly state: () => { done: number; failed: number; inFlight: number },
    private readonly label = 'load',
  ) {}

  start(): void {
    this.timer = setInterval(() => this.draw(), 250);
    this.timer.unref();
  }

  private draw(): void {
    const { done, failed, inFlight } = this.state();
    const width = 30;
    const frac = this.total > 0 ? done / this.total : 1;
    const filled = Math.round(frac * width);
    const elapsed = (Date.now() - this.started) / 1000;
    const rate = elapsed > 0 ? done / elapsed : 0;
    const line = `${this.label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${this.total} failed ${failed} in flight ${inFlight}  ${rate.toFixed(1)} req/s  ${elapsed.toFixed(1)}s`;
    this.stream.write(`\r${line}\x1b[K`);
  }

  stop(): void {
    if (this.timer === undefined) return;
    clearInterval(this.timer);
    this.timer = undefined;
    this.draw();
    this.stream.write('\n');
  }
}
