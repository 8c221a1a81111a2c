/**
 * The fleet's membership on the main thread: worker URL <-> worker-table slot, node/GPU ids, and one
 * keep-alive upstream pool per worker. Policies and actors learn membership through change listeners;
 * per-worker counters live in the shared WorkerTable.
 *
 * A front-end thread keeps a MIRROR (WorkerRegistry.mirror): the same entries (slot, generation, URL, node
 * id, group) as the main registry, applied with `sync` on every change the main thread announces, with the
 * thread's own upstream clients. A mirror never allocates or releases table slots: the main registry owns them.
 */
import { Pool } from 'undici';
import { createUpstream, type UpstreamClientKind, type UpstreamDispatcher } from '../proxy/upstream/index.js';
import { SwitchyardError } from '../errors.js';
import { Field, type SlotRef, type WorkerTable } from '../actors/worker-table.js';
import type { WorkerInfo } from '../policies/types.js';
import { CLIENT_KEEP_ALIVE_MS } from '../util/keep-alive.js';

export interface WorkerEntry extends WorkerInfo {
  readonly ref: SlotRef;
  /** undici pool for control requests (/flush_cache fan-out, forwarded GETs); opens sockets only when used. */
  readonly pool: Pool;
  /** The data path's client (--upstream-client): `pool` itself for undici, else a FastPool. */
  readonly upstream: UpstreamDispatcher;
  readonly host: string;
  readonly port: number;
  readonly addedAt: number;
}

export interface RegistryOptions {
  /** Sockets per worker; requests beyond wait in the pool's queue. */
  connectionsPerWorker?: number;
  /** Upstream headers/body timeouts. */
  requestTimeoutMs: number;
  /** A new worker's health before its first check (true: optimistic, as when started by us). */
  initiallyHealthy?: boolean;
  /** Which HTTP client carries proxied requests (default: fast; https workers always use undici). */
  upstreamClient?: UpstreamClientKind;
}

export type MembershipListener = (workers: readonly WorkerEntry[]) => void;

/** One member as the main registry announces it to mirrors (plain data: crosses to threads). */
export interface MirroredWorker {
  readonly slot: number;
  readonly generation: number;
  readonly url: string;
  readonly nodeId: number;
  readonly group?: string | undefined;
  readonly addedAt: number;
}

