/**
 * `shortest_queue` (seed 003): route to the worker with the smallest queue. A worker's queue is what it
 * has outstanding, known two ways: the router's own in-flight count (exact and current, but blind to
 * other routers' traffic) and the worker's own report (/get_load: running + waiting; complete but up to
 * a poll interval old). The larger of the two is the estimate. Among equal queues the one with fewer
 * reported waiting requests wins, then the one whose recent requests queued least on the server
 * (meta_info queue time, fed back through observe), then a seeded random pick: never the lowest index,
 * which would send every burst to the same worker.
 *
 * Its state is a few numbers per worker, updated on the front end: it runs inline.
 */
import { Field } from '../actors/worker-table.js';
import { collectAvailable, decisionFor } from './common.js';
import { hasFreshReport, reportClockSec, reportMaxAge } from './reported.js';
import type { CompletionFeedback, Decision, Policy, PolicyContext, PolicyFactoryOptions, RequestFeatures, WorkerInfo } from './types.js';

/** Weight of the newest queue-time sample in the moving average. */
const QUEUE_TIME_ALPHA = 0.2;

export function createShortestQueuePolicy(options: PolicyFactoryOptions = {}): Policy {
  const maxAge = reportMaxAge(options, 'shortest_queue');
  const candidates: WorkerInfo[] = [];
  // Per slot: moving average of server-reported queue time (ms), -1 = none yet; the url it belongs to.
  let queueTimeMs = new Float64Array(16).fill(-1);
  let urlOfSlot: (string | undefined)[] = [];

  function grow(slot: number): void {
    if (slot < queueTimeMs.length) return;
    const next = new Float64Array(Math.max(slot + 1, queueTimeMs.length * 2)).fill(-1);
    next.set(queueTimeMs);
    queueTimeMs = next;
  }

  return {
    name: 'shortest_queue',
    stateful: false,

    select(_req: RequestFeatures, ctx: PolicyContext): Decision | null {
      const table = ctx.table;
      const n = collectAvailable(table, ctx.workers, candidates);
      if (n === 0) return null;
      const nowSec = reportClockSec();
      let best = -1;
      let bQueue = Infinity;
      let bWaiting = 0;
      let bRunning = 0;
      let bInFlight = 0;
      let bQt = Infinity;
      let ties = 0;
      let maxQueue = 0;
      const rng = ctx.rng;
      for (let i = 0; i < n; i++) {
        const slot = (candidates[i] as WorkerInfo).slot;
        const inFlight = table.peek(slot, Field.InFlightRequests);
        let waiting = 0;
        let running = 0;
        if (hasFreshReport(table, slot, nowSec, maxAge)) {
          waiting = table.peek(slot, Field.ReportedQueue);
          running = table.peek(slot, Field.ReportedRunning);
        }
        const reported = waiting + running;
        const queue = inFlight > reported ? inFlight : reported;
        if (queue > maxQueue) maxQueue = queue;
        const qtRaw = slot < queueTimeMs.length ? (queueTimeMs[slot] as number) : -1;
        const qt = qtRaw < 0 ? 0 : qtRaw;
        let better = false;
        let same = false;
        if (queue !== bQueue) better = queue < bQueue;
        else if (waiting !== bWaiting) better = waiting < bWaiting;
        else if (qt !== bQt) better = qt < bQt;
        else same = true;
        if (better) {
          best = i;
          ties = 1;
        } else if (same && rng.next() * ++ties < 1) best = i;
        else continue;
        bQueue = queue;
        bWaiting = waiting;
        bRunning = running;
        bInFlight = inFlight;
        bQt = qt;
      }
      const w = candidates[best] as WorkerInfo;
      return decisionFor(
        w,
        `shortest_queue: ${w.url} queue ${bQueue} (in-flight ${bInFlight}, reported ${bRunning} running + ${bWaiting} waiting, ` +
          `queue time ${bQt.toFixed(1)} ms) shortest of ${n} (longest ${maxQueue})`,
        { queue: bQueue, in_flight: bInFlight, reported_running: bRunning, reported_waiting: bWaiting, queue_time_ms: bQt, max_queue: maxQueue, available: n },
      );
    },

    observe(f: CompletionFeedback): void {
      if (f.queueTime === undefined || !Number.isFinite(f.queueTime) || f.queueTime < 0) return;
      if (urlOfSlot[f.slot] !== f.url) return; // the slot has changed hands since; not this worker's figure
      grow(f.slot);
      const ms = f.queueTime * 1000;
      const prev = queueTimeMs[f.slot] as number;
      queueTimeMs[f.slot] = prev < 0 ? ms : prev + QUEUE_TIME_ALPHA * (ms - prev);
    },

    onWorkersChanged(ws: readonly WorkerInfo[]): void {
      const next: (string | undefined)[] = [];
      for (const w of ws) {
        next[w.slot] = w.url;
        if (urlOfSlot[w.slot] !== w.url && w.slot < queueTimeMs.length) queueTimeMs[w.slot] = -1;
      }
      for (let s = 0; s < urlOfSlot.length; s++) if (next[s] === undefined && s < queueTimeMs.length) queueTimeMs[s] = -1;
      urlOfSlot = next;
    },

    snapshot(): unknown {
      const queueTime: Record<string, number> = {};
      urlOfSlot.forEach((url, slot) => {
        if (url !== undefined && slot < queueTimeMs.length && (queueTimeMs[slot] as number) >= 0) queueTime[url] = queueTimeMs[slot] as number;
      });
      return { load_report_max_age_secs: maxAge, queue_time_ms: queueTime };
    },
  };
}
