/**
 * A small SVG chart module for load-test reports: line charts (CDFs, sweeps) and grouped bar charts, with
 * axes, "nice" ticks, axis labels with units, a title and a legend. Output is plain SVG 1.1 text that
 * browsers inline and resvg rasterises (no CSS, no scripts, fonts named with fallbacks).
 */

export const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'] as const;
export const FONT = 'DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif';

export interface LineSeries {
  name: string;
  points: readonly (readonly [number, number])[];
  /** Draw as a step function (CDFs). */
  step?: boolean;
  /** Mark each point with a dot (sparse series, e.g. sweeps). */
  markers?: boolean;
  dashed?: boolean;
}

export interface LineChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: readonly LineSeries[];
  width?: number;
  height?: number;
  xLog?: boolean;
  xMin?: number;
  xMax?: number;
  yMin?: number;
  yMax?: number;
  /** Format of y tick labels (e.g. percentages). */
  yFormat?: (v: number) => string;
  xFormat?: (v: number) => string;
  /** Explicit x ticks (e.g. the swept values); the axis then spans them with a little padding. */
  xTicks?: readonly number[];
  /** Optional note under the title. */
  subtitle?: string;
}

export interface BarSeries {
  name: string;
  values: readonly number[];
}

export interface BarChartSpec {
  title: string;
  yLabel: string;
  xLabel?: string;
  categories: readonly string[];
  series: readonly BarSeries[];
  width?: number;
  height?: number;
  yMax?: number;
  yFormat?: (v: number) => string;
  /** Value labels above bars (defaults to yFormat). */
  valueFormat?: (v: number) => string;
  subtitle?: string;
  /** One series: colour each category as series k would be coloured in a line chart (policy colours match across charts). */
  colorByCategory?: boolean;
}

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** "Nice" tick values covering [min, max] with about `count` steps (1, 2, 2.5, 5 x 10^k). */
export function niceTicks(min: number, max: number, count = 6): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [0, 1];
  if (max === min) {
    const pad = min === 0 ? 1 : Math.abs(min) * 0.1;
    min -= pad;
    max += pad;
  }
  const raw = (max - min) / Math.max(1, count);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const norm = raw / mag;
  const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10) * mag;
  const start = Math.floor(min / step + 1e-9) * step;
  const end = Math.ceil(max / step - 1e-9) * step;
  const ticks: number[] = [];
  for (let v = start; v <= end + step * 1e-6; v += step) ticks.push(Math.abs(v) < step * 1e-9 ? 0 : Number(v.toPrecision(12)));
  return ticks;
}

/** Powers of ten covering [min, max] (log axes). */
export function logTicks(min: number, max: number): number[] {
  const lo = Math.floor(Math.log10(Math.max(min, 1e-12)));
  const hi = Math.ceil(Math.log10(Math.max(max, min * 10)));
  const out: number[] = [];
  // Few decades: 1-2-5 steps, so the axis has more than two or three labels.
  const steps = hi - lo <= 3 ? [1, 2, 5] : [1];
  for (let e = lo; e <= hi; e++) for (const m of steps) if (e < hi || m === 1) out.push(m * Math.pow(10, e));
  return out;
}

/** Compact number: 1234 -> "1,234", 0.5 -> "0.5", 12000000 -> "12M". */
export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return '-';
  const a = Math.abs(v);
  if (a >= 1e9) return trimZeros((v / 1e9).toFixed(1)) + 'G';
  if (a >= 1e6) return trimZeros((v / 1e6).toFixed(1)) + 'M';
  if (a >= 1000) return Math.round(v).toLocaleString('en-US');
  if (a >= 100) return trimZeros(v.toFixed(0));
  if (a >= 1) return trimZeros(v.toFixed(2));
  if (a === 0) return '0';
  return trimZeros(v.toPrecision(2));
}

function trimZeros(s: string): string {
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}

export const percentFormat = (v: number): string => `${trimZeros((v * 100).toFixed(1))}%`;

interface Frame {
  width: number;
  height: number;
  left: number;
  right: number;
  top: number;
  bottom: number;
}