/** Normalise and validate a worker base URL (http/https, no path beyond '/', no credentials). */
export function normalizeWorkerUrl(raw: string): { url: string; host: string; port: number } {
  let u: URL;
  try {
    u = new URL(raw.includes('://') ? raw : `http://${raw}`);
  } catch {
    throw new SwitchyardError('invalid_worker_url', `not a valid worker URL: ${JSON.stringify(raw)}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new SwitchyardError('invalid_worker_url', `worker URL must be http or https: ${raw}`);
  }
  if (u.username !== '' || u.password !== '') throw new SwitchyardError('invalid_worker_url', 'worker URL must not carry credentials');
  if ((u.pathname !== '/' && u.pathname !== '') || u.search !== '' || u.hash !== '') {
    throw new SwitchyardError('invalid_worker_url', `worker URL must be a base URL without path or query: ${raw}`);
  }
  const port = u.port === '' ? (u.protocol === 'https:' ? 443 : 80) : Number(u.port);
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  return { url: `${u.protocol}//${u.host}`, host, port };
}

export class WorkerRegistry {
  private readonly entries: WorkerEntry[] = [];
  private readonly byUrlMap = new Map<string, WorkerEntry>();
  private readonly bySlotMap = new Map<number, WorkerEntry>();
  private readonly listeners: MembershipListener[] = [];
  private readonly draining = new Set<Pool | UpstreamDispatcher>();
  private isMirror = false;

  constructor(
    readonly table: WorkerTable,
    private readonly options: RegistryOptions,
  ) {}

  /** A mirror of another thread's registry: changed only by `sync`; slots stay the main registry's. */
  static mirror(table: WorkerTable, options: RegistryOptions): WorkerRegistry {
    const r = new WorkerRegistry(table, options);
    r.isMirror = true;
    return r;
  }

  /** The members as plain data, for mirrors (groups from `groupOf`, e.g. size-aware admission's). */
  snapshot(groupOf?: (url: string) => string | undefined): MirroredWorker[] {
    return this.entries.map((e) => {
      const group = groupOf?.(e.url) ?? e.group;
      return group === undefined
        ? { slot: e.slot, generation: e.generation, url: e.url, nodeId: e.nodeId, addedAt: e.addedAt }
        : { slot: e.slot, generation: e.generation, url: e.url, nodeId: e.nodeId, group, addedAt: e.addedAt };
    });
  }

  /**
   * Mirror only: make the membership equal to `members` (in their order). Entries whose (url, slot,
   * generation) did not change keep their clients; removed ones drain their in-flight requests, then close.
   */
  sync(members: readonly MirroredWorker[]): void {
    if (!this.isMirror) throw new Error('WorkerRegistry.sync is for mirrors; the main registry changes with add/remove');
    const next: WorkerEntry[] = [];
    for (const m of members) {
      const old = this.byUrlMap.get(m.url);
      const same = old !== undefined && old.slot === m.slot && old.generation === m.generation;
      let entry: WorkerEntry;
      if (same && old.nodeId === m.nodeId && old.group === m.group) entry = old;
      else entry = this.makeEntry(normalizeWorkerUrl(m.url), m.nodeId, { slot: m.slot, generation: m.generation }, m.group, m.addedAt, same ? old : undefined);
      next.push(entry);
    }
    const kept = new Set<Pool | UpstreamDispatcher>();
    for (const e of next) for (const d of clientsOf(e)) kept.add(d);
    for (const e of this.entries) for (const d of clientsOf(e)) if (!kept.has(d)) this.drain(d);
    this.entries.length = 0;
    this.byUrlMap.clear();
    this.bySlotMap.clear();
    for (const e of next) {
      this.entries.push(e);
      this.byUrlMap.set(e.url, e);
      this.bySlotMap.set(e.slot, e);
    }
    this.emit();
  }

  /**
   * Add workers in one go; node ids come from `nodeIds` (same order) or else from port order
   * (seed 000: the lowest port is GPU 0), continuing after the ids already in use.
   */
  addMany(urls: readonly string[], nodeIds: readonly number[] = []): WorkerEntry[] {
    this.assertOwner();
    const parsed = urls.map((u) => normalizeWorkerUrl(u));
    const seen = new Set<string>();
    for (const p of parsed) {
      if (seen.has(p.url) || this.byUrlMap.has(p.url)) throw new SwitchyardError('worker_exists', `worker already registered: ${p.url}`);
      seen.add(p.url);
    }
    const order = parsed.map((p, i) => ({ p, i })).sort((a, b) => a.p.port - b.p.port || a.p.host.localeCompare(b.p.host));
    const ids = new Array<number>(parsed.length);
    let next = this.nextNodeId();
    for (const { i } of order) ids[i] = nodeIds[i] ?? next++;
    const added = parsed.map((p, i) => this.insert(p, ids[i] as number));
    this.emit();
    return added;
  }

  add(url: string, nodeId?: number): WorkerEntry {
    this.assertOwner();
    const p = normalizeWorkerUrl(url);
    if (this.byUrlMap.has(p.url)) throw new SwitchyardError('worker_exists', `worker already registered: ${p.url}`);
    const entry = this.insert(p, nodeId ?? this.nextNodeId());
    this.emit();
    return entry;
  }

  /** Remove a worker: no new decisions reach it; in-flight requests finish on its pool, then the pool closes. */
  remove(url: string): WorkerEntry {
    this.assertOwner();
    let key: string;
    try {
      key = normalizeWorkerUrl(url).url;
    } catch {
      key = url;
    }
    const entry = this.byUrlMap.get(key);
    if (entry === undefined) throw new SwitchyardError('worker_not_found', `no such worker: ${url}`);
    this.byUrlMap.delete(key);
    this.bySlotMap.delete(entry.slot);
    this.entries.splice(this.entries.indexOf(entry), 1);
    this.table.release(entry.slot);
    for (const d of clientsOf(entry)) this.drain(d);
    this.emit();
    return entry;
  }

  get(url: string): WorkerEntry | undefined {
    return this.byUrlMap.get(url);
  }

  bySlot(slot: number): WorkerEntry | undefined {
    return this.bySlotMap.get(slot);
  }

  list(): readonly WorkerEntry[] {
    return this.entries;
  }

  get size(): number {
    return this.entries.length;
  }

  healthyCount(): number {
    let n = 0;
    for (const e of this.entries) if (this.table.get(e.slot, Field.Healthy) === 1) n++;
    return n;
  }

  onChange(listener: MembershipListener): void {
    this.listeners.push(listener);
  }

  async close(): Promise<void> {
    const pools = [...this.entries.flatMap(clientsOf), ...this.draining];
    await Promise.all(pools.map((p) => p.destroy().catch(() => undefined)));
  }

  private nextNodeId(): number {
    let max = -1;
    for (const e of this.entries) if (e.nodeId > max) max = e.nodeId;
    return max + 1;
  }

  private assertOwner(): void {
    if (this.isMirror) throw new Error('a registry mirror changes only through sync (the main registry owns membership)');
  }

  /** In-flight requests finish on the client; then it closes. */
  private drain(d: Pool | UpstreamDispatcher): void {
    this.draining.add(d);
    d.close().then(
      () => this.draining.delete(d),
      () => this.draining.delete(d),
    );
  }

  private insert(p: { url: string; host: string; port: number }, nodeId: number): WorkerEntry {
    const ref = this.table.allocate({ healthy: this.options.initiallyHealthy ?? false, nodeId });
    const entry = this.makeEntry(p, nodeId, ref, undefined, Date.now(), undefined);
    this.entries.push(entry);
    this.byUrlMap.set(p.url, entry);
    this.bySlotMap.set(ref.slot, entry);
    return entry;
  }

  /** An entry with new clients, or with `reuse`'s (a mirror entry whose node id or group changed). */
  private makeEntry(p: { url: string; host: string; port: number }, nodeId: number, ref: SlotRef, group: string | undefined, addedAt: number, reuse: WorkerEntry | undefined): WorkerEntry {
    let pool: Pool;
    let upstream: UpstreamDispatcher;
    if (reuse !== undefined) ({ pool, upstream } = reuse);
    else {
      const poolOptions = {
        connections: this.options.connectionsPerWorker ?? 2048,
        keepAliveTimeout: CLIENT_KEEP_ALIVE_MS,
        keepAliveMaxTimeout: 600_000,
        headersTimeout: this.options.requestTimeoutMs,
        bodyTimeout: this.options.requestTimeoutMs,
        connectTimeout: 5_000,
      };
      pool = new Pool(p.url, { ...poolOptions, pipelining: 1 });
      upstream = createUpstream(this.options.upstreamClient ?? 'fast', p.url, poolOptions, pool);
    }
    const base = { slot: ref.slot, generation: ref.generation, url: p.url, nodeId, ref, pool, upstream, host: p.host, port: p.port, addedAt };
    return group === undefined ? base : { ...base, group };
  }

  private emit(): void {
    for (const l of this.listeners) l(this.entries);
  }
}

/** The distinct clients of a worker (one when the data path uses the undici pool too). */
function clientsOf(e: WorkerEntry): (Pool | UpstreamDispatcher)[] {
  return e.upstream === (e.pool as unknown) ? [e.pool] : [e.pool, e.upstream];
}
