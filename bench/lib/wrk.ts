/**
 * wrk: parse its text report and run it.
 *
 * wrk prints every number through its own unit formatters (src/units.c): times as us/ms/s/m/h, counts
 * with SI suffixes k/M/G/T/P (base 1000), bytes as B/KB/MB/GB/TB/PB (base 1024), and "nan"/"-nan"
 * when a run completed no request. The parser accepts all of them and never guesses: a report without
 * a "Requests/sec" line is an error, not a zero.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runToEnd } from './processes.js';

export interface WrkLatency {
  /** Milliseconds. */
  readonly avgMs: number;
  readonly stdevMs: number;
  readonly maxMs: number;
  /** Percentiles from --latency (NaN when wrk printed no distribution). */
  readonly p50Ms: number;
  readonly p75Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
}

export interface WrkErrors {
  readonly connect: number;
  readonly read: number;
  readonly write: number;
  readonly timeout: number;
  /** Responses with a status outside 2xx/3xx. */
  readonly non2xx3xx: number;
}

export interface WrkResult {
  readonly threads: number;
  readonly connections: number;
  readonly requests: number;
  readonly durationSec: number;
  readonly bytesRead: number;
  readonly requestsPerSec: number;
  readonly transferBytesPerSec: number;
  readonly latency: WrkLatency;
  readonly errors: WrkErrors;
}

export class WrkParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WrkParseError';
  }
}

const NUMBER = String.raw`([-+]?(?:nan|inf|\d+(?:\.\d+)?(?:e[-+]?\d+)?))`;

function parseNumber(raw: string): number {
  const s = raw.toLowerCase();
  if (s.endsWith('nan')) return Number.NaN;
  if (s === 'inf' || s === '+inf') return Number.POSITIVE_INFINITY;
  if (s === '-inf') return Number.NEGATIVE_INFINITY;
  const n = Number(s);
  if (!Number.isFinite(n)) throw new WrkParseError(`not a number: '${raw}'`);
  return n;
}

const TIME_TO_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "512.33us" | "3.21ms" | "1.05s" | "2.00m" | "1.00h" -> milliseconds. A bare number is seconds (wrk -d style). */
export function parseDurationMs(text: string): number {
  const m = new RegExp(`^${NUMBER}(us|ms|s|m|h)?$`, 'i').exec(text.trim());
  if (m === null) throw new WrkParseError(`not a wrk time: '${text}'`);
  const unit = (m[2] ?? 's').toLowerCase();
  return parseNumber(m[1] as string) * (TIME_TO_MS[unit] as number);
}

const METRIC: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9, t: 1e12, p: 1e15 };

/** "20.01k" | "1.2M" | "981" -> plain count (SI, base 1000, as wrk's format_metric). */
export function parseMetric(text: string): number {
  const m = new RegExp(`^${NUMBER}([kMGTP])?$`, 'i').exec(text.trim());
  if (m === null) throw new WrkParseError(`not a wrk count: '${text}'`);
  return parseNumber(m[1] as string) * (METRIC[(m[2] ?? '').toLowerCase()] as number);
}

const BINARY: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };

/** "30.12MB" | "512.00B" | "3.01KB" -> bytes (base 1024, as wrk's format_binary). */
export function parseBytes(text: string): number {
  const m = new RegExp(`^${NUMBER}([KMGTP])?B$`, 'i').exec(text.trim());
  if (m === null) throw new WrkParseError(`not a wrk byte size: '${text}'`);
  return parseNumber(m[1] as string) * (BINARY[(m[2] ?? '').toLowerCase()] as number);
}

const TOKEN = String.raw`(\S+)`;
const RE_THREADS = /(\d+)\s+threads?\s+and\s+(\d+)\s+connections?/i;
const RE_LATENCY = new RegExp(String.raw`^\s*Latency\s+${TOKEN}\s+${TOKEN}\s+${TOKEN}`, 'im');
const RE_PERCENTILE = /^\s*(\d+(?:\.\d+)?)%\s+(\S+)\s*$/gm;
const RE_TOTALS = new RegExp(String.raw`^\s*(\d+)\s+requests\s+in\s+${TOKEN},\s+${TOKEN}\s+read`, 'im');
const RE_SOCKET_ERRORS = /Socket errors:\s*connect\s+(\d+),\s*read\s+(\d+),\s*write\s+(\d+),\s*timeout\s+(\d+)/i;
const RE_NON2XX = /Non-2xx or 3xx responses:\s*(\d+)/i;
const RE_RPS = new RegExp(String.raw`^\s*Requests/sec:\s+${TOKEN}`, 'im');
const RE_TRANSFER = new RegExp(String.raw`^\s*Transfer/sec:\s+${TOKEN}`, 'im');