function header(f: Frame, title: string, subtitle: string | undefined): string[] {
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${f.width}" height="${f.height}" viewBox="0 0 ${f.width} ${f.height}" font-family="${FONT}">`,
    `<rect x="0" y="0" width="${f.width}" height="${f.height}" fill="#ffffff"/>`,
    `<text x="${f.width / 2}" y="26" text-anchor="middle" font-size="18" font-weight="bold" fill="#222">${escapeXml(title)}</text>`,
  ];
  if (subtitle !== undefined) out.push(`<text x="${f.width / 2}" y="46" text-anchor="middle" font-size="12" fill="#555">${escapeXml(subtitle)}</text>`);
  return out;
}

function axisLabels(f: Frame, xLabel: string | undefined, yLabel: string): string[] {
  const out: string[] = [];
  if (xLabel !== undefined) out.push(`<text x="${f.left + (f.width - f.left - f.right) / 2}" y="${f.height - 14}" text-anchor="middle" font-size="14" fill="#222">${escapeXml(xLabel)}</text>`);
  const cy = f.top + (f.height - f.top - f.bottom) / 2;
  out.push(`<text x="18" y="${cy}" text-anchor="middle" font-size="14" fill="#222" transform="rotate(-90 18 ${cy})">${escapeXml(yLabel)}</text>`);
  return out;
}

type LegendItem = { name: string; color: string; kind: 'line' | 'box'; dashed?: boolean };

const LEGEND_ROW_H = 20;

/** Approximate text width at 12 px (DejaVu Sans averages ~7 px per character). */
function textWidth(s: string): number {
  return s.length * 7.2;
}

/** Rows of legend items that fit the plot width. */
function legendRows(items: readonly LegendItem[], width: number): LegendItem[][] {
  const rows: LegendItem[][] = [];
  let row: LegendItem[] = [];
  let w = 0;
  for (const it of items) {
    const iw = 34 + textWidth(it.name);
    if (row.length > 0 && w + iw > width) {
      rows.push(row);
      row = [];
      w = 0;
    }
    row.push(it);
    w += iw;
  }
  if (row.length > 0) rows.push(row);
  return rows;
}

/** Legend rows above the plot area (never over the data), centred. */
function legend(f: Frame, rows: readonly LegendItem[][]): string[] {
  const out: string[] = [];
  const pw = f.width - f.left - f.right;
  rows.forEach((row, r) => {
    const total = row.reduce((a, it) => a + 34 + textWidth(it.name), 0);
    let x = f.left + (pw - total) / 2;
    const cy = f.top - 10 - (rows.length - 1 - r) * LEGEND_ROW_H;
    for (const it of row) {
      if (it.kind === 'line') out.push(`<line x1="${x.toFixed(1)}" y1="${cy}" x2="${(x + 20).toFixed(1)}" y2="${cy}" stroke="${it.color}" stroke-width="3"${it.dashed ? ' stroke-dasharray="6 3"' : ''}/>`);
      else out.push(`<rect x="${(x + 3).toFixed(1)}" y="${cy - 6}" width="14" height="12" fill="${it.color}"/>`);
      out.push(`<text x="${(x + 26).toFixed(1)}" y="${cy + 4}" font-size="12" fill="#222">${escapeXml(it.name)}</text>`);
      x += 34 + textWidth(it.name);
    }
  });
  return out;
}

