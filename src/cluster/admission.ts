/**
 * Global admission limits across router replicas (issue 9, docs/deployment.md "Admission").
 *
 * --max-concurrent-requests and --rate-limit-tokens-per-second are fleet-wide with --redis-url: each
 * replica holds a lease on a share of them in Redis (admission-lease.lua.ts) and its local admission
 * (src/frontend/admission.ts, or the front-end threads' shared limits) enforces that share with today's
 * wait queue and timeouts. Nothing on a request's path touches Redis: a timer renews the lease every
 * `intervalMs` (default 100 ms), reporting what the replica uses and has waiting; the lease expires after
 * `leaseMs` (default 2 s: renewals 0.4-0.6 s apart were measured on a loaded 2-core machine, and a lease
 * that expires under a replica still running requests lets the others exceed the limit) without a
 * renewal, and the share of a replica that died is then reclaimed.
 *
 * - Growing: a replica with waiters asks for more (its target); it gets what the others leave unused,
 *   max-min fair among replicas that all want more.
 * - Shrinking: a replica admits up to min(grant, fair allocation); its grant in Redis covers what it may
 *   be running (the floor it reports: its local limit, or more while requests admitted under a larger
 *   share finish), so the sum of grants never falls below what the replicas may be running, and a
 *   replica over its allocation gives the difference back as its requests end.
 * - Rate: the refill rate and bucket capacity are split the same way, by weight (active replicas 1, idle
 *   ones 0.1): a Redis bucket would cost a round trip per refill on the request path; a share costs none.
 * - Fallback: with Redis down (or no renewal answered for a lease period) the replica enforces
 *   ceil(global / the most replicas seen in the last 10 s) (or --cluster-replicas when larger, e.g.
 *   before any renewal), logs it once, sets switchyard_cluster_admission_fallback to 1, and takes a lease again
 *   when Redis is back (the link's resync hook renews at once).
 */
import type { Logger } from '../util/log.js';
import type { AdmissionLimiter } from '../frontend/admission.js';
import type { Cluster } from './setup.js';
import type { RedisLink, ScriptRunner } from './redis-link.js';
import { ADMISSION_LEASE_LUA } from './admission-lease.lua.js';
import { PromWriter } from '../metrics/prom-text.js';

export interface GlobalAdmissionOptions {
  /** Fleet-wide --max-concurrent-requests (<= 0: none). */
  readonly maxConcurrent: number;
  /** Fleet-wide --rate-limit-tokens-per-second (undefined or <= 0: none). */
  readonly ratePerSecond?: number | undefined;
  /** Fleet-wide bucket capacity (default as AdmissionLimits: maxConcurrent, else one second's worth). */
  readonly rateBurst?: number | undefined;
  /** Replicas assumed before any renewal and as a floor while Redis is down (0: count from the leases). */
  readonly replicasHint?: number;
  /** Renewal period (default 100 ms). */
  readonly intervalMs?: number;
  /** A lease not renewed for this long expires (default 2000 ms). */
  readonly leaseMs?: number;
}

export interface GlobalAdmissionStats {
  readonly leased: boolean;
  readonly fallback: boolean;
  readonly concurrency_share: number;
  readonly rate_share: number;
  readonly replicas: number;
  readonly renewals: number;
  readonly renewal_failures: number;
  readonly fallbacks: number;
  /** Renewals that found this replica's lease expired (its share may have gone to others meanwhile). */
  readonly leases_lost: number;
  /** Longest time between two answered renewals (ms): what an expired lease comes from. */
  readonly max_renewal_gap_ms: number;
}

const LEASES_KEY = 'admission:leases';
/** How long a replica count stays "seen recently". */
const RECENT_MS = 10_000;
const EPOCH_KEY = 'admission:epoch';

