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
import { traceJson, type FinishedTraces, type Trace, type TraceStats } from './types.js';
import { encodeTrace } from './trace-codec.js';
import type { TrackerInit, TrackerMessage, TrackerReplies } from './protocol.js';

let store: TraceStore | null = null;
let reader = new EventReader();
let log: TraceLogWriter | null = null;
let logError: string | null = null;
let ttlSeconds = 0;
let timers: NodeJS.Timeout[] = [];

/**
 * Finished traces waiting for the shared-traces part (--redis-url), encoded when they finish: a ring of at
 * most `shareMax`, the oldest dropped (and counted) when nobody drains in time.
 */
let shareMax = 0;
let shareIds: string[] = [];
let shareEnds: number[] = [];
let shareBytes: Uint8Array[] = [];
let shareDropped = 0;

function share(t: Trace): void {
  if (shareIds.length >= shareMax) {
    // Rare (the part drains every few tens of ms): dropping the oldest half at once keeps this O(1) amortised.
    const cut = Math.max(1, shareIds.length >> 1);
    shareIds.splice(0, cut);
    shareEnds.splice(0, cut);
    shareBytes.splice(0, cut);
    shareDropped += cut;
  }
  shareIds.push(t.request_id);
  shareEnds.push(Date.now());
  shareBytes.push(encodeTrace(t));
}

/** Encoded traces as one buffer and its offsets (one structured clone instead of one per trace). */
function packTraces(ids: string[], ends: number[], parts: Uint8Array[], dropped: number): FinishedTraces {
  const n = ids.length;
  const offsets = new Uint32Array(n + 1);
  let total = 0;
  for (let i = 0; i < n; i++) {
    total += (parts[i] as Uint8Array).byteLength;
    offsets[i + 1] = total;
  }
  const bytes = new Uint8Array(total);
  for (let i = 0; i < n; i++) bytes.set(parts[i] as Uint8Array, offsets[i] as number);
  return { ids, ends: Float64Array.from(ends), offsets, bytes, dropped };
}

/** Every finished trace held, oldest first (the shared-traces part re-writes them into an emptied Redis). */
function exportFinished(s: TraceStore): FinishedTraces {
  s.expire();
  const ids: string[] = [];
  const ends: number[] = [];
  const parts: Uint8Array[] = [];
  s.forEachFinal((t, updated) => {
    ids.push(t.request_id);
    ends.push(updated);
    parts.push(encodeTrace(t));
  });
  return packTraces(ids, ends, parts, 0);
}

function drainShared(): FinishedTraces | null {
  if (shareIds.length === 0 && shareDropped === 0) return null;
  const out = packTraces(shareIds, shareEnds, shareBytes, shareDropped);
  shareIds = [];
  shareEnds = [];
  shareBytes = [];
  shareDropped = 0;
  return out;
}

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
    shareMax = config.shareQueueMax ?? 0;
    if (shareMax > 0) s.onFinal = share;
    if (config.logDir !== undefined) {
      try {
        const w = TraceLogWriter.open({ dir: config.logDir, maxBytes: config.logMaxBytes, maxFiles: config.logMaxFiles });
        log = w;
        s.onFinal = shareMax > 0 ? (t) => (w.append(t), share(t)) : (t) => w.append(t);
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
    drain() {
      return drainShared();
    },
    export() {
      return exportFinished(state());
    },
  },
  close() {
    for (const t of timers) clearInterval(t);
    timers = [];
    log?.close();
  },
});