export function lineChart(spec: LineChartSpec): string {
  const width = spec.width ?? 880;
  const items: LegendItem[] = spec.series.map((s, k) => ({ name: s.name, color: PALETTE[k % PALETTE.length] as string, kind: 'line' as const, dashed: s.dashed === true }));
  const rows = legendRows(items, width - 84 - 24);
  const f: Frame = { width, height: spec.height ?? 520, left: 84, right: 24, top: (spec.subtitle === undefined ? 48 : 62) + rows.length * LEGEND_ROW_H + 4, bottom: 62 };
  const pw = f.width - f.left - f.right;
  const ph = f.height - f.top - f.bottom;
  const xs: number[] = [];
  const ys: number[] = [];
  for (const s of spec.series) for (const [x, y] of s.points) if (Number.isFinite(x) && Number.isFinite(y) && (!spec.xLog || x > 0)) {
    xs.push(x);
    ys.push(y);
  }
  let xMin = spec.xMin ?? (xs.length ? Math.min(...xs) : 0);
  let xMax = spec.xMax ?? (xs.length ? Math.max(...xs) : 1);
  let yMin = spec.yMin ?? Math.min(0, ...(ys.length ? ys : [0]));
  let yMax = spec.yMax ?? (ys.length ? Math.max(...ys) : 1);
  const explicit = spec.xTicks !== undefined && spec.xTicks.length > 0;
  const xTicks = explicit ? [...spec.xTicks!] : spec.xLog ? logTicks(Math.max(xMin, 1e-9), xMax) : niceTicks(xMin, xMax);
  const yTicks = niceTicks(yMin, yMax, 5);
  if (explicit) {
    const lo = Math.min(...xTicks);
    const hi = Math.max(...xTicks);
    if (spec.xLog) {
      const pad = Math.pow(hi / lo, 0.04) || 1.1;
      xMin = lo / pad;
      xMax = hi * pad;
    } else {
      const pad = (hi - lo) * 0.04 || 1;
      xMin = lo - pad;
      xMax = hi + pad;
    }
  } else if (spec.xLog) {
    xMin = xTicks[0] as number;
    xMax = xTicks[xTicks.length - 1] as number;
  } else {
    if (spec.xMin === undefined) xMin = xTicks[0] as number;
    if (spec.xMax === undefined) xMax = xTicks[xTicks.length - 1] as number;
  }
  if (spec.yMin === undefined) yMin = yTicks[0] as number;
  if (spec.yMax === undefined) yMax = yTicks[yTicks.length - 1] as number;
  const sx = (x: number): number => {
    if (spec.xLog) return f.left + ((Math.log10(x) - Math.log10(xMin)) / (Math.log10(xMax) - Math.log10(xMin) || 1)) * pw;
    return f.left + ((x - xMin) / (xMax - xMin || 1)) * pw;
  };
  const sy = (y: number): number => f.top + ph - ((y - yMin) / (yMax - yMin || 1)) * ph;
  const xf = spec.xFormat ?? formatNumber;
  const yf = spec.yFormat ?? formatNumber;
  const out = header(f, spec.title, spec.subtitle);
  // grid and ticks
  for (const t of yTicks) {
    if (t < yMin - 1e-12 || t > yMax + 1e-12) continue;
    const y = sy(t).toFixed(1);
    out.push(`<line x1="${f.left}" y1="${y}" x2="${f.left + pw}" y2="${y}" stroke="#e3e3e3"/>`);
    out.push(`<text x="${f.left - 8}" y="${Number(y) + 4}" text-anchor="end" font-size="12" fill="#333">${escapeXml(yf(t))}</text>`);
  }
  for (const t of xTicks) {
    if (t < xMin - 1e-12 || t > xMax + 1e-12) continue;
    const x = sx(t).toFixed(1);
    out.push(`<line x1="${x}" y1="${f.top}" x2="${x}" y2="${f.top + ph}" stroke="#eeeeee"/>`);
    out.push(`<text x="${x}" y="${f.top + ph + 18}" text-anchor="middle" font-size="12" fill="#333">${escapeXml(xf(t))}</text>`);
  }
  out.push(`<rect x="${f.left}" y="${f.top}" width="${pw}" height="${ph}" fill="none" stroke="#444"/>`);
  // series
  spec.series.forEach((s, k) => {
    const color = PALETTE[k % PALETTE.length] as string;
    const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!spec.xLog || x > 0));
    if (pts.length === 0) return;
    const coords: string[] = [];
    let prevY: number | undefined;
    for (const [x, y] of pts) {
      const X = sx(Math.min(Math.max(x, xMin), xMax));
      const Y = sy(Math.min(Math.max(y, yMin), yMax));
      if (s.step === true && prevY !== undefined) coords.push(`${X.toFixed(1)},${prevY.toFixed(1)}`);
      coords.push(`${X.toFixed(1)},${Y.toFixed(1)}`);
      prevY = Y;
    }
    out.push(`<polyline points="${coords.join(' ')}" fill="none" stroke="${color}" stroke-width="2.2" stroke-linejoin="round"${s.dashed ? ' stroke-dasharray="7 4"' : ''}/>`);
    if (s.markers === true) for (const [x, y] of pts) out.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="4" fill="${color}"/>`);
  });
  out.push(...axisLabels(f, spec.xLabel, spec.yLabel));
  out.push(...legend(f, rows));
  out.push('</svg>');
  return out.join('\n');
}

export function barChart(spec: BarChartSpec): string {
  const width = spec.width ?? 880;
  const showLegend = spec.colorByCategory !== true && (spec.series.length > 1 || (spec.series[0] !== undefined && spec.series[0].name !== ''));
  const rows = showLegend ? legendRows(spec.series.map((s, k) => ({ name: s.name, color: PALETTE[k % PALETTE.length] as string, kind: 'box' as const })), width - 84 - 24) : [];
  const f: Frame = { width, height: spec.height ?? 520, left: 84, right: 24, top: (spec.subtitle === undefined ? 48 : 62) + rows.length * LEGEND_ROW_H + 4, bottom: spec.xLabel === undefined ? 48 : 62 };
  const pw = f.width - f.left - f.right;
  const ph = f.height - f.top - f.bottom;
  const all = spec.series.flatMap((s) => s.values.filter((v) => Number.isFinite(v)));
  const rawMax = spec.yMax ?? Math.max(0, ...all);
  // Headroom for the legend and value labels.
  const yTicks = niceTicks(0, rawMax * (spec.yMax === undefined ? 1.08 : 1), 5);
  const yMax = spec.yMax ?? (yTicks[yTicks.length - 1] as number);
  const sy = (y: number): number => f.top + ph - (Math.max(0, y) / (yMax || 1)) * ph;
  const yf = spec.yFormat ?? formatNumber;
  const vf = spec.valueFormat ?? yf;
  const out = header(f, spec.title, spec.subtitle);
  for (const t of yTicks) {
    if (t > yMax + 1e-12) continue;
    const y = sy(t).toFixed(1);
    out.push(`<line x1="${f.left}" y1="${y}" x2="${f.left + pw}" y2="${y}" stroke="#e3e3e3"/>`);
    out.push(`<text x="${f.left - 8}" y="${Number(y) + 4}" text-anchor="end" font-size="12" fill="#333">${escapeXml(yf(t))}</text>`);
  }
  const nc = Math.max(1, spec.categories.length);
  const ns = Math.max(1, spec.series.length);
  const groupW = pw / nc;
  const barW = Math.min(60, (groupW * 0.8) / ns);
  const showValues = nc * ns <= 40;
  spec.categories.forEach((cat, c) => {
    const gx = f.left + c * groupW + (groupW - barW * ns) / 2;
    spec.series.forEach((s, k) => {
      const v = s.values[c];
      if (v === undefined || !Number.isFinite(v)) return;
      const x = gx + k * barW;
      const y = sy(v);
      const h = f.top + ph - y;
      const color = spec.colorByCategory === true ? PALETTE[c % PALETTE.length] : PALETTE[k % PALETTE.length];
      out.push(`<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${Math.max(0, h).toFixed(1)}" fill="${color}"/>`);
      if (showValues) out.push(`<text x="${(x + (barW - 2) / 2).toFixed(1)}" y="${(y - 4).toFixed(1)}" text-anchor="middle" font-size="${barW < 30 ? 9 : 11}" fill="#222">${escapeXml(vf(v))}</text>`);
    });
    out.push(`<text x="${(f.left + c * groupW + groupW / 2).toFixed(1)}" y="${f.top + ph + 18}" text-anchor="middle" font-size="12" fill="#333">${escapeXml(cat)}</text>`);
  });
  out.push(`<rect x="${f.left}" y="${f.top}" width="${pw}" height="${ph}" fill="none" stroke="#444"/>`);
  out.push(...axisLabels(f, spec.xLabel, spec.yLabel));
  out.push(...legend(f, rows));
  out.push('</svg>');
  return out.join('\n');
}

/** At most `max` points of an ascending sample as an empirical CDF: (value, fraction <= value). */
export function cdfPoints(sorted: ArrayLike<number>, max = 400): [number, number][] {
  const n = sorted.length;
  if (n === 0) return [];
  const out: [number, number][] = [];
  const step = Math.max(1, Math.floor(n / max));
  for (let i = 0; i < n; i += step) out.push([sorted[i] as number, (i + 1) / n]);
  if (out[out.length - 1]![1] !== 1) out.push([sorted[n - 1] as number, 1]);
  return out;
}