export class GlobalAdmission {
  readonly limit: number;
  readonly rate: number;
  readonly burst: number;
  private readonly intervalMs: number;
  private readonly leaseMs: number;
  private readonly hint: number;
  private readonly headroom: number;
  private readonly run: ScriptRunner;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private closed = false;
  /** The local concurrency limit now (the grant, or the fallback limit). */
  private share: number;
  /** `share` as set by the last renewal or fallback (stats, metrics). */
  private shown = 0;
  private rateShare: number;
  /** The fair allocation the last renewal computed (what this replica shrinks towards). */
  private allocation: number;
  /** Replicas holding a lease at the last renewal. */
  private replicas: number;
  /** The most replicas seen within RECENT_MS (the fallback split and the settling hint use it). */
  private recentReplicas: number;
  private recentReplicasAt = Number.NEGATIVE_INFINITY;
  private lastOkSentAt = Number.NEGATIVE_INFINITY;
  private admittedAtLastRenewal = 0;
  private leased = false;
  private inFallback = false;
  private everLeased = false;
  private renewals = 0;
  private renewalFailures = 0;
  private fallbacks = 0;
  private leasesLost = 0;
  private lostLoggedAt = Number.NEGATIVE_INFINITY;
  private maxGap = 0;

  constructor(
    private readonly link: RedisLink,
    private readonly limiter: AdmissionLimiter,
    options: GlobalAdmissionOptions,
    private readonly log: Logger,
  ) {
    this.limit = options.maxConcurrent > 0 ? Math.floor(options.maxConcurrent) : 0;
    this.rate = options.ratePerSecond !== undefined && options.ratePerSecond > 0 ? options.ratePerSecond : 0;
    this.burst = this.rate > 0 ? Math.max(1, options.rateBurst ?? (this.limit > 0 ? this.limit : this.rate)) : 0;
    this.intervalMs = options.intervalMs ?? 100;
    this.leaseMs = options.leaseMs ?? 2000;
    this.hint = Math.max(1, options.replicasHint ?? 1);
    this.headroom = Math.max(1, Math.ceil((this.limit * 0.05) / this.hint));
    this.replicas = this.hint;
    this.recentReplicas = this.hint;
    this.run = link.script('admission-lease', ADMISSION_LEASE_LUA, 2);
    // Until the first lease: the fallback split (quietly; the link logs an unreachable Redis itself).
    this.share = this.fallbackShare();
    this.allocation = this.share;
    this.rateShare = this.rate / this.replicas;
    this.applyLocal();
    link.onResync('admission', () => {
      this.start();
      return this.renew();
    });
    link.onStateChange((s) => {
      if (s === 'down') this.fallback('Redis unreachable');
    });
  }

  /**
   * Renew on a timer from the first connection on (the link's resync hook also renews at once, at the
   * first connection and whenever Redis is back). Until then the replica enforces the fallback split.
   */
  private start(): void {
    if (this.timer !== undefined || this.closed) return;
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
    this.timer.unref();
  }

  stats(): GlobalAdmissionStats {
    return {
      leased: this.leased,
      fallback: this.inFallback || !this.leased,
      // the share as of the last renewal (during one, the local limit is briefly the target: see renewOnce)
      concurrency_share: this.limit > 0 ? this.shown : 0,
      rate_share: this.rateShare,
      replicas: this.replicas,
      renewals: this.renewals,
      renewal_failures: this.renewalFailures,
      fallbacks: this.fallbacks,
      leases_lost: this.leasesLost,
      max_renewal_gap_ms: Math.round(this.maxGap),
    };
  }

