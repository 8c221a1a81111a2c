/**
 * Cache-aware affinity across router replicas, the policy side (docs/deployment.md, docs/radix-tree.md).
 *
 * Each cache_aware policy (one per policy actor, or one per shard with --policy-shards) with the
 * `affinity` option:
 * - hashes the routing text of every request into a prefix chain (prefix-chain.ts);
 * - looks the chain up in its RemotePrefixIndex (what other replicas routed) and lets the policy take, per
 *   worker, the larger of its own tree's match and the remote one (whole blocks);
 * - after the decision, appends "this worker got blocks [known, n) of this chain" to an outbox, flushed
 *   every `flushMs` to the router's main thread, which publishes it to the other replicas (the relay in
 *   src/cluster/affinity.ts); blocks the chosen worker was already known to hold are not sent again;
 * - applies what the relay hands it from other replicas (records for the shard keys this shard owns);
 * - on request (Redis came back, a replica joined), publishes a bounded summary of what it published
 *   recently (its `published` index), so peers that missed batches catch up.
 *
 * Transport to the main thread: two BroadcastChannels per shard, `<channel>:out:<shard>` (batches out)
 * and `<channel>:in:<shard>` (remote batches and resync requests in). Opened on first use, so the
 * instance the host builds on the main thread only to validate options never joins; unref'd.
 */
import { PrefixChainHasher } from './prefix-chain.js';
import { packWorker, RemotePrefixIndex, type RemotePrefixIndexStats } from './remote-prefix-index.js';
import {
  broadcastAffinityPort,
  RECORD_HEADER_WORDS,
  SUMMARY_MIN_INTERVAL_MS,
  type AffinityBatch,
  type AffinityInMessage,
  type AffinityOptions,
  type AffinityPort,
  type AffinityState,
} from './affinity-protocol.js';
import { shardKeyOf } from './sharded-host.js';
import type { WorkerInfo } from './types.js';

export * from './affinity-protocol.js';

/** Hashes per record and records per batch of a summary (bounded Redis messages). */
const SUMMARY_RECORD_BLOCKS = 4096;
const SUMMARY_BATCH_WORDS = 1 << 17;
/** Decisions per refresh of the already-published blocks in the summary source. */
const TOUCH_EVERY = 8;
/** The outbox is flushed early past this many words. */
const OUTBOX_FLUSH_WORDS = 1 << 16;


export class AffinityShare {
  readonly options: AffinityOptions;
  readonly blockChars: number;
  readonly hasher: PrefixChainHasher;
  readonly remote: RemotePrefixIndex;
  /** What this shard published (bounded): the source of resynchronisation summaries. */
  private readonly published: RemotePrefixIndex;
  private readonly shardIndex: number;
  private readonly shardCount: number;
  private port: AffinityPort | null;
  private readonly makePort: (() => AffinityPort) | null;
  /** Remote match per slot of the last lookup, in blocks. */
  depth = new Int32Array(64);
  private hashedText: string | null = null;
  private hashedModel: string | undefined = undefined;
  private byUrl = new Map<string, number>();
  private urlBySlot: string[] = [];
  // outbox
  private out = new Int32Array(4096);
  private outLen = 0;
  private outUrls: string[] = [];
  private readonly outUrlIndex = new Map<string, number>();
  private flushTimer: NodeJS.Timeout | null = null;
  private readonly flushBound = (): void => this.flush();
  // summaries
  private lastSummaryAt = -Infinity;
  private summaryTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly now: () => number;
  // counters
  private touchTurn = 0;
  private hashed = 0;
  private hashedChars = 0;
  private remoteRaised = 0;
  private remoteHits = 0;
  private publishedRecords = 0;
  private publishedBlocks = 0;
  private receivedRecords = 0;
  private receivedBlocks = 0;
  private droppedRecords = 0;
  private summaries = 0;

