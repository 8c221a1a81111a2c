/**
 * Cache-aware affinity over Redis pub/sub: the AffinityBus on RedisLink, and what the router calls to
 * switch sharing on (docs/deployment.md, "Cache affinity across replicas").
 *
 * One channel, `<prefix>affinity`. RedisLink packs messages with msgpackr, which does not carry an
 * Int32Array faithfully in its default mode, so record arrays travel as their bytes (little-endian, the
 * order of every machine Node runs on in practice) and are copied back into an aligned Int32Array on
 * receipt. Publishing is fire and forget: while Redis is down nothing is sent (counted by the relay) and
 * the resync hook, run when the link comes back, triggers the summaries.
 */
import type { Logger } from '../util/log.js';
import type { Cluster } from './setup.js';
import type { RedisLink } from './redis-link.js';
import { AffinityRelay, newAffinityChannel, type AffinityBus, type AffinityRelayStats, type AffinityWire } from './affinity.js';
import { AFFINITY_DEFAULTS, type AffinityOptions } from '../policies/affinity.js';
import { isValidBlockChars } from '../policies/prefix-chain.js';
import { SwitchyardError } from '../errors.js';
import { PromWriter } from '../metrics/prom-text.js';

export const AFFINITY_CHANNEL = 'affinity';

/** A batch's record array as bytes for the wire. */
function toBytes(r: Int32Array): Uint8Array {
  return new Uint8Array(r.buffer, r.byteOffset, r.byteLength);
}

/** Bytes from the wire back to records (copied: msgpackr hands out unaligned views); null if malformed. */
export function fromBytes(b: unknown): Int32Array | null {
  if (!(b instanceof Uint8Array) || b.byteLength % 4 !== 0) return null;
  const out = new Int32Array(b.byteLength / 4);
  new Uint8Array(out.buffer).set(b);
  return out;
}

/** The wire message as RedisLink will pack it (records as bytes). */
export function encodeWire(msg: AffinityWire): unknown {
  if (msg.k !== 'batch') return msg;
  const { batch } = msg;
  return { k: 'batch', o: msg.o, summary: msg.summary === true, batch: { v: batch.v, b: batch.b, u: batch.u, r: toBytes(batch.r) } };
}

/** A received message back to an AffinityWire; null when it is not one. */
export function decodeWire(data: unknown): AffinityWire | null {
  if (data === null || typeof data !== 'object') return null;
  const m = data as Record<string, unknown>;
  if (typeof m['o'] !== 'string') return null;
  if (m['k'] === 'hello') return { k: 'hello', o: m['o'] };
  if (m['k'] !== 'batch') return null;
  const batch = m['batch'] as Record<string, unknown> | null;
  if (batch === null || typeof batch !== 'object') return null;
  const r = fromBytes(batch['r']);
  const u = batch['u'];
  if (r === null || !Array.isArray(u) || typeof batch['b'] !== 'number' || batch['v'] !== 1) return null;
  return { k: 'batch', o: m['o'], summary: m['summary'] === true, batch: { v: 1, b: batch['b'], u: u as string[], r } };
}

export class RedisAffinityBus implements AffinityBus {
  private readonly link: RedisLink;
  private readonly channel: string;
  /** Messages that were not affinity messages (another version of the format, garbage). */
  malformed = 0;

  constructor(link: RedisLink, channel = AFFINITY_CHANNEL) {
    this.link = link;
    this.channel = channel;
  }

  get up(): boolean {
    return this.link.up;
  }

  publish(msg: AffinityWire): boolean {
    if (!this.link.up) return false;
    this.link.publish(this.channel, encodeWire(msg));
    return true;
  }

  onMessage(cb: (msg: AffinityWire) => void): void {
    this.link.subscribe(this.channel, (data) => {
      const msg = decodeWire(data);
      if (msg === null) this.malformed++;
      else cb(msg);
    });
  }

  onUp(cb: () => void): void {
    // The link runs resync hooks at the first connection and after every outage.
    this.link.onResync('affinity', cb);
    if (this.link.up) queueMicrotask(cb);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

export interface AffinitySharingOptions {
  readonly affinityBlockChars: number;
  readonly affinityMaxEntries: number;
  readonly affinityTtlSecs: number;
  readonly policyShards: number;
}

export interface AffinitySharing {
  /** The cache_aware policy's `affinity` option. */
  readonly policyOption: AffinityOptions;
  readonly relay: AffinityRelay;
}

/** Start sharing cache_aware insert decisions through the cluster's Redis; the part closes with the cluster. */
export function attachAffinity(cluster: Cluster, opts: AffinitySharingOptions, log: Logger): AffinitySharing {
  if (!isValidBlockChars(opts.affinityBlockChars)) {
    throw new SwitchyardError('invalid_request', `--affinity-block-chars must be a multiple of 8 in [16, 65536], got ${opts.affinityBlockChars}`);
  }
  const channel = newAffinityChannel();
  const bus = new RedisAffinityBus(cluster.link);
  const relay = new AffinityRelay(bus, { channel, shards: opts.policyShards, replicaId: cluster.link.replicaId, logger: log });
  cluster.attach({
    name: 'affinity',
    metricsText: () => affinityMetricsText(relay.stats(), bus.malformed),
    close: () => relay.close(),
  });
  return {
    relay,
    policyOption: {
      ...AFFINITY_DEFAULTS,
      channel,
      blockChars: opts.affinityBlockChars,
      maxEntries: opts.affinityMaxEntries,
      ttlSecs: opts.affinityTtlSecs,
    },
  };
}

export function affinityMetricsText(s: AffinityRelayStats, malformed: number): string {
  const w = new PromWriter();
  const counter = (name: string, help: string, v: number): void => {
    w.family(name, 'counter', help);
    w.sample(name, '', v);
  };
  counter('switchyard_affinity_published_batches_total', 'Batches of cache_aware insert decisions published to the other replicas (summaries included)', s.published_batches);
  counter('switchyard_affinity_published_records_total', 'Insert decisions (records) published to the other replicas', s.published_records);
  counter('switchyard_affinity_summary_batches_total', 'Batches of resynchronisation summaries published', s.summary_batches);
  counter('switchyard_affinity_unpublished_batches_total', 'Batches not published because Redis was down (their prefixes go out with the next summary)', s.unpublished_batches);
  counter('switchyard_affinity_received_batches_total', 'Batches received from the other replicas', s.received_batches);
  counter('switchyard_affinity_received_records_total', 'Insert decisions received from the other replicas', s.received_records);
  counter('switchyard_affinity_malformed_total', 'Messages on the affinity channel that could not be decoded', malformed);
  return w.text();
}