  metricsText(): string {
    const s = this.stats();
    const w = new PromWriter();
    const one = (name: string, type: 'gauge' | 'counter', help: string, v: number): void => {
      w.family(name, type, help);
      w.sample(name, '', v);
    };
    if (this.limit > 0) one('switchyard_cluster_admission_share', 'gauge', "This replica's share of the global --max-concurrent-requests (its local limit now)", s.concurrency_share);
    if (this.rate > 0) one('switchyard_cluster_admission_rate_share', 'gauge', "This replica's share of the global --rate-limit-tokens-per-second (requests per second)", s.rate_share);
    one('switchyard_cluster_admission_replicas', 'gauge', 'Replicas holding an admission lease at the last renewal (this one included)', s.replicas);
    one('switchyard_cluster_admission_lease_renewals_total', 'counter', 'Admission lease renewals answered by Redis', s.renewals);
    one('switchyard_cluster_admission_lease_failures_total', 'counter', 'Admission lease renewals that failed (Redis down, timeout)', s.renewal_failures);
    one('switchyard_cluster_admission_fallback', 'gauge', '1 while this replica enforces a local split of the global limits (no lease: Redis down)', s.fallback ? 1 : 0);
    one('switchyard_cluster_admission_fallbacks_total', 'counter', 'Times this replica fell back from a lease to the local split', s.fallbacks);
    one('switchyard_cluster_admission_leases_lost_total', 'counter', "Renewals that found this replica's lease expired (not renewed within the lease period: its share may have gone to others)", s.leases_lost);
    return w.text();
  }

  /** Stop renewing and give the share back (others may take it at once). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    await this.inFlight?.catch(() => undefined);
    if (this.leased && this.link.up) await this.run([this.link.key(LEASES_KEY), this.link.key(EPOCH_KEY)], [this.link.replicaId, this.limit, this.leaseMs, 0, 0, 0, 1, 1]);
  }

  private tick(): void {
    if (this.closed || this.inFlight !== undefined) return;
    if (!this.link.up) {
      this.renewalFailures++; // not even tried: the link knows Redis is down
      this.fallback('Redis unreachable');
      return;
    }
    void this.renew();
  }

  /** One renewal (never two at once). */
  private renew(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.inFlight ??= this.renewOnce().finally(() => (this.inFlight = undefined));
    return this.inFlight;
  }

  private async renewOnce(): Promise<void> {
    const limiter = this.limiter;
    const admitted = limiter.stats.admitted;
    const activeForRate = admitted !== this.admittedAtLastRenewal || limiter.queued > 0 || limiter.active > 0;
    let floor = 0;
    let target = 0;
    if (this.limit > 0) {
      const used = limiter.active;
      target = Math.max(used, Math.min(this.limit, used + limiter.queued + this.headroom));
      // Less wanted than the local limit allows: lower it BEFORE reporting (the script may hand the rest
      // to others). The floor is what this replica may be running until the reply: its local limit, or
      // more while requests admitted under an earlier, larger share finish.
      const lowered = Math.min(this.share, target);
      if (lowered < this.share) {
        this.share = lowered;
        limiter.setConcurrencyLimit(lowered);
      }
      floor = Math.max(this.share, limiter.active); // read after lowering: front-end threads admit meanwhile
    }
    const sentAt = performance.now();
    const hint = Math.max(this.hint, this.recentReplicas);
    const reply = await this.run([this.link.key(LEASES_KEY), this.link.key(EPOCH_KEY)], [this.link.replicaId, this.limit, this.leaseMs, floor, target, activeForRate ? 1 : 0, hint, 0]);
    if (this.closed) return;
    const parsed = parseReply(reply);
    if (parsed === undefined) {
      this.renewalFailures++;
      // The local limit may have been lowered to the floor: keep it until a lease is known again,
      // or fall back once the lease can no longer be trusted.
      if (performance.now() - this.lastOkSentAt > this.leaseMs || !this.leased) this.fallback(this.link.up ? 'admission lease renewal failed' : 'Redis unreachable');
      return;
    }
    this.renewals++;
    if (this.leased) {
      this.maxGap = Math.max(this.maxGap, sentAt - this.lastOkSentAt);
      if (!parsed.present) {
        // Not renewed within the lease period (an event-loop stall, a slow Redis): the others may have
        // been granted this replica's share meanwhile, and what it still runs is over the limit until it ends.
        this.leasesLost++;
        if (sentAt - this.lostLoggedAt > 10_000) {
          this.lostLoggedAt = sentAt;
          this.log.warn({ event: 'admission.lease_lost', replica: this.link.replicaId, gap_ms: Math.round(sentAt - this.lastOkSentAt), lease_ms: this.leaseMs, lost: this.leasesLost }, 'admission: the lease expired before it was renewed');
        }
      }
    }
    this.lastOkSentAt = sentAt;
    this.admittedAtLastRenewal = admitted;
    this.replicas = parsed.replicas;
    // A replica coming back after a Redis restart sees the others register one by one: remember how
    // many there were, so nobody is granted more than an even split while they do.
    if (parsed.replicas >= this.recentReplicas || sentAt - this.recentReplicasAt > RECENT_MS) {
      this.recentReplicas = parsed.replicas;
      this.recentReplicasAt = sentAt;
    }
    this.allocation = parsed.allocation;
    // The grant covers what may still be running; admit only up to the fair allocation (so a replica
    // over its allocation shrinks as its requests end, and the next floor it reports is lower).
    if (this.limit > 0) this.share = Math.min(parsed.granted, parsed.allocation);
    this.rateShare = this.rate * parsed.rateFraction;
    this.applyLocal();
    if (!this.leased) {
      this.leased = true;
      if (this.inFallback) {
        this.inFallback = false;
        this.log.warn({ event: 'admission.lease', replica: this.link.replicaId, share: this.share, replicas: this.replicas }, 'admission: back on a lease of the global limits');
      } else if (!this.everLeased) {
        this.log.info({ event: 'admission.lease', replica: this.link.replicaId, share: this.share, replicas: this.replicas }, 'admission: global limits shared through Redis');
      }
      this.everLeased = true;
    }
  }

