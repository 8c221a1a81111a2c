/**
 * `cache_aware`, as SGLang's router does it (sgl-router policies/cache_aware.rs), in a policy actor:
 *
 *   load = the router's own in-flight requests per worker (WorkerTable), over the available workers.
 *   1. imbalanced if (max_load - min_load) > balance_abs_threshold AND max_load > min_load * balance_rel_threshold
 *      -> the least-loaded worker;
 *   2. else match_rate = matched_chars / text_chars over the radix tree of request TEXT; if it is above
 *      cache_threshold -> the worker holding the longest match, else the least-loaded worker;
 *   3. insert the text under the chosen worker.
 *   Eviction every eviction_interval_secs (each worker's LRU leaves while it holds more than max_tree_size
 *   characters), and the same bound on every insert (sgl-router only evicts periodically).
 *
 * The one improvement (OURS, `--balance-keep-locality`, on by default; off = SGLang's exact rule): when
 * imbalanced, take the longest match among the workers whose load is within balance_abs_threshold of the
 * minimum (when it passes cache_threshold) instead of throwing locality away.
 *
 * Ties are broken at random with the host's seeded Rng, never by index. Equal loads tie; so do matches
 * within `tieTolerance` (default 1%) of the text of the longest match (`--cache-tie-tolerance`, 0 = equal
 * lengths only): the tree is approximate and a few characters of a unique question carry no cache value,
 * yet taken literally they send a prompt every worker holds to whichever has seen the most questions
 * (docs/policies.md, the hot-prefix case). One tree per model (the request's `model`; absent: one default tree). Removed workers are removed
 * from every tree. Every decision carries its reason and scores (match_rate, matched_chars, text_chars,
 * load, min_load, max_load, cache_hit, imbalanced); the snapshot carries per-worker tree sizes and the
 * hit/miss counts for metrics.
 *
 * Affinity across router replicas (OURS, the `affinity` option, set by the router with --redis-url):
 * the match of each worker is the larger of this tree's and the remote prefix index's (what other
 * replicas routed, in whole blocks), and every insert is published to them; see affinity.ts.
 */
import { Field } from '../actors/worker-table.js';
import { SwitchyardError } from '../errors.js';
import { collectAvailable, decisionFor } from './common.js';
import { chunksLength, HotnessProbe, RadixTree, DEFAULT_MAX_TREE_SIZE } from './radix-tree.js';
import { AffinityShare, affinityOptions, mergeAffinityStates, type AffinityOptions, type AffinityState } from './affinity.js';
import type { Decision, Policy, PolicyContext, PolicyFactoryOptions, RequestFeatures, WorkerInfo } from './types.js';
import type { Rng } from '../util/rng.js';

export interface CacheAwareOptions {
  readonly cacheThreshold: number;
  readonly balanceAbsThreshold: number;
  readonly balanceRelThreshold: number;
  readonly evictionIntervalSecs: number;
  readonly maxTreeSize: number;
  /** OURS: when imbalanced, keep the longest match among workers within balanceAbsThreshold of the minimum. */
  readonly balanceKeepLocality: boolean;
  /**
   * Matches within this fraction of the text of the longest one are ties (broken at random). 0: only equal
   * lengths tie. See the header: without it a few characters of unique question text decide among workers
   * that all hold a shared prompt.
   */
  readonly tieTolerance: number;
  /**
   * OURS, hot-prefix replication: a cache hit goes to the least-loaded worker instead when its prefix is
   * under-replicated, i.e. (share of recent requests crossing the prefix) x (available workers) >
   * (workers holding it) x hotPrefixFactor, and every holder within the tie tolerance is busier than the
   * least loaded. That worker then holds the prefix too. 0 disables (SGLang's rule).
   */
  readonly hotPrefixFactor: number;
  /** Share insert decisions with other router replicas (affinity.ts); null: this replica alone. */
  readonly affinity: AffinityOptions | null;
}

export const CACHE_AWARE_DEFAULTS: CacheAwareOptions = Object.freeze({
  cacheThreshold: 0.3,
  balanceAbsThreshold: 64,
  balanceRelThreshold: 1.5,
  evictionIntervalSecs: 120,
  maxTreeSize: DEFAULT_MAX_TREE_SIZE,
  balanceKeepLocality: true,
  tieTolerance: 0.01,
  hotPrefixFactor: 1.1,
  affinity: null,
});

