/**
 * The trace store: the tracker actor's in-memory state. Events from the front end (events.ts) and traces
 * reloaded from the log are applied to slots (trace-slots.ts: columns, id table, LRU and TTL bounds,
 * counts); queries read them back as trace objects.
 */
import type { DecidedEvent, EventTarget, FinishedEvent, RequestIdRef } from './events.js';
import { ABORTED, COMPLETED, FAILED, NIL, PENDING, STATUS_CODE, STREAMING, TraceSlots, isFinalCode } from './trace-slots.js';
import type { Trace, TraceQuery } from './types.js';

export type { StoreCounters, TraceStoreOptions } from './trace-slots.js';

export class TraceStore extends TraceSlots implements EventTarget {
  // ---------------------------------------------------------------------------------------------
  // events (EventTarget)

  decided(e: DecidedEvent): void {
    let s = this.slotOf(e.requestId);
    if (s >= 0 && isFinalCode(this.status[s] as number)) {
      // A finished request's id reused by a new request: the new one replaces it.
      this.remove(s);
      s = -1;
    }
    if (s < 0) {
      s = this.allocate(e.requestId, PENDING, e.nodeId ?? -1);
      this.timestamp[s] = e.timestampMs;
      this.routes.set(s, e.route);
      this.stream[s] = e.stream ? 1 : 0;
      this.input[s] = e.inputTokens;
      this.output[s] = -1;
      this.cached[s] = -1;
      this.ttft[s] = Number.NaN;
      this.e2e[s] = Number.NaN;
      this.serverQueue[s] = Number.NaN;
      this.http[s] = 0;
      this.errorCodes.set(s, null);
      this.errorMessages.set(s, null);
      this.counters.recorded++;
    } else {
      // A retry on another worker: the trace follows the request.
      this.setNode(s, e.nodeId ?? -1);
      this.touch(s);
    }
    // Reasons and scores differ per request: they are copied into columns (bytes, codes and numbers).
    this.urls.set(s, e.workerUrl);
    this.policies.set(s, e.policy);
    this.reasons.set(s, e.reason);
    this.scores.set(s, e.scores);
    this.queue[s] = e.queueMs;
    this.attempts[s] = e.attempts;
  }

  firstByte(requestId: RequestIdRef, ttftMs: number): void {
    const s = this.slotOf(requestId);
    if (s < 0 || this.status[s] !== PENDING) return;
    this.setStatus(s, STREAMING);
    this.ttft[s] = ttftMs;
    this.touch(s);
  }

  finished(e: FinishedEvent): void {
    const status = e.status === 'completed' ? COMPLETED : e.status === 'aborted' ? ABORTED : FAILED;
    let s = this.slotOf(e.requestId);
    if (s >= 0 && isFinalCode(this.status[s] as number)) {
      this.remove(s);
      s = -1;
    }
    const full = !e.outcomeOnly;
    if (s < 0) {
      // Never decided (e.g. no healthy worker), or its pending trace was already evicted (then the
      // decision's details are gone: arrival is estimated, policy is the router's).
      s = this.allocate(e.requestId, status, e.nodeId ?? -1);
      this.counters.recorded++;
      this.timestamp[s] = full ? e.timestampMs : Math.round((this.now() - e.e2eMs) * 1000) / 1000;
      this.policies.set(s, full ? e.policy : this.defaultPolicy);
      this.reasons.set(s, e.reason);
      this.scores.set(s, e.scores);
      this.queue[s] = e.queueMs ?? Number.NaN;
    } else {
      this.setNode(s, e.nodeId ?? -1);
      this.setStatus(s, status);
      if (full) {
        this.policies.set(s, e.policy);
        this.reasons.set(s, e.reason);
        this.scores.set(s, e.scores);
        this.queue[s] = e.queueMs ?? Number.NaN;
      }
      this.touch(s);
    }
    this.urls.set(s, e.workerUrl);
    this.routes.set(s, e.route);
    this.stream[s] = e.stream ? 1 : 0;
    this.ttft[s] = e.ttftMs ?? Number.NaN;
    this.e2e[s] = e.e2eMs;
    this.serverQueue[s] = e.serverQueueMs ?? Number.NaN;
    this.input[s] = e.inputTokens;
    this.output[s] = e.outputTokens;
    this.cached[s] = e.cachedTokens;
    this.http[s] = e.httpStatus ?? 0;
    this.errorCodes.set(s, e.errorCode);
    this.errorMessages.set(s, e.errorMessage);
    this.attempts[s] = e.attempts;
    if (this.onFinal !== undefined) this.onFinal(this.view(s));
  }