/** Parse wrk's report (stdout). Throws WrkParseError when the essential lines are missing. */
export function parseWrkOutput(text: string): WrkResult {
  const rps = RE_RPS.exec(text);
  if (rps === null) throw new WrkParseError(`no 'Requests/sec' line in wrk output: ${excerpt(text)}`);
  const totals = RE_TOTALS.exec(text);
  if (totals === null) throw new WrkParseError(`no 'N requests in T, B read' line in wrk output: ${excerpt(text)}`);

  const threads = RE_THREADS.exec(text);
  const latency = RE_LATENCY.exec(text);
  const percentiles = new Map<number, number>();
  // Percentile lines only appear under "Latency Distribution"; scan from there so nothing else matches.
  const distAt = text.search(/Latency Distribution/i);
  if (distAt >= 0) {
    const section = text.slice(distAt);
    RE_PERCENTILE.lastIndex = 0;
    for (let m = RE_PERCENTILE.exec(section); m !== null; m = RE_PERCENTILE.exec(section)) {
      percentiles.set(Number(m[1]), parseDurationMs(m[2] as string));
    }
  }
  const socket = RE_SOCKET_ERRORS.exec(text);
  const non2xx = RE_NON2XX.exec(text);
  const transfer = RE_TRANSFER.exec(text);

  return {
    threads: threads === null ? Number.NaN : Number(threads[1]),
    connections: threads === null ? Number.NaN : Number(threads[2]),
    requests: Number(totals[1]),
    durationSec: parseDurationMs(totals[2] as string) / 1000,
    bytesRead: parseBytes(totals[3] as string),
    requestsPerSec: parseNumber(rps[1] as string),
    transferBytesPerSec: transfer === null ? Number.NaN : parseBytes(transfer[1] as string),
    latency: {
      avgMs: latency === null ? Number.NaN : parseDurationMs(latency[1] as string),
      stdevMs: latency === null ? Number.NaN : parseDurationMs(latency[2] as string),
      maxMs: latency === null ? Number.NaN : parseDurationMs(latency[3] as string),
      p50Ms: percentiles.get(50) ?? Number.NaN,
      p75Ms: percentiles.get(75) ?? Number.NaN,
      p90Ms: percentiles.get(90) ?? Number.NaN,
      p99Ms: percentiles.get(99) ?? Number.NaN,
    },
    errors: {
      connect: socket === null ? 0 : Number(socket[1]),
      read: socket === null ? 0 : Number(socket[2]),
      write: socket === null ? 0 : Number(socket[3]),
      timeout: socket === null ? 0 : Number(socket[4]),
      non2xx3xx: non2xx === null ? 0 : Number(non2xx[1]),
    },
  };
}

/** Failed requests as wrk counts them (socket errors plus non-2xx/3xx responses). */
export function errorCount(r: WrkResult): number {
  const e = r.errors;
  return e.connect + e.read + e.write + e.timeout + e.non2xx3xx;
}

function excerpt(text: string): string {
  const t = text.trim();
  return t === '' ? '(empty)' : JSON.stringify(t.length > 400 ? `${t.slice(0, 400)}...` : t);
}

/** A Lua script that makes every wrk request a POST of `body` with the given headers (wrk's fast path: no callbacks). */
export function postScript(body: string, headers: Record<string, string> = { 'Content-Type': 'application/json' }): string {
  const lines = ['-- generated by bench/lib/wrk.ts', 'wrk.method = "POST"', `wrk.body = ${luaString(body)}`];
  for (const [k, v] of Object.entries(headers)) lines.push(`wrk.headers[${luaString(k)}] = ${luaString(v)}`);
  return lines.join('\n') + '\n';
}

/**
 * A double-quoted Lua string literal (Lua 5.1 / LuaJIT, as wrk embeds): backslash, quote and every
 * control character escaped as \ddd, so any JSON body survives byte for byte.
 */
export function luaString(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x5c) out += '\\\\';
    else if (c === 0x22) out += '\\"';
    else if (c < 0x20 || c === 0x7f) out += `\\${String(c).padStart(3, '0')}`;
    else out += s[i];
  }
  return out + '"';
}

export function writePostScript(dir: string, name: string, body: string): string {
  const path = join(dir, `${name}.lua`);
  writeFileSync(path, postScript(body));
  return path;
}

export interface WrkOptions {
  readonly url: string;
  readonly threads: number;
  readonly connections: number;
  readonly durationSec: number;
  readonly scriptPath?: string;
  /** Request timeout in seconds (wrk counts slower responses as timeouts). */
  readonly timeoutSec?: number;
  readonly latency?: boolean;
  readonly wrkPath?: string;
}

export function wrkArgs(o: WrkOptions): string[] {
  const args = ['-t', String(o.threads), '-c', String(o.connections), '-d', `${Math.max(1, Math.round(o.durationSec))}s`];
  args.push('--timeout', `${o.timeoutSec ?? 10}s`);
  if (o.latency !== false) args.push('--latency');
  if (o.scriptPath !== undefined) args.push('-s', o.scriptPath);
  args.push(o.url);
  return args;
}

/** Run wrk to completion and parse its report; rejects with wrk's stderr when it fails. */
export async function runWrk(o: WrkOptions): Promise<WrkResult & { raw: string }> {
  const { exit, stdout, stderr } = await runToEnd('wrk', o.wrkPath ?? 'wrk', wrkArgs(o));
  if (exit.code !== 0) throw new Error(`wrk exited with ${exit.code ?? exit.signal}: ${(stderr || stdout).trim().slice(0, 500)}`);
  // wrk reports a broken Lua script on stderr and then runs anyway, with plain GETs: never measure that.
  if (stderr.trim() !== '') throw new Error(`wrk complained: ${stderr.trim().slice(0, 500)}`);
  return { ...parseWrkOutput(stdout), raw: stdout };
}