/** Half-life of a prefix's heat, in decisions (of one shard): hotness reflects the last ~100-200 requests. */
export const HOT_PREFIX_HALF_LIFE = 64;

/** Trees kept, one per model; further models share one overflow tree (a client cannot grow memory without bound). */
export const MAX_MODEL_TREES = 64;
const DEFAULT_MODEL = '';
const OVERFLOW_MODEL = '\u0000overflow';

function num(o: PolicyFactoryOptions, key: keyof CacheAwareOptions, ok: (v: number) => boolean, what: string): number {
  const v = o[key];
  if (v === undefined || v === null) return CACHE_AWARE_DEFAULTS[key] as number;
  if (typeof v !== 'number' || !ok(v)) throw new SwitchyardError('invalid_request', `cache_aware: ${key} must be ${what}, got ${String(v)}`);
  return v;
}

/** The options with SGLang's defaults filled in; bad values throw a SwitchyardError naming the option. */
export function cacheAwareOptions(o: PolicyFactoryOptions = {}): CacheAwareOptions {
  const keep = o['balanceKeepLocality'];
  if (keep !== undefined && typeof keep !== 'boolean') throw new SwitchyardError('invalid_request', `cache_aware: balanceKeepLocality must be a boolean, got ${String(keep)}`);
  return {
    cacheThreshold: num(o, 'cacheThreshold', (v) => v >= 0 && v <= 1, 'a number in [0, 1]'),
    balanceAbsThreshold: num(o, 'balanceAbsThreshold', (v) => Number.isFinite(v) && v >= 0, 'a non-negative number'),
    balanceRelThreshold: num(o, 'balanceRelThreshold', (v) => Number.isFinite(v) && v >= 1, 'a number >= 1'),
    evictionIntervalSecs: num(o, 'evictionIntervalSecs', (v) => Number.isFinite(v) && v > 0, 'a positive number'),
    maxTreeSize: num(o, 'maxTreeSize', (v) => Number.isInteger(v) && v >= 1, 'a positive integer'),
    balanceKeepLocality: keep ?? CACHE_AWARE_DEFAULTS.balanceKeepLocality,
    tieTolerance: num(o, 'tieTolerance', (v) => v >= 0 && v < 1, 'a number in [0, 1)'),
    hotPrefixFactor: num(o, 'hotPrefixFactor', (v) => v === 0 || (Number.isFinite(v) && v >= 1), '0 (off) or a number >= 1'),
    affinity: parseAffinity(o['affinity']),
  };
}

function parseAffinity(raw: unknown): AffinityOptions | null {
  try {
    return affinityOptions(raw);
  } catch (err) {
    throw new SwitchyardError('invalid_request', `cache_aware: ${(err as Error).message}`);
  }
}

/** What the snapshot reports (and what the sharded host merges). */
export interface CacheAwareState {
  readonly options: CacheAwareOptions;
  readonly decisions: number;
  readonly cache_hits: number;
  readonly cache_misses: number;
  /** Decisions taken in the imbalanced branch (sgl_router_load_balancing_events_total). */
  readonly imbalanced: number;
  /** Cache hits sent to the least-loaded worker instead because their prefix was hot (hotPrefixFactor). */
  readonly hot_prefix_spills: number;
  /** Characters held per worker URL, summed over the models' trees (sgl_router_tree_size). */
  readonly tree_size: Readonly<Record<string, number>>;
  readonly trees: readonly { readonly model: string; readonly nodes: number; readonly chars: number; readonly entries: number }[];
  readonly evictions: { readonly runs: number; readonly evicted_chars: number; readonly last_at_ms: number };
  /** Sharing with other replicas, when on. */
  readonly affinity?: AffinityState | undefined;
}

