/**
 * The tracker actor thread: the trace store and the trace log live here, in module scope. Loaded by piscina
 * through RequestTracker (tracker.ts). After a restart the store is rebuilt from the trace log (when there
 * is one): traces flushed before the crash answer again.
 */
import { defineActor } from '../actors/actor-thread.js';
import { EventReader } from './events.js';
import { TraceLogWriter } from './log.js';
import { listLogFiles } from './log-format.js';
import { readTraceFile } from './reader.js';
import { TraceStore } from './store.js';
import { traceJson, type Trace, type TraceStats } from './types.js';
import type { TrackerInit, TrackerMessage, TrackerReplies } from './protocol.js';

let store: TraceStore | null = null;
let reader = new EventReader();
let log: TraceLogWriter | null = null;
let logError: string | null = null;
let ttlSeconds = 0;
let timers: NodeJS.Timeout[] = [];

function state(): TraceStore {
  if (store === null) throw new Error('tracker actor is not initialised');
  return store;
}

/**
 * Refill the store from the log, newest files first until the store would be full, then insert oldest
 * first so the recency order matches the log's.
 */
async function reload(s: TraceStore, dir: string, skip: string): Promise<void> {
  const files = listLogFiles(dir).filter((f) => f.path !== skip);
  const cutoff = Date.now() - s.ttlMs;
  const perFile: Trace[][] = [];
  let n = 0;
  for (let i = files.length - 1; i >= 0 && n < s.maxEntries; i--) {
    const traces: Trace[] = [];
    let newestEnd = 0;
    for await (const t of readTraceFile((files[i] as { path: string }).path)) {
      traces.push(t);
      const end = t.timestamp_ms + (t.e2e_ms ?? 0);
      if (end > newestEnd) newestEnd = end;
    }
    perFile.push(traces);
    n += traces.length;
    if (traces.length > 0 && newestEnd < cutoff) break; // older files are older still
  }
  for (let i = perFile.length - 1; i >= 0; i--) {
    for (const t of perFile[i] as Trace[]) s.load(t, t.timestamp_ms + (t.e2e_ms ?? 0));
  }
}

function stats(s: TraceStore): TraceStats {
  s.expire();
  const perStatus = s.perStatus();
  return {
    total_requests: s.size,
    active_traces: perStatus.pending + perStatus.streaming,
    requests_per_node: s.perNode(),
    requests_per_status: perStatus,
    recorded_total: s.counters.recorded,
    evicted_lru: s.counters.evictedLru,
    expired_ttl: s.counters.expiredTtl,
    loaded_from_log: s.counters.loaded,
    max_entries: s.maxEntries,
    ttl_seconds: ttlSeconds,
    log: log === null ? null : log.stats(),
    log_error: logError,
  };
}

function jsonArray(traces: readonly Trace[]): string {
  let out = '[';
  for (let i = 0; i < traces.length; i++) {
    if (i > 0) out += ',';
    out += traceJson(traces[i] as Trace);
  }
  return out + ']';
}

export default defineActor<TrackerMessage, TrackerReplies, TrackerInit>({
  async init({ config, dictionary }) {
    reader = new EventReader(dictionary);
    const s = new TraceStore({ maxEntries: config.maxEntries, ttlMs: config.ttlSeconds * 1000, defaultPolicy: config.policy });
    ttlSeconds = config.ttlSeconds;
    if (config.logDir !== undefined) {
      try {
        const w = TraceLogWriter.open({ dir: config.logDir, maxBytes: config.logMaxBytes, maxFiles: config.logMaxFiles });
        log = w;
        s.onFinal = (t) => w.append(t);
        await reload(s, config.logDir, w.currentFile);
      } catch (err) {
        // Tracking goes on in memory; the failure shows in /v1/traces/stats.
        logError = err instanceof Error ? err.message : String(err);
      }
    }
    store = s;
    const w = log;
    if (w !== null) timers.push(setInterval(() => w.flush(), config.flushMs));
    timers.push(setInterval(() => s.expire(), Math.min(1000, Math.max(10, config.ttlSeconds * 100))));
  },
  handlers: {
    events(msg) {
      reader.apply(msg.e, state());
      return null;
    },
    get(msg) {
      const s = state();
      s.expire();
      const t = s.get(msg.id);
      return t === undefined ? null : traceJson(t);
    },
    batch(msg) {
      const s = state();
      s.expire();
      const found: Trace[] = [];
      for (const id of msg.ids) {
        const t = s.get(id);
        if (t !== undefined) found.push(t);
      }
      return jsonArray(found);
    },
    list(msg) {
      const s = state();
      s.expire();
      return jsonArray(s.list(msg.q));
    },
    stats() {
      return stats(state());
    },
    flush() {
      if (log === null) return null;
      log.flush();
      return log.stats();
    },
  },
  close() {
    for (const t of timers) clearInterval(t);
    timers = [];
    log?.close();
  },
});
