/**
 * Plugins in their simplest form: a module exporting `route(request, workers, context)` (and optionally
 * `name`) needs no imports from Switchyard. This adapter turns it into a Policy that runs in the policy
 * actor: it keeps a window of recent finished requests per worker (latency, TTFT, throughput, from the
 * completion feedback), and on every decision hands the plugin plain views of the AVAILABLE workers:
 * loads and health from the shared worker table plus those recent figures. docs/plugins.md describes
 * every field.
 *
 * A plugin may return a worker view, `{ worker, reason?, scores? }`, or null (no preference: the least
 * loaded of the offered workers, random tie-break). Anything else, or a worker that was not offered,
 * throws; the host then falls back and counts the error. The plugin is not called when no worker is
 * available (the decision is null: no_healthy_workers).
 */
import { Field, type WorkerTable } from '../actors/worker-table.js';
import { SwitchyardError } from '../errors.js';
import { collectAvailable, decisionFor, leastLoadedIndex } from './common.js';
import { WorkerWindows } from './worker-windows.js';
import type { CompletionFeedback, Decision, Policy, PolicyContext, PolicyFactoryOptions, RequestFeatures, WorkerInfo } from './types.js';

/** What a plugin sees of one worker. Numbers are current at the decision (loads) or over the last `window` requests. */
export interface PluginWorkerView {
  readonly url: string;
  readonly slot: number;
  readonly nodeId: number;
  readonly group: string | undefined;
  /** Always true for the workers offered (healthy and circuit breaker not open). */
  readonly healthy: boolean;
  /** The router's own in-flight requests and their input tokens on this worker. */
  readonly inFlight: number;
  readonly inFlightTokens: number;
  /** Worker-reported (/get_load) waiting and running requests and tokens; 0 when not reported. */
  readonly waiting: number;
  readonly running: number;
  readonly reportedTokens: number;
  /** Outstanding requests as best known: max(inFlight, waiting + running). */
  readonly queueDepth: number;
  /** KV-cache token usage reported by the worker, 0..1 (0 when not reported). */
  readonly tokenUsage: number;
  /** Requests this router completed on the worker. */
  readonly processed: number;
  /** Finished requests in the recent window, and their means (0 when none). */
  readonly samples: number;
  readonly latencyMs: number;
  readonly ttftMs: number;
  /** Output tokens per second per request. */
  readonly throughput: number;
}

export interface PluginContext {
  /** Milliseconds, monotonic. */
  readonly now: number;
  /** Seeded uniform [0, 1): use it for tie-breaks so runs replay. */
  random(): number;
  /** How many members the fleet has, available or not. */
  readonly members: number;
}

export type PluginChoice =
  | PluginWorkerView
  | { readonly worker: PluginWorkerView; readonly reason?: string; readonly scores?: Readonly<Record<string, number>> }
  | null
  | undefined;

export type RouteFunction = (request: RequestFeatures, workers: readonly PluginWorkerView[], context: PluginContext) => PluginChoice;

/** Size of the per-worker window of recent requests (option `pluginWindow`). */
export const DEFAULT_PLUGIN_WINDOW = 20;

class View implements PluginWorkerView {
  url = '';
  slot = 0;
  nodeId = 0;
  group: string | undefined = undefined;
  healthy = true;
  inFlight = 0;
  inFlightTokens = 0;
  waiting = 0;
  running = 0;
  reportedTokens = 0;
  queueDepth = 0;
  tokenUsage = 0;
  processed = 0;
  samples = 0;
  latencyMs = 0;
  ttftMs = 0;
  throughput = 0;
  member: WorkerInfo | null = null;
}