  constructor(options: AffinityOptions, shard: { readonly index: number; readonly count: number }, deps: { port?: AffinityPort; now?: () => number } = {}) {
    this.options = options;
    this.blockChars = options.blockChars;
    this.hasher = new PrefixChainHasher(options.blockChars);
    this.remote = new RemotePrefixIndex({ maxEntries: options.maxEntries, ttlMs: options.ttlSecs * 1000 });
    this.published = new RemotePrefixIndex({ maxEntries: options.summaryMaxEntries, ttlMs: options.ttlSecs * 1000, tagged: true });
    this.shardIndex = shard.index;
    this.shardCount = shard.count;
    this.port = null;
    if (deps.port !== undefined) {
      const p = deps.port;
      this.makePort = () => p;
    } else if (options.channel !== '') {
      const channel = options.channel;
      this.makePort = () => broadcastAffinityPort(channel, shard.index);
    } else {
      this.makePort = null;
    }
    this.now = deps.now ?? (() => performance.timeOrigin + performance.now());
  }

  /** Membership changed: URL -> worker map, and entries naming departed workers stop matching. Opens the port. */
  setWorkers(ws: readonly WorkerInfo[]): void {
    const byUrl = new Map<string, number>();
    const urls: string[] = [];
    for (const w of ws) {
      byUrl.set(w.url, packWorker(w.slot, w.generation));
      urls[w.slot] = w.url;
    }
    this.byUrl = byUrl;
    this.urlBySlot = urls;
    this.remote.setMembers(ws);
    this.published.setMembers(ws);
    this.open();
  }

  private open(): void {
    if (this.port !== null || this.makePort === null || this.closed) return;
    this.port = this.makePort();
    this.port.onMessage((msg) => this.onMessage(msg));
    this.port.post({ t: 'hello' });
  }

  /**
   * Hash `text` (if not the text hashed last) and match its chain against the remote index: `depth[slot]`
   * = blocks of the text the remote index says that worker holds. Returns the longest run, in blocks.
   * `maxSlot` sizes `depth`.
   */
  lookup(text: string, model: string | undefined, maxSlot: number, nowMs: number): number {
    const n = this.hashText(text, model);
    if (this.depth.length <= maxSlot) this.depth = new Int32Array(Math.max(maxSlot + 1, this.depth.length * 2));
    this.depth.fill(0);
    if (n === 0 || this.remote.size === 0) return 0;
    return this.remote.match(this.hasher.chain, n, this.depth, nowMs);
  }

  /** Count a decision the remote index changed: `raised` (some match grew), `hit` (it decided the worker). */
  countRemote(raised: boolean, hit: boolean): void {
    if (raised) this.remoteRaised++;
    if (hit) this.remoteHits++;
  }

  private hashText(text: string, model: string | undefined): number {
    if (text === this.hashedText && model === this.hashedModel) return this.hasher.blocks;
    this.hashedText = text;
    this.hashedModel = model;
    const n = this.hasher.hash(text, model);
    if (n > 0) {
      this.hashed++;
      this.hashedChars += n * this.blockChars;
    }
    return n;
  }

  /**
   * `w` was chosen for `text`; it was already known (locally or remotely) to hold its first `knownChars`
   * characters. Queue the blocks beyond those for publication and remember them for summaries.
   */
  record(text: string, model: string | undefined, w: WorkerInfo, knownChars: number, nowMs: number): void {
    if (this.makePort === null) return; // nobody to tell
    const n = this.hashText(text, model);
    // Drop the reference to the text: the next request's text is another string anyway.
    this.hashedText = null;
    if (n === 0) return;
    const chain = this.hasher.chain;
    let skip = Math.floor(knownChars / this.blockChars);
    if (skip > n) skip = n;
    // Blocks already published stay fresh in the summary source while they are being used. One
    // decision in TOUCH_EVERY does it: a prefix in use is touched long before the CLOCK hand comes
    // round (a sweep takes tens of thousands of new blocks), at an eighth of the cost.
    if (skip > 0 && ++this.touchTurn % TOUCH_EVERY === 0) this.published.touch(chain, 0, skip, nowMs);
    if (skip === n) return;
    const packed = packWorker(w.slot, w.generation);
    const shardKey = shardKeyOf(text) | 0;
    for (let k = skip; k < n; k++) this.published.add(chain[2 * k] as number, chain[2 * k + 1] as number, packed, nowMs, shardKey);
    const count = n - skip;
    const need = this.outLen + RECORD_HEADER_WORDS + 2 * count;
    if (this.out.length < need) {
      let size = this.out.length * 2;
      while (size < need) size *= 2;
      const grown = new Int32Array(size);
      grown.set(this.out.subarray(0, this.outLen));
      this.out = grown;
    }
    const out = this.out;
    let p = this.outLen;
    out[p++] = this.urlIndex(w.url);
    out[p++] = shardKey;
    out[p++] = count;
    out.set(chain.subarray(2 * skip, 2 * n), p);
    this.outLen = p + 2 * count;
    this.publishedRecords++;
    this.publishedBlocks += count;
    if (this.outLen >= OUTBOX_FLUSH_WORDS) this.flush();
    else if (this.flushTimer === null) {
      this.flushTimer = setTimeout(this.flushBound, this.options.flushMs);
      this.flushTimer.unref?.();
    }
  }

