/**
 * What workers report about themselves (polled from /get_load by src/workers/monitor.ts into the worker
 * table), with an age bound: a report older than `maxAgeSecs` no longer describes the worker and is
 * treated as absent, so a worker whose polling stopped is judged by the router's own counters alone.
 */
import { Field, type WorkerTable } from '../actors/worker-table.js';
import { SwitchyardError } from '../errors.js';

/** Default bound on a report's age (the monitor polls every second by default). */
export const DEFAULT_REPORT_MAX_AGE_SECS = 10;

/** Seconds on the clock the monitor stamps reports with (Field.ReportedAtSec). */
export function reportClockSec(): number {
  return Math.floor(Date.now() / 1000);
}

/** True when the slot holds a report no older than maxAgeSecs. */
export function hasFreshReport(table: WorkerTable, slot: number, nowSec: number, maxAgeSecs: number): boolean {
  const at = table.peek(slot, Field.ReportedAtSec);
  return at > 0 && nowSec - at <= maxAgeSecs;
}

export function reportMaxAge(options: { readonly [key: string]: unknown }, policy: string): number {
  const v = options['loadReportMaxAgeSecs'];
  if (v === undefined || v === null) return DEFAULT_REPORT_MAX_AGE_SECS;
  if (typeof v !== 'number' || !(v >= 0) || !Number.isFinite(v)) {
    throw new SwitchyardError('invalid_request', `${policy}: loadReportMaxAgeSecs must be a non-negative number, got ${String(v)}`);
  }
  return v;
}