function fill(v: View, w: WorkerInfo, table: WorkerTable, windows: WorkerWindows): void {
  const s = w.slot;
  v.member = w;
  v.url = w.url;
  v.slot = s;
  v.nodeId = w.nodeId;
  v.group = w.group;
  v.healthy = true;
  v.inFlight = table.peek(s, Field.InFlightRequests);
  v.inFlightTokens = table.peek(s, Field.InFlightTokens);
  v.waiting = table.peek(s, Field.ReportedQueue);
  v.running = table.peek(s, Field.ReportedRunning);
  v.reportedTokens = table.peek(s, Field.ReportedTokens);
  v.queueDepth = Math.max(v.inFlight, v.waiting + v.running);
  v.tokenUsage = table.peek(s, Field.TokenUsagePermille) / 1000;
  v.processed = table.peek(s, Field.Processed);
  const ring = windows.get(s);
  if (ring === undefined) {
    v.samples = 0;
    v.latencyMs = 0;
    v.ttftMs = 0;
    v.throughput = 0;
  } else {
    const m = ring.means();
    v.samples = ring.count;
    v.latencyMs = m.latencyS * 1000;
    v.ttftMs = m.ttftMs;
    v.throughput = m.throughput;
  }
}

export function createPluginPolicy(name: string, route: RouteFunction, options: PolicyFactoryOptions = {}): Policy {
  if (typeof route !== 'function') throw new SwitchyardError('invalid_request', `plugin "${name}": route must be a function`);
  const size = options['pluginWindow'] ?? DEFAULT_PLUGIN_WINDOW;
  if (typeof size !== 'number' || !Number.isInteger(size) || size < 2) throw new SwitchyardError('invalid_request', `plugin "${name}": pluginWindow must be an integer >= 2`);
  const windows = new WorkerWindows(size);
  const candidates: WorkerInfo[] = [];
  const pool: View[] = [];
  const offered: View[] = [];
  let members = 0;
  let rngNext: () => number = Math.random;
  const context = {
    now: 0,
    members: 0,
    random: (): number => rngNext(),
  };

  return {
    name,
    stateful: true,
    select(req: RequestFeatures, ctx: PolicyContext): Decision | null {
      const n = collectAvailable(ctx.table, ctx.workers, candidates);
      if (n === 0) return null;
      while (pool.length < n) pool.push(new View());
      offered.length = n;
      for (let i = 0; i < n; i++) {
        const v = pool[i] as View;
        fill(v, candidates[i] as WorkerInfo, ctx.table, windows);
        offered[i] = v;
      }
      const rng = ctx.rng;
      rngNext = () => rng.next();
      context.now = ctx.now();
      context.members = members;
      // The plugin gets a frozen copy of the list: it may keep or sort it without disturbing ours.
      const choice = route(req, Object.freeze(offered.slice()), context);
      if (choice === null || choice === undefined) {
        const i = leastLoadedIndex(ctx.table, candidates, n, ctx.rng);
        const w = candidates[i] as WorkerInfo;
        return decisionFor(w, `${name}: no preference; least loaded ${w.url}`, { load: ctx.table.peekLoad(w.slot) });
      }
      const picked = (choice as { worker?: unknown }).worker !== undefined ? (choice as { worker: unknown }).worker : choice;
      const idx = offered.indexOf(picked as View);
      if (idx < 0) throw new Error(`plugin ${name} returned something that is not one of the workers it was offered`);
      const view = offered[idx] as View;
      const given = (choice as { reason?: unknown }).reason;
      const reason = typeof given === 'string' && given !== '' ? `${name}: ${given}` : `${name}: chose ${view.url} (queue depth ${view.queueDepth})`;
      const rawScores = (choice as { scores?: unknown }).scores;
      let scores: Record<string, number> | undefined;
      if (rawScores !== undefined && rawScores !== null && typeof rawScores === 'object') {
        scores = {};
        for (const [k, v] of Object.entries(rawScores as Record<string, unknown>)) if (typeof v === 'number' && Number.isFinite(v)) scores[k] = v;
      }
      return decisionFor(view.member as WorkerInfo, reason, scores);
    },
    observe(f: CompletionFeedback): void {
      windows.add(f);
    },
    onWorkersChanged(ws: readonly WorkerInfo[]): void {
      members = ws.length;
      windows.setMembers(ws);
    },
    snapshot(): unknown {
      return { plugin: name, members, window: size, skipped_feedback: windows.skipped };
    },
  };
}
