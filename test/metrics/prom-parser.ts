/**
 * A strict parser of the Prometheus text exposition format 0.0.4, for tests. It throws (with the line
 * number) on anything a lenient scraper might let through: bad names or escapes, a TYPE after samples,
 * a family split in two, duplicate series, samples without a declared family, and histograms whose
 * buckets are not sorted, not monotonic, lack +Inf, or disagree with _count, or lack _sum.
 */

export type FamilyType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Family {
  readonly name: string;
  type: FamilyType;
  help: string | undefined;
  readonly samples: Sample[];
}

export class PromParseError extends Error {
  constructor(
    message: string,
    readonly line: number,
  ) {
    super(`line ${line}: ${message}`);
    this.name = 'PromParseError';
  }
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
const FLOAT = /^[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|Inf|NaN)$/;

export function parseValue(raw: string, line: number): number {
  if (!FLOAT.test(raw)) throw new PromParseError(`bad value '${raw}'`, line);
  if (raw === 'NaN' || raw === '+NaN' || raw === '-NaN') return Number.NaN;
  if (raw === '+Inf' || raw === 'Inf') return Infinity;
  if (raw === '-Inf') return -Infinity;
  return Number(raw);
}

/** The family a sample name belongs to, given the declared types (histogram/summary suffixes). */
function familyOf(name: string, families: Map<string, Family>): string {
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!name.endsWith(suffix)) continue;
    const base = name.slice(0, -suffix.length);
    const f = families.get(base);
    if (f !== undefined && (f.type === 'histogram' || (f.type === 'summary' && suffix !== '_bucket'))) return base;
  }
  return name;
}

function parseLabels(text: string, line: number): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < text.length) {
    const eq = text.indexOf('=', i);
    if (eq < 0) throw new PromParseError(`label without '=' in {${text}}`, line);
    const name = text.slice(i, eq).trim();
    if (!LABEL.test(name)) throw new PromParseError(`bad label name '${name}'`, line);
    if (name in out) throw new PromParseError(`duplicate label '${name}'`, line);
    if (text[eq + 1] !== '"') throw new PromParseError(`label value of '${name}' is not quoted`, line);
    let j = eq + 2;
    let value = '';
    for (;;) {
      if (j >= text.length) throw new PromParseError(`unterminated label value of '${name}'`, line);
      const c = text[j] as string;
      if (c === '\\') {
        const n = text[j + 1];
        if (n === '\\') value += '\\';
        else if (n === '"') value += '"';
        else if (n === 'n') value += '\n';
        else throw new PromParseError(`bad escape '\\${n ?? ''}' in label '${name}'`, line);
        j += 2;
        continue;
      }
      if (c === '"') break;
      if (c === '\n') throw new PromParseError('raw line feed in a label value', line);
      value += c;
      j++;
    }
    out[name] = value;
    j++;
    if (j < text.length) {
      if (text[j] !== ',') throw new PromParseError(`expected ',' after label '${name}'`, line);
      j++;
    }
    i = j;
  }
  return out;
}

function unescapeHelp(raw: string, line: number): string {
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i] as string;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const n = raw[i + 1];
    if (n === '\\') out += '\\';
    else if (n === 'n') out += '\n';
    else throw new PromParseError(`bad escape '\\${n ?? ''}' in HELP`, line);
    i++;
  }
  return out;
}

export function seriesKey(name: string, labels: Readonly<Record<string, string>>, omit?: string): string {
  const keys = Object.keys(labels)
    .filter((k) => k !== omit)
    .sort();
  return `${name}{${keys.map((k) => `${k}=${JSON.stringify(labels[k])}`).join(',')}}`;
}

