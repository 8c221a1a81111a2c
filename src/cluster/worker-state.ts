/**
 * Worker health and circuit breakers shared across router replicas (issue 9, docs/deployment.md "Worker
 * health"): one replica's ejection, readmission or breaker transition is seen by all within a message.
 *
 * - Published: every transition this replica makes (health checks marking a worker unhealthy or
 *   readmitting it, a passive ejection after a connection failure, a breaker opening, going half-open,
 *   closing), with a timestamp (ms, the replica's clock), on the channel `<prefix>workers`, and kept as
 *   the newest state per worker and kind in the hash `<prefix>workers:state` (a Lua script writes only
 *   if newer).
 * - Applied: a message newer than what this replica last saw for that worker and kind (its own
 *   transitions included) wins; older ones are ignored (counted). Health is applied as if this replica's
 *   monitor had decided it, and its own checks carry on (an ejected worker comes back through this
 *   replica's recovery probes too). A breaker opened elsewhere opens here with this replica's own timer
 *   (its --cb-timeout-duration-secs before half-open); closed closes; half-open is recorded, not applied
 *   (when to probe is the local timer's call). Workers are matched by URL; unknown ones are ignored.
 * - Resync (first connection, Redis back): load the hash and apply what is newer, then write this
 *   replica's newest states (if newer) and publish them, so replicas that loaded before see them too.
 * - Redis down: each replica keeps its own health checks and breakers; transitions are remembered and
 *   written on the resync.
 */
import type { Logger } from '../util/log.js';
import type { Cluster } from './setup.js';
import type { RedisLink, ScriptRunner } from './redis-link.js';
import type { WorkerEntry, WorkerRegistry } from '../workers/registry.js';
import type { WorkerMonitor } from '../workers/monitor.js';
import type { CircuitBreakers } from '../workers/breaker.js';
import { BreakerState } from '../actors/worker-table.js';
import { labels, PromWriter } from '../metrics/prom-text.js';

export const WORKERS_CHANNEL = 'workers';
const STATE_KEY = 'workers:state';

/** h: health (s 1 healthy, 0 not); b: breaker (s a BreakerState: 0 closed, 1 open, 2 half-open). */
export type WorkerStateKind = 'h' | 'b';

/** What travels on the channel (and, as `t|s|o|r`, in the hash). */
export interface WorkerStateMessage {
  readonly u: string;
  readonly k: WorkerStateKind;
  readonly s: number;
  /** When it happened (ms since the epoch, the deciding replica's clock). */
  readonly t: number;
  /** The replica that decided it. */
  readonly o: string;
  /** Why (health: the check's error or "ejected: ..."). */
  readonly r: string;
}

/** HSET field if the stored value is older (or absent). KEYS[1] hash; ARGV field, t, rest of the value. */
const PUT_IF_NEWER_LUA = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local t = tonumber(string.match(cur, '^(%d+)|'))
  if t ~= nil and t >= tonumber(ARGV[2]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. ARGV[3])
