/**
 * A small writer for the Prometheus text exposition format 0.0.4: families (HELP, TYPE), samples with
 * escaped labels, and histograms from fixed buckets. Dependency-free and allocation-light: a scrape
 * builds one string (V8 concatenation ropes), nothing is kept between scrapes.
 *
 * Why not prom-client: the hot-path counters are plain numbers the router already keeps, so all we need
 * is rendering; bench/scenarios/stats-prometheus.ts measures this writer against prom-client on the same
 * metric set (docs/observability.md has the figures).
 */

export const PROM_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export type PromType = 'counter' | 'gauge' | 'histogram';

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export function isValidMetricName(name: string): boolean {
  return NAME_RE.test(name);
}

export function isValidLabelName(name: string): boolean {
  return LABEL_RE.test(name) && !name.startsWith('__');
}

/** Label values escape backslash, double quote and line feed. */
export function escapeLabelValue(v: string): string {
  if (!/[\\"\n]/.test(v)) return v;
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** HELP text escapes backslash and line feed. */
export function escapeHelp(v: string): string {
  if (!/[\\\n]/.test(v)) return v;
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

export function formatValue(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return String(n);
}

/** `k="v"` pairs joined by commas (no braces); values escaped. */
export function labels(...pairs: [string, string][]): string {
  let out = '';
  for (let i = 0; i < pairs.length; i++) {
    const [k, v] = pairs[i] as [string, string];
    if (i > 0) out += ',';
    out += `${k}="${escapeLabelValue(v)}"`;
  }
  return out;
}

export class PromWriter {
  private s = '';

  /** Start a family: HELP and TYPE lines. Every sample written after it must belong to it. */
  family(name: string, type: PromType, help: string): this {
    this.s += `# HELP ${name} ${escapeHelp(help)}\n# TYPE ${name} ${type}\n`;
    return this;
  }

  /** One sample; `labelText` is the output of labels() or '' for none. */
  sample(name: string, labelText: string, value: number): this {
    this.s += labelText === '' ? `${name} ${formatValue(value)}\n` : `${name}{${labelText}} ${formatValue(value)}\n`;
    return this;
  }

  /**
   * One histogram series. `counts[i]` is the number of observations in bucket i alone (le = bounds[i]),
   * `counts[bounds.length]` those above the last bound; written cumulatively with a final +Inf bucket.
   * `scale` converts bounds and sum to the exposed unit (e.g. 1e-6 for microseconds -> seconds).
   */
  histogram(name: string, labelText: string, bounds: ArrayLike<number>, counts: ArrayLike<number>, sum: number, scale = 1): this {
    const prefix = labelText === '' ? '' : `${labelText},`;
    let acc = 0;
    for (let i = 0; i < bounds.length; i++) {
      acc += counts[i] as number;
      this.s += `${name}_bucket{${prefix}le="${formatValue(roundBound((bounds[i] as number) * scale))}"} ${acc}\n`;
    }
    acc += counts[bounds.length] as number;
    this.s += `${name}_bucket{${prefix}le="+Inf"} ${acc}\n`;
    this.s += labelText === '' ? `${name}_sum ${formatValue(sum * scale)}\n${name}_count ${acc}\n` : `${name}_sum{${labelText}} ${formatValue(sum * scale)}\n${name}_count{${labelText}} ${acc}\n`;
    return this;
  }

  /** Append text rendered elsewhere (e.g. by the stats actor). */
  raw(text: string): this {
    this.s += text;
    return this;
  }

  text(): string {
    return this.s;
  }
}

/** 0.005 * 1 stays 0.005, but 5000 * 1e-6 is 0.005000000000000001: round bounds to 12 significant digits. */
function roundBound(v: number): number {
  return Number(v.toPrecision(12));
}