  private urlIndex(url: string): number {
    let i = this.outUrlIndex.get(url);
    if (i === undefined) {
      i = this.outUrls.length;
      this.outUrls.push(url);
      this.outUrlIndex.set(url, i);
    }
    return i;
  }

  /** Send the outbox now (the timer does it `flushMs` after the first record). */
  flush(): void {
    if (this.flushTimer !== null) {
      clearTimeout(this.flushTimer);
      this.flushTimer = null;
    }
    if (this.outLen === 0) return;
    const batch: AffinityBatch = { v: 1, b: this.blockChars, u: this.outUrls, r: this.out.slice(0, this.outLen) };
    this.outLen = 0;
    this.outUrls = [];
    this.outUrlIndex.clear();
    this.port?.post({ t: 'batch', batch });
  }

  /** What the relay hands over. Exposed for tests (the port calls it). */
  onMessage(msg: AffinityInMessage): void {
    if (this.closed) return;
    if (msg.t === 'remote') this.apply(msg.batch, this.now());
    else if (msg.t === 'resync') this.requestSummary();
  }

  /** Apply a batch from another replica. Malformed records end the batch (counted), never throw. */
  apply(batch: AffinityBatch, nowMs: number): void {
    const r = batch.r;
    if (batch.v !== 1 || batch.b !== this.blockChars || !(r instanceof Int32Array) || !Array.isArray(batch.u)) {
      this.droppedRecords++;
      return;
    }
    const urls = batch.u;
    let p = 0;
    while (p + RECORD_HEADER_WORDS <= r.length) {
      const urlIdx = r[p] as number;
      const shardKey = (r[p + 1] as number) >>> 0;
      const count = r[p + 2] as number;
      const end = p + RECORD_HEADER_WORDS + 2 * count;
      if (count < 0 || end > r.length) {
        this.droppedRecords++;
        return;
      }
      const url = urls[urlIdx];
      const worker = typeof url === 'string' ? this.byUrl.get(url) : undefined;
      if (worker === undefined || (this.shardCount > 1 && shardKey % this.shardCount !== this.shardIndex)) {
        this.droppedRecords++;
      } else {
        for (let q = p + RECORD_HEADER_WORDS; q < end; q += 2) this.remote.add(r[q] as number, r[q + 1] as number, worker, nowMs);
        this.receivedRecords++;
        this.receivedBlocks += count;
      }
      p = end;
    }
  }

  /** A summary soon: at once, or SUMMARY_MIN_INTERVAL_MS after the last one (requests in between coalesce). */
  requestSummary(): void {
    if (this.summaryTimer !== null || this.closed) return;
    const wait = this.lastSummaryAt + SUMMARY_MIN_INTERVAL_MS - this.now();
    if (wait <= 0) {
      this.sendSummary();
      return;
    }
    this.summaryTimer = setTimeout(() => {
      this.summaryTimer = null;
      this.sendSummary();
    }, wait);
    this.summaryTimer.unref?.();
  }