  /**
   * A finished trace read back from the trace log (start-up reload). Callers insert oldest first; a trace
   * already held is newer and wins. `updatedMs` is when it finished. Expired traces are not loaded.
   */
  load(t: Trace, updatedMs: number): boolean {
    const status = STATUS_CODE[t.status];
    if (status === undefined || !isFinalCode(status) || this.ids.find(t.request_id) >= 0 || updatedMs < this.now() - this.ttlMs) return false;
    const s = this.allocate(t.request_id, status, t.node_id ?? -1);
    this.updated[s] = updatedMs;
    this.timestamp[s] = t.timestamp_ms;
    this.urls.set(s, t.worker_url);
    this.policies.set(s, t.routing_policy);
    this.routes.set(s, t.route);
    this.stream[s] = t.stream ? 1 : 0;
    this.reasons.set(s, t.reason);
    this.scores.set(s, t.scores);
    this.queue[s] = t.queue_ms ?? Number.NaN;
    this.ttft[s] = t.ttft_ms ?? Number.NaN;
    this.e2e[s] = t.e2e_ms ?? Number.NaN;
    this.serverQueue[s] = t.server_queue_ms ?? Number.NaN;
    this.input[s] = t.input_tokens;
    this.output[s] = t.output_tokens ?? -1;
    this.cached[s] = t.cached_tokens ?? -1;
    this.http[s] = t.http_status ?? 0;
    this.errorCodes.set(s, t.error_code);
    this.errorMessages.set(s, t.error_message);
    this.attempts[s] = t.attempts;
    this.counters.loaded++;
    return true;
  }


  // ---------------------------------------------------------------------------------------------
  // queries

  /** Most recent first (by arrival), filtered; at most q.limit. */
  list(q: TraceQuery): Trace[] {
    const limit = q.limit;
    if (limit <= 0) return [];
    const wantNode = q.nodeId !== undefined;
    const node = q.nodeId === null || q.nodeId === undefined ? -1 : q.nodeId;
    const status = q.status === undefined ? -1 : (STATUS_CODE[q.status] as number);
    // A min-heap of the `limit` newest matches seen so far: O(n log limit), no full sort.
    const heap: number[] = [];
    for (let s = this.head; s !== NIL; s = this.newer[s] as number) {
      if (status >= 0 && this.status[s] !== status) continue;
      if (wantNode && this.node[s] !== node) continue;
      if (heap.length < limit) {
        heap.push(s);
        this.siftUp(heap, heap.length - 1);
      } else if (this.isNewer(s, heap[0] as number)) {
        heap[0] = s;
        this.siftDown(heap, 0);
      }
    }
    heap.sort((a, b) => (this.isNewer(a, b) ? -1 : this.isNewer(b, a) ? 1 : 0));
    return heap.map((s) => this.view(s));
  }

  /** Every held trace with a final status, least recently updated first, with when it was last updated. */
  forEachFinal(fn: (t: Trace, updatedMs: number) => void): void {
    for (let s = this.head; s !== NIL; s = this.newer[s] as number) {
      if (isFinalCode(this.status[s] as number)) fn(this.view(s), this.updated[s] as number);
    }
  }



  /** Arrival order, newest first; ties broken by id so the order is total and stable. */
  private isNewer(a: number, b: number): boolean {
    const ta = this.timestamp[a] as number;
    const tb = this.timestamp[b] as number;
    return ta > tb || (ta === tb && this.ids.compare(a, b) > 0);
  }

  private siftUp(h: number[], i: number): void {
    const x = h[i] as number;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = h[p] as number;
      if (!this.isNewer(parent, x)) break;
      h[i] = parent;
      i = p;
    }
    h[i] = x;
  }

  private siftDown(h: number[], i: number): void {
    const n = h.length;
    const x = h[i] as number;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      let c = l;
      if (r < n && this.isNewer(h[l] as number, h[r] as number)) c = r;
      const child = h[c] as number;
      if (!this.isNewer(x, child)) break;
      h[i] = child;
      i = c;
    }
    h[i] = x;
  }
}