return 1
`;

export interface WorkerStateParts {
  readonly registry: WorkerRegistry;
  readonly monitor: WorkerMonitor;
  readonly breakers: CircuitBreakers | undefined;
}

const KINDS: readonly WorkerStateKind[] = ['h', 'b'];
const KIND_NAMES: Record<WorkerStateKind, string> = { h: 'health', b: 'breaker' };

export class SharedWorkerState {
  /** The newest state seen per `kind|url`, this replica's own transitions included. */
  private readonly latest = new Map<string, WorkerStateMessage>();
  private readonly put: ScriptRunner;
  private readonly published = { h: 0, b: 0 };
  private readonly applied = { h: 0, b: 0 };
  private readonly ignored = new Map<string, number>();
  private loaded = 0;
  private closed = false;

  constructor(
    private readonly link: RedisLink,
    private readonly parts: WorkerStateParts,
    private readonly log: Logger,
  ) {
    this.put = link.script('worker-state-put', PUT_IF_NEWER_LUA, 1);
    // This replica's own first checks are newer evidence than any stored health: older entries lose.
    // (Remembered, not published: one probe of a starting replica does not overrule the others.)
    const now = Date.now();
    for (const w of parts.registry.list()) {
      this.latest.set(`h|${w.url}`, { u: w.url, k: 'h', s: parts.monitor.healthOf(w).healthy ? 1 : 0, t: now, o: '', r: 'initial check' });
    }
    parts.monitor.onHealthChange = (w, healthy, reason) => this.local(w.url, 'h', healthy ? 1 : 0, reason);
    parts.breakers?.addListener((ref, _from, to, remote) => {
      if (remote) return;
      const w = parts.registry.bySlot(ref.slot);
      if (w !== undefined && w.generation === ref.generation) this.local(w.url, 'b', to, 'breaker');
    });
    link.subscribe(WORKERS_CHANNEL, (data) => {
      const m = decodeMessage(data);
      if (m === undefined) this.ignore('malformed');
      else this.apply(m);
    });
    link.onResync('worker-state', () => this.resync());
  }

  /** This replica made a transition: remember it, publish it, store it (if newer). */
  private local(url: string, k: WorkerStateKind, s: number, r: string): void {
    if (this.closed) return;
    const prev = this.latest.get(`${k}|${url}`);
    // Two transitions in one millisecond stay ordered.
    const t = Math.max(Date.now(), prev === undefined ? 0 : prev.t + 1);
    const m: WorkerStateMessage = { u: url, k, s, t, o: this.link.replicaId, r };
    this.latest.set(`${k}|${url}`, m);
    this.send(m);
  }

  private send(m: WorkerStateMessage): void {
    if (!this.link.up) return; // written on the resync
    this.published[m.k]++;
    this.link.publish(WORKERS_CHANNEL, m);
    void this.put([this.link.key(STATE_KEY)], [`${m.k}|${m.u}`, m.t, `${m.s}|${m.o}|${m.r}`]);
  }

  /** Another replica's transition (message or hash): applied when newer than what this replica saw. */
  private apply(m: WorkerStateMessage): void {
    if (this.closed) return;
    const key = `${m.k}|${m.u}`;
    const prev = this.latest.get(key);
    if (prev !== undefined && prev.t >= m.t) {
      this.ignore('stale');
      return;
    }
    const w: WorkerEntry | undefined = this.parts.registry.get(m.u);
    if (w === undefined) {
      this.ignore('unknown_worker');
      return;
    }
    this.latest.set(key, m);
    this.applied[m.k]++;
    const reason = `${m.r} (replica ${m.o})`;
    if (m.k === 'h') this.parts.monitor.applyRemote(w, m.s === 1, reason);
    else if (this.parts.breakers !== undefined && (m.s === BreakerState.Open || m.s === BreakerState.Closed)) {
      if (this.parts.breakers.applyRemote(w.ref, m.s as BreakerState)) {
        this.log.warn({ event: 'worker.breaker', worker: w.url, to: m.s, remote: true, replica: m.o }, 'circuit breaker state changed by another replica');
      }
    }
  }

  private async resync(): Promise<void> {
    const all = await this.link.run('workers:load', (r) => r.hgetall(this.link.key(STATE_KEY)));
    if (all !== undefined) {
      for (const [field, value] of Object.entries(all)) {
        const m = decodeStored(field, value);
        if (m === undefined) continue;
        this.loaded++;
        if (m.o !== this.link.replicaId) this.apply(m);
      }
    }
    for (const m of this.latest.values()) if (m.o !== '') this.send(m);
  }

  private ignore(why: string): void {
    this.ignored.set(why, (this.ignored.get(why) ?? 0) + 1);
  }

  stats(): Record<string, unknown> {
    return { published: { ...this.published }, applied: { ...this.applied }, ignored: Object.fromEntries(this.ignored), loaded: this.loaded, known: this.latest.size };
  }

  metricsText(): string {
    const w = new PromWriter();
    w.family('switchyard_cluster_worker_state_published_total', 'counter', "This replica's worker transitions published to the others, by kind (health, breaker)");
    for (const k of KINDS) w.sample('switchyard_cluster_worker_state_published_total', labels(['kind', KIND_NAMES[k]]), this.published[k]);
    w.family('switchyard_cluster_worker_state_applied_total', 'counter', "Other replicas' worker transitions applied here (newer than what this replica had), by kind");
    for (const k of KINDS) w.sample('switchyard_cluster_worker_state_applied_total', labels(['kind', KIND_NAMES[k]]), this.applied[k]);
    w.family('switchyard_cluster_worker_state_ignored_total', 'counter', 'Worker transitions received and not applied: stale (older than the one known), unknown_worker, malformed');
    for (const why of ['stale', 'unknown_worker', 'malformed']) w.sample('switchyard_cluster_worker_state_ignored_total', labels(['reason', why]), this.ignored.get(why) ?? 0);
    return w.text();
  }

  close(): void {
    this.closed = true;
    this.parts.monitor.onHealthChange = undefined;
  }
}

function decodeMessage(data: unknown): WorkerStateMessage | undefined {
  if (data === null || typeof data !== 'object') return undefined;
  const m = data as Record<string, unknown>;
  const { u, k, s, t, o, r } = m;
  if (typeof u !== 'string' || (k !== 'h' && k !== 'b') || typeof s !== 'number' || typeof t !== 'number' || typeof o !== 'string') return undefined;
  return { u, k, s, t, o, r: typeof r === 'string' ? r : '' };
}

/** A hash entry `kind|url` -> `t|s|origin|reason`. */
function decodeStored(field: string, value: string): WorkerStateMessage | undefined {
  const bar = field.indexOf('|');
  const k = field.slice(0, bar);
  const u = field.slice(bar + 1);
  const parts = value.split('|');
  if (bar < 0 || (k !== 'h' && k !== 'b') || parts.length < 3) return undefined;
  const t = Number(parts[0]);
  const s = Number(parts[1]);
  if (!Number.isFinite(t) || !Number.isFinite(s)) return undefined;
  return { u, k, s, t, o: parts[2] as string, r: parts.slice(3).join('|') };
}

/** Share worker health and breakers through the cluster's Redis; the part closes with the cluster. */
export function attachWorkerState(cluster: Cluster, parts: WorkerStateParts, log: Logger): SharedWorkerState {
  const s = new SharedWorkerState(cluster.link, parts, log);
  cluster.attach({ name: 'worker-state', metricsText: () => s.metricsText(), close: () => s.close() });
  return s;
}