export function createCacheAwarePolicy(options: PolicyFactoryOptions = {}): Policy {
  const o = cacheAwareOptions(options);
  const evictionMs = o.evictionIntervalSecs * 1000;
  const trees = new Map<string, RadixTree>();
  const candidates: WorkerInfo[] = [];
  let loads = new Float64Array(16);
  // Matched characters per tenant (= slot), written by the tree in one walk.
  let matched = new Int32Array(16);
  let members = new Map<number, WorkerInfo>(); // slot -> current member
  let decisions = 0;
  let hits = 0;
  let misses = 0;
  let imbalancedCount = 0;
  let hotSpills = 0;
  let evictionRuns = 0;
  let evictedChars = 0;
  let lastEviction = -1;
  const shardIndex = typeof options['shardIndex'] === 'number' ? options['shardIndex'] : 0;
  const shardCount = typeof options['shardCount'] === 'number' ? options['shardCount'] : 1;
  const share = o.affinity === null ? null : new AffinityShare(o.affinity, { index: shardIndex, count: shardCount });
  const blockChars = share === null ? 0 : share.blockChars;
  const probe = o.hotPrefixFactor > 0 ? new HotnessProbe(HOT_PREFIX_HALF_LIFE) : undefined;

  function treeFor(model: string | undefined): RadixTree {
    let key = model ?? DEFAULT_MODEL;
    let tree = trees.get(key);
    if (tree !== undefined) return tree;
    if (trees.size >= MAX_MODEL_TREES) {
      key = OVERFLOW_MODEL;
      tree = trees.get(key);
      if (tree !== undefined) return tree;
    }
    tree = new RadixTree({ maxTenantChars: o.maxTreeSize });
    trees.set(key, tree);
    return tree;
  }

  /** Index into candidates of the least loaded (random tie-break). */
  function leastLoaded(n: number, rng: Rng): number {
    let best = -1;
    let bestLoad = Infinity;
    let ties = 0;
    for (let i = 0; i < n; i++) {
      const l = loads[i] as number;
      if (l < bestLoad) {
        best = i;
        bestLoad = l;
        ties = 1;
      } else if (l === bestLoad && rng.next() * ++ties < 1) best = i;
    }
    return best;
  }

  /**
   * Index of the longest match among candidates with load <= bound; among those within `slack`
   * characters of it (ties: they hold the same prefix, as far as caching goes) the least loaded, a
   * random one among equal loads; -1 if none matched.
   */
  function longestMatch(n: number, bound: number, slack: number, rng: Rng): number {
    let bestLen = 0;
    for (let i = 0; i < n; i++) {
      if ((loads[i] as number) > bound) continue;
      const len = matched[(candidates[i] as WorkerInfo).slot] as number;
      if (len > bestLen) bestLen = len;
    }
    if (bestLen === 0) return -1;
    const floor = bestLen - slack > 1 ? bestLen - slack : 1;
    let best = -1;
    let bestLoad = Infinity;
    let ties = 0;
    for (let i = 0; i < n; i++) {
      const l = loads[i] as number;
      if (l > bound || (matched[(candidates[i] as WorkerInfo).slot] as number) < floor) continue;
      if (l < bestLoad) {
        best = i;
        bestLoad = l;
        ties = 1;
      } else if (l === bestLoad && rng.next() * ++ties < 1) best = i;
    }
    return best;
  }

  function ensureCapacity(n: number, maxSlot: number): void {
    if (loads.length < n) loads = new Float64Array(Math.max(n, loads.length * 2));
    if (matched.length <= maxSlot) matched = new Int32Array(Math.max(maxSlot + 1, matched.length * 2));
  }

  return {
    name: 'cache_aware',
    stateful: true,

    select(req: RequestFeatures, ctx: PolicyContext): Decision | null {
      const table = ctx.table;
      const n = collectAvailable(table, ctx.workers, candidates);
      if (n === 0) return null;
      let maxSlot = 0;
      for (let i = 0; i < n; i++) {
        const s = (candidates[i] as WorkerInfo).slot;
        if (s > maxSlot) maxSlot = s;
      }
      ensureCapacity(n, maxSlot);
      let minLoad = Infinity;
      let maxLoad = -Infinity;
      for (let i = 0; i < n; i++) {
        const l = table.peek((candidates[i] as WorkerInfo).slot, Field.InFlightRequests);
        loads[i] = l;
        if (l < minLoad) minLoad = l;
        if (l > maxLoad) maxLoad = l;
      }
      const imbalanced = maxLoad - minLoad > o.balanceAbsThreshold && maxLoad > minLoad * o.balanceRelThreshold;
      // A long text that crossed into this actor in pieces is matched and inserted piecewise, never joined
      // (except for sharing with other replicas, which hashes the whole text).
      const chunks = req.textChunks;
      const text = chunks === undefined ? req.text : '';
      const textChars = chunks === undefined ? text.length : chunksLength(chunks);
      const tree = treeFor(req.model);
      // One walk gives every worker's match; skipped when its answer cannot be used.
      const needMatch = textChars > 0 && (!imbalanced || o.balanceKeepLocality);
      if (needMatch) {
        if (probe !== undefined) probe.minChars = Math.floor(textChars * o.cacheThreshold) + 1;
        if (chunks === undefined) tree.prefixMatchTenants(text, matched, probe);
        else tree.prefixMatchTenantsChunks(chunks, matched, probe);
      }
      const now = ctx.now();
      // Other replicas' inserts: a worker's match is the larger of the tree's and the remote index's.
      let remoteRaised = false;
      if (needMatch && share !== null && textChars >= blockChars && share.lookup(req.text, req.model, maxSlot, now) > 0) {
        const depth = share.depth;
        for (let i = 0; i < n; i++) {
          const slot = (candidates[i] as WorkerInfo).slot;
          const d = depth[slot] as number;
          if (d === 0) continue;
          const chars = d * blockChars;
          if (chars > (matched[slot] as number)) {
            matched[slot] = chars;
            remoteRaised = true;
          } else depth[slot] = 0; // the tree knew as much: not a remote contribution
        }
      }
      const rng = ctx.rng;
      let pick = -1;
      let hit = false;
      let matchedChars = 0;
      if (needMatch) {
        const bound = imbalanced ? minLoad + o.balanceAbsThreshold : Infinity;
        const m = longestMatch(n, bound, Math.floor(textChars * o.tieTolerance), rng);
        if (m >= 0) {
          matchedChars = matched[(candidates[m] as WorkerInfo).slot] as number;
          if (matchedChars / textChars > o.cacheThreshold) {
            pick = m;
            hit = true;
          }
        }
      }
      // Hot prefix: more of the traffic crosses it than its holders' fair share, and all of them are
      // busier than the least loaded -> replicate it there (the tree learns the new holder below).
      let hotShare = 0;
      let holders = 0;
      let spilled = false;
      if (hit && !imbalanced && probe !== undefined && probe.holders > 0) {
        // With --policy-shards this is the share of this shard's recent requests. A prefix's requests all
        // meet in one shard, which sees only part of the traffic: the share overstates the fleet-wide one,
        // so a sharded router replicates a hot prefix a little early rather than too late (the load
        // condition below still requires every holder to be busier than the least loaded).
        hotShare = probe.share;
        holders = probe.holders;
        if (hotShare * n > holders * o.hotPrefixFactor && (loads[pick] as number) > minLoad) {
          spilled = true;
          hit = false;
          pick = leastLoaded(n, rng);
        }
      }
      if (pick < 0) pick = leastLoaded(n, rng);
      const w = candidates[pick] as WorkerInfo;
      const load = loads[pick] as number;
      const rate = textChars === 0 ? 0 : matchedChars / textChars;
      if (textChars > 0) {
        if (chunks === undefined) tree.insert(text, w.slot, now);
        else tree.insertChunks(chunks, w.slot, now);
      }
      let remoteChars = 0;
      if (share !== null) {
        if (remoteRaised) {
          remoteChars = (share.depth[w.slot] as number) * blockChars;
          share.countRemote(true, hit && remoteChars > 0);
        }
        if (textChars >= blockChars) share.record(req.text, req.model, w, needMatch ? (matched[w.slot] as number) : 0, now);
      }

      decisions++;
      if (hit) hits++;
      else misses++;
      if (imbalanced) imbalancedCount++;
      if (spilled) hotSpills++;
      const t = o.cacheThreshold.toFixed(2);
      let reason: string;
      if (spilled) {
        reason =
          `hot_prefix: match ${rate.toFixed(2)} > ${t}, but ${(hotShare * 100).toFixed(0)}% of recent requests share the prefix ` +
          `and ${holders} of ${n} workers hold it -> least loaded ${w.url} (load ${load}, min ${minLoad}, max ${maxLoad})`;
      } else if (!imbalanced) {
        reason = hit
          ? `cache_hit: match ${rate.toFixed(2)} > ${t} on worker ${w.url} (load ${load})${remoteChars > 0 ? ' (shared by another replica)' : ''}`
          : `cache_miss: match ${rate.toFixed(2)} <= ${t}; least loaded ${w.url} (load ${load}, min ${minLoad}, max ${maxLoad})`;
      } else {
        const head = `imbalanced: max ${maxLoad} min ${minLoad}`;
        reason = hit
          ? `${head}; cache_hit among loads <= ${minLoad + o.balanceAbsThreshold}: match ${rate.toFixed(2)} > ${t} on worker ${w.url} (load ${load})${remoteChars > 0 ? ' (shared by another replica)' : ''}`
          : `${head} -> least loaded ${w.url} (load ${load})`;
      }
      const scores: Record<string, number> = {
        match_rate: rate,
        matched_chars: matchedChars,
        text_chars: textChars,
        load,
        min_load: minLoad,
        max_load: maxLoad,
        cache_hit: hit ? 1 : 0,
        imbalanced: imbalanced ? 1 : 0,
        hot_prefix: spilled ? 1 : 0,
      };
      if (share !== null) scores['remote_chars'] = remoteChars;
      return decisionFor(w, reason, scores);
    },

    onWorkersChanged(ws: readonly WorkerInfo[]): void {
      const next = new Map<number, WorkerInfo>();
      for (const w of ws) next.set(w.slot, w);
      for (const [slot, old] of members) {
        const now = next.get(slot);
        // Gone, or the slot now holds another worker: what the tree says about the slot is stale.
        if (now === undefined || now.generation !== old.generation) for (const tree of trees.values()) tree.removeTenant(slot);
      }
      members = next;
      share?.setWorkers(ws);
    },

    tick(nowMs: number): void {
      if (lastEviction < 0) {
        lastEviction = nowMs;
        return;
      }
      if (nowMs - lastEviction < evictionMs) return;
      lastEviction = nowMs;
      evictionRuns++;
      for (const tree of trees.values()) evictedChars += tree.evictTenantsBySize(o.maxTreeSize).evictedChars;
    },

    snapshot(): CacheAwareState {
      const treeSize: Record<string, number> = {};
      for (const [slot, w] of members) {
        let chars = 0;
        for (const tree of trees.values()) chars += tree.tenantSize(slot);
        treeSize[w.url] = chars;
      }
      const list: { model: string; nodes: number; chars: number; entries: number }[] = [];
      for (const [model, tree] of trees) {
        const s = tree.size;
        list.push({ model: model === OVERFLOW_MODEL ? '(overflow)' : model, nodes: s.nodes, chars: s.totalChars, entries: s.entries });
      }
      return {
        options: o,
        decisions,
        cache_hits: hits,
        cache_misses: misses,
        imbalanced: imbalancedCount,
        hot_prefix_spills: hotSpills,
        tree_size: treeSize,
        trees: list,
        evictions: { runs: evictionRuns, evicted_chars: evictedChars, last_at_ms: lastEviction },
        ...(share === null ? {} : { affinity: share.snapshot() }),
      };
    },

    close(): void {
      share?.close();
    },
  };
}