  /** Everything live in `published`, grouped by (worker, shard key), in bounded batches. */
  sendSummary(): number {
    this.lastSummaryAt = this.now();
    this.flush();
    const port = this.port;
    if (port === null) return 0;
    const groups = new Map<number, Map<number, number[]>>();
    let entries = 0;
    this.published.forEachLive(this.lastSummaryAt, (hi, lo, worker, tag) => {
      let byShard = groups.get(worker);
      if (byShard === undefined) groups.set(worker, (byShard = new Map()));
      let list = byShard.get(tag);
      if (list === undefined) byShard.set(tag, (list = []));
      list.push(hi, lo);
      entries++;
    });
    let words: number[] = [];
    let urls: string[] = [];
    let urlIdx = new Map<string, number>();
    const send = (): void => {
      if (words.length === 0) return;
      port.post({ t: 'batch', batch: { v: 1, b: this.blockChars, u: urls, r: Int32Array.from(words) }, summary: true });
      words = [];
      urls = [];
      urlIdx = new Map();
    };
    for (const [worker, byShard] of groups) {
      const url = this.urlBySlot[worker & 0xffff];
      if (url === undefined) continue;
      for (const [tag, hashes] of byShard) {
        for (let i = 0; i < hashes.length; i += 2 * SUMMARY_RECORD_BLOCKS) {
          const part = hashes.slice(i, i + 2 * SUMMARY_RECORD_BLOCKS);
          if (words.length + RECORD_HEADER_WORDS + part.length > SUMMARY_BATCH_WORDS) send();
          let u = urlIdx.get(url);
          if (u === undefined) {
            u = urls.length;
            urls.push(url);
            urlIdx.set(url, u);
          }
          words.push(u, tag, part.length / 2);
          for (const x of part) words.push(x);
        }
      }
    }
    send();
    this.summaries++;
    return entries;
  }

  snapshot(): AffinityState {
    return {
      block_chars: this.blockChars,
      hashed: this.hashed,
      hashed_chars: this.hashedChars,
      remote_raised: this.remoteRaised,
      remote_hits: this.remoteHits,
      published_records: this.publishedRecords,
      published_blocks: this.publishedBlocks,
      received_records: this.receivedRecords,
      received_blocks: this.receivedBlocks,
      dropped_records: this.droppedRecords,
      summaries: this.summaries,
      remote: this.remote.stats(),
      published: this.published.stats(),
    };
  }

  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    if (this.summaryTimer !== null) clearTimeout(this.summaryTimer);
    this.summaryTimer = null;
    this.port?.close();
    this.port = null;
  }
}

/** Shards' affinity states as one (counters and sizes summed). */
export function mergeAffinityStates(states: readonly (AffinityState | undefined)[]): AffinityState | undefined {
  let out: AffinityState | undefined;
  for (const s of states) {
    if (s === undefined) continue;
    if (out === undefined) {
      out = s;
      continue;
    }
    const sum = (a: RemotePrefixIndexStats, b: RemotePrefixIndexStats): RemotePrefixIndexStats => ({
      entries: a.entries + b.entries,
      slots: a.slots + b.slots,
      max_entries: a.max_entries + b.max_entries,
      bytes: a.bytes + b.bytes,
      evicted: a.evicted + b.evicted,
      expired: a.expired + b.expired,
    });
    out = {
      block_chars: out.block_chars,
      hashed: out.hashed + s.hashed,
      hashed_chars: out.hashed_chars + s.hashed_chars,
      remote_raised: out.remote_raised + s.remote_raised,
      remote_hits: out.remote_hits + s.remote_hits,
      published_records: out.published_records + s.published_records,
      published_blocks: out.published_blocks + s.published_blocks,
      received_records: out.received_records + s.received_records,
      received_blocks: out.received_blocks + s.received_blocks,
      dropped_records: out.dropped_records + s.dropped_records,
      summaries: out.summaries + s.summaries,
      remote: sum(out.remote, s.remote),
      published: sum(out.published, s.published),
    };
  }
  return out;
}