  private fallbackShare(): number {
    return this.limit > 0 ? Math.ceil(this.limit / Math.max(this.hint, this.recentReplicas)) : 0;
  }

  /** Enforce ceil(global / replicas seen) locally; logged once per outage. */
  private fallback(reason: string): void {
    if (this.closed || this.inFallback) return;
    const wasLeased = this.leased;
    this.leased = false;
    this.inFallback = true;
    this.fallbacks++;
    const n = Math.max(this.hint, this.recentReplicas);
    this.share = this.fallbackShare();
    this.allocation = this.share;
    this.rateShare = this.rate / n;
    this.applyLocal();
    this.log.warn(
      { event: 'admission.fallback', replica: this.link.replicaId, reason, replicas: n, local_limit: this.limit > 0 ? this.share : undefined, local_rate: this.rate > 0 ? this.rateShare : undefined, was_leased: wasLeased },
      `admission: ${reason}; enforcing 1/${n} of the global limits locally until Redis is back`,
    );
  }

  private applyLocal(): void {
    this.shown = this.share;
    if (this.limit > 0) this.limiter.setConcurrencyLimit(this.share);
    if (this.rate > 0) {
      const fraction = this.rateShare / this.rate;
      // A rate of 0 means "no limit" to the limiter: a replica always keeps a sliver.
      this.limiter.setRate(Math.max(this.rateShare, 1e-3), Math.max(1, this.burst * fraction));
    }
  }
}

function parseReply(reply: unknown): { granted: number; allocation: number; replicas: number; rateFraction: number; present: boolean } | undefined {
  if (!Array.isArray(reply) || reply.length < 5) return undefined;
  const [g, a, n, f, present] = reply as unknown[];
  const rateFraction = Number(typeof f === 'string' || Buffer.isBuffer(f) ? f.toString() : f);
  if (typeof g !== 'number' || typeof a !== 'number' || typeof n !== 'number' || !Number.isFinite(rateFraction)) return undefined;
  return { granted: g, allocation: a, replicas: Math.max(1, n), rateFraction: Math.min(1, Math.max(0, rateFraction)), present: present === 1 };
}

/** Share the global limits of `limiter` through the cluster's Redis; the part closes with the cluster. */
export function attachGlobalAdmission(cluster: Cluster, limiter: AdmissionLimiter, options: GlobalAdmissionOptions, log: Logger): GlobalAdmission {
  const g = new GlobalAdmission(cluster.link, limiter, options, log);
  cluster.attach({ name: 'admission', metricsText: () => g.metricsText(), close: () => g.close() });
  return g;
}