export function parsePrometheusText(text: string): Map<string, Family> {
  if (text.length > 0 && !text.endsWith('\n')) throw new PromParseError('exposition must end with a line feed', text.split('\n').length);
  const families = new Map<string, Family>();
  const closed = new Set<string>();
  const seen = new Set<string>();
  let current: string | undefined;
  const lines = text.split('\n');
  lines.pop();
  const enter = (name: string, line: number): Family => {
    if (current !== name) {
      if (closed.has(name)) throw new PromParseError(`family ${name} appears again after other families`, line);
      if (current !== undefined) closed.add(current);
      current = name;
    }
    let f = families.get(name);
    if (f === undefined) {
      f = { name, type: 'untyped', help: undefined, samples: [] };
      families.set(name, f);
    }
    return f;
  };
  lines.forEach((raw, idx) => {
    const line = idx + 1;
    if (raw.trim() === '') return;
    if (raw.startsWith('#')) {
      const m = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s(.*))?$/.exec(raw);
      if (m === null) return; // a comment
      const [, kind, name, rest] = m as unknown as [string, string, string, string | undefined];
      if (!NAME.test(name)) throw new PromParseError(`bad metric name '${name}'`, line);
      const f = enter(name, line);
      if (kind === 'HELP') {
        if (f.help !== undefined) throw new PromParseError(`second HELP for ${name}`, line);
        f.help = unescapeHelp(rest ?? '', line);
      } else {
        const type = (rest ?? '').trim();
        if (!TYPES.has(type)) throw new PromParseError(`bad TYPE '${type}' for ${name}`, line);
        if (f.samples.length > 0) throw new PromParseError(`TYPE for ${name} after its samples`, line);
        if (f.type !== 'untyped') throw new PromParseError(`second TYPE for ${name}`, line);
        f.type = type as FamilyType;
      }
      return;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+(-?\d+))?$/.exec(raw);
    if (m === null) throw new PromParseError(`not a sample: '${raw}'`, line);
    const [, name, labelText, valueText] = m as unknown as [string, string, string | undefined, string];
    const labels = labelText === undefined ? {} : parseLabels(labelText, line);
    const value = parseValue(valueText, line);
    const fam = familyOf(name, families);
    if (!families.has(fam)) throw new PromParseError(`sample ${name} has no HELP/TYPE`, line);
    const f = enter(fam, line);
    if (f.type === 'histogram' && name === fam) throw new PromParseError(`histogram ${fam} has a bare sample`, line);
    if (f.type === 'histogram' && name.endsWith('_bucket') && labels['le'] === undefined) throw new PromParseError(`bucket of ${fam} without le`, line);
    if ((f.type === 'counter' || f.type === 'gauge') && name !== fam) throw new PromParseError(`sample ${name} in ${f.type} family ${fam}`, line);
    if (f.type === 'counter' && !(value >= 0)) throw new PromParseError(`counter ${name} is ${value}`, line);
    const key = seriesKey(name, labels);
    if (seen.has(key)) throw new PromParseError(`duplicate series ${key}`, line);
    seen.add(key);
    f.samples.push({ name, labels, value });
  });
  for (const f of families.values()) if (f.type === 'histogram') checkHistogram(f);
  return families;
}

export function checkHistogram(f: Family): void {
  const series = new Map<string, { buckets: [number, number][]; sum?: number; count?: number }>();
  const get = (s: Sample): { buckets: [number, number][]; sum?: number; count?: number } => {
    const k = seriesKey(f.name, s.labels, 'le');
    let v = series.get(k);
    if (v === undefined) {
      v = { buckets: [] };
      series.set(k, v);
    }
    return v;
  };
  for (const s of f.samples) {
    const v = get(s);
    if (s.name.endsWith('_bucket')) v.buckets.push([parseValue(s.labels['le'] as string, 0), s.value]);
    else if (s.name.endsWith('_sum')) v.sum = s.value;
    else v.count = s.value;
  }
  for (const [k, v] of series) {
    if (v.sum === undefined) throw new PromParseError(`${k}: no _sum`, 0);
    if (v.count === undefined) throw new PromParseError(`${k}: no _count`, 0);
    if (v.buckets.length === 0) throw new PromParseError(`${k}: no buckets`, 0);
    for (let i = 1; i < v.buckets.length; i++) {
      const [le0, c0] = v.buckets[i - 1] as [number, number];
      const [le1, c1] = v.buckets[i] as [number, number];
      if (!(le1 > le0)) throw new PromParseError(`${k}: bucket le=${le1} after le=${le0}`, 0);
      if (c1 < c0) throw new PromParseError(`${k}: bucket le=${le1} count ${c1} < ${c0}`, 0);
    }
    const last = v.buckets[v.buckets.length - 1] as [number, number];
    if (last[0] !== Infinity) throw new PromParseError(`${k}: no +Inf bucket`, 0);
    if (last[1] !== v.count) throw new PromParseError(`${k}: +Inf bucket ${last[1]} != _count ${v.count}`, 0);
    if (v.count === 0 && v.sum !== 0) throw new PromParseError(`${k}: _sum ${v.sum} with _count 0`, 0);
    if (v.sum < 0) throw new PromParseError(`${k}: negative _sum`, 0);
  }
}

/** The value of one series (labels must match exactly), or undefined. */
export function valueOf(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number | undefined {
  const fam = families.get(familyOf(name, families));
  const want = seriesKey(name, labels);
  return fam?.samples.find((s) => seriesKey(s.name, s.labels) === want)?.value;
}