/** The states of several shards as one (sums; per-worker tree sizes added up; trees listed per shard). */
export function mergeCacheAwareStates(states: readonly unknown[]): CacheAwareState | null {
  let out: CacheAwareState | null = null;
  const treeSize: Record<string, number> = {};
  let decisions = 0;
  let hits = 0;
  let misses = 0;
  let imbalanced = 0;
  let spills = 0;
  let runs = 0;
  let evicted = 0;
  let last = -1;
  const trees: CacheAwareState['trees'][number][] = [];
  const affinity: (AffinityState | undefined)[] = [];
  for (const raw of states) {
    if (raw === null || typeof raw !== 'object') continue;
    const s = raw as CacheAwareState;
    out ??= s;
    decisions += s.decisions;
    hits += s.cache_hits;
    misses += s.cache_misses;
    imbalanced += s.imbalanced;
    spills += s.hot_prefix_spills ?? 0;
    runs += s.evictions.runs;
    evicted += s.evictions.evicted_chars;
    if (s.evictions.last_at_ms > last) last = s.evictions.last_at_ms;
    for (const [url, chars] of Object.entries(s.tree_size)) treeSize[url] = (treeSize[url] ?? 0) + chars;
    trees.push(...s.trees);
    affinity.push(s.affinity);
  }
  if (out === null) return null;
  return {
    options: out.options,
    decisions,
    cache_hits: hits,
    cache_misses: misses,
    imbalanced,
    hot_prefix_spills: spills,
    tree_size: treeSize,
    trees,
    evictions: { runs, evicted_chars: evicted, last_at_ms: last },
    ...(out.affinity === undefined ? {} : { affinity: mergeAffinityStates(affinity) }),
  };
}
