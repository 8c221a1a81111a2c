/**
 * The remote prefix index: what other router replicas routed, as "prefix hash -> worker(s)", consulted by
 * cache_aware beside its own radix tree (docs/radix-tree.md, "Remote prefix index").
 *
 * Keys are the 64-bit block hashes of prefix-chain.ts; a key present means a replica sent that prefix (all
 * of the text up to the end of that block) to the worker(s) stored with it. Each entry keeps the two most
 * recent distinct workers (a prefix every worker holds keeps two of them, enough to tie-break on load).
 *
 * Layout: an open-addressing table (linear probing, backward-shift deletion) in typed arrays, grown by
 * doubling up to twice `maxEntries` slots, so memory is bounded and predictable: 21 bytes per slot, at
 * most 42 bytes per entry at the bound (1M entries: ~44 MB). No objects per entry, nothing for the GC.
 *
 * Eviction: CLOCK, the usual approximation of LRU: a lookup or an add sets the entry's reference bit;
 * when the index is full, a hand sweeps the slots, clearing set bits and evicting the first entry whose
 * bit was clear. Entries also expire `ttlMs` after their last use (an idle prefix is probably gone from
 * the worker's cache too); expired entries read as absent and are overwritten or swept.
 *
 * Workers are packed as (generation & 0x7fff) << 16 | slot: a worker that left, or a slot reused by
 * another worker, stops matching as soon as setMembers says so, without touching the table.
 */

export interface RemotePrefixIndexOptions {
  /** Most entries held (each is one block of one prefix). */
  readonly maxEntries: number;
  /** An entry unused for this long reads as absent. */
  readonly ttlMs: number;
  /** Initial slot count (power of two; grows by doubling). */
  readonly initialSlots?: number;
  /** Keep a 32-bit tag per entry (the shard key, for resynchronisation summaries). */
  readonly tagged?: boolean;
}

export interface RemotePrefixIndexStats {
  readonly entries: number;
  readonly slots: number;
  readonly max_entries: number;
  readonly bytes: number;
  readonly evicted: number;
  readonly expired: number;
}

const EMPTY = 0;
const USED = 1;
const REFERENCED = 2;
const NO_WORKER = -1;
const MAX_SLOT = 0xffff;

export function packWorker(slot: number, generation: number): number {
  return ((generation & 0x7fff) << 16) | (slot & MAX_SLOT);
}

export class RemotePrefixIndex {
  readonly maxEntries: number;
  readonly ttlMs: number;
  private mask: number;
  private hi: Int32Array;
  private lo: Int32Array;
  private w1: Int32Array;
  private w2: Int32Array;
  /** Last use, in seconds of the caller's clock. */
  private used: Int32Array;
  private state: Uint8Array;
  /** Per-entry tag, only when `tagged` (else a zero-length array). */
  private tag: Int32Array;
  private readonly tagged: boolean;
  private count = 0;
  private hand = 0;
  private evicted = 0;
  private expired = 0;
  private readonly maxSlots: number;
  /** Current packed identity per worker slot (-1: not a member). */
  private members = new Int32Array(64).fill(-1);

  constructor(options: RemotePrefixIndexOptions) {
    const { maxEntries, ttlMs } = options;
    if (!(Number.isInteger(maxEntries) && maxEntries >= 1 && maxEntries <= 1 << 28)) throw new RangeError(`remote prefix index: maxEntries must be an integer in [1, 2^28], got ${String(maxEntries)}`);
    if (!(typeof ttlMs === 'number' && ttlMs > 0)) throw new RangeError(`remote prefix index: ttlMs must be positive, got ${String(ttlMs)}`);
    this.maxEntries = maxEntries;
    this.ttlMs = ttlMs;
    let max = 16;
    while (max < maxEntries * 2) max *= 2;
    this.maxSlots = max;
    let slots = options.initialSlots ?? 1024;
    if (slots > max) slots = max;
    this.mask = slots - 1;
    this.hi = new Int32Array(slots);
    this.lo = new Int32Array(slots);
    this.w1 = new Int32Array(slots);
    this.w2 = new Int32Array(slots);
    this.used = new Int32Array(slots);
    this.state = new Uint8Array(slots);
    this.tagged = options.tagged === true;
    this.tag = new Int32Array(this.tagged ? slots : 0);
  }

  get size(): number {
    return this.count;
  }

  stats(): RemotePrefixIndexStats {
    return {
      entries: this.count,
      slots: this.mask + 1,
      max_entries: this.maxEntries,
      bytes: (this.mask + 1) * (this.tagged ? 25 : 21) + this.members.byteLength,
      evicted: this.evicted,
      expired: this.expired,
    };
  }

  /** The current members: entries naming anyone else (or an older generation of a slot) stop matching. */
  setMembers(members: readonly { readonly slot: number; readonly generation: number }[]): void {
    let max = 0;
    for (const m of members) if (m.slot > max) max = m.slot;
    if (this.members.length <= max) this.members = new Int32Array(Math.max(max + 1, this.members.length * 2));
    this.members.fill(-1);
    for (const m of members) this.members[m.slot] = packWorker(m.slot, m.generation);
  }

  private isMember(packed: number): boolean {
    return packed >= 0 && this.members[packed & MAX_SLOT] === packed;
  }

  private home(hi: number, lo: number): number {
    return (Math.imul(hi ^ (lo >>> 15), 0x9e3779b1) ^ lo) & this.mask;
  }

  private find(hi: number, lo: number): number {
    const mask = this.mask;
    const state = this.state;
    let i = this.home(hi, lo);
    for (;;) {
      if (state[i] === EMPTY) return -1;
      if (this.hi[i] === hi && this.lo[i] === lo) return i;
      i = (i + 1) & mask;
    }
  }

  /** The caller's clock at the first use, minus a second: `used` stores whole seconds since then (fits Int32). */
  private originMs = Number.NaN;

  /** Seconds on the caller's clock since the origin (what `used` stores). */
  private secs(nowMs: number): number {
    if (this.originMs !== this.originMs) this.originMs = nowMs - 1000;
    return Math.floor((nowMs - this.originMs) / 1000);
  }

  private isExpired(i: number, nowS: number): boolean {
    return (nowS - (this.used[i] as number)) * 1000 > this.ttlMs;
  }

  /** Record that `worker` (packed) was sent the prefix named by (hi, lo); `tag` is kept when tagged. */
  add(hi: number, lo: number, worker: number, nowMs: number, tag = 0): void {
    const nowS = this.secs(nowMs);
    let i = this.find(hi, lo);
    if (i >= 0) {
      if (this.isExpired(i, nowS)) {
        this.expired++;
        this.w1[i] = worker;
        this.w2[i] = NO_WORKER;
      } else if (this.w1[i] !== worker) {
        // Most recent first; a stale (departed) second worker is simply pushed out.
        this.w2[i] = this.isMember(this.w1[i] as number) ? (this.w1[i] as number) : NO_WORKER;
        this.w1[i] = worker;
      }
      this.used[i] = nowS;
      this.state[i] = REFERENCED;
      if (this.tagged) this.tag[i] = tag;
      return;
    }
    if (this.count >= this.maxEntries) this.evictOne();
    else if ((this.count + 1) * 2 > this.mask + 1 && this.mask + 1 < this.maxSlots) this.grow();
    i = this.home(hi, lo);
    const mask = this.mask;
    while (this.state[i] !== EMPTY) i = (i + 1) & mask;
    this.hi[i] = hi;
    this.lo[i] = lo;
    this.w1[i] = worker;
    this.w2[i] = NO_WORKER;
    this.used[i] = nowS;
    this.state[i] = USED; // a new entry must earn its reference bit by being used
    if (this.tagged) this.tag[i] = tag;
    this.count++;
  }

  /**
   * Walk `chain` (hi/lo pairs of `blocks` blocks) from block 0 while its entries are present, live and
   * name a current member; for every worker met at block i, raise `depthOut[slot]` to i + 1 (blocks).
   * Returns the length of that run in blocks. Touches what it found (reference bit, last use).
   */
  match(chain: Int32Array, blocks: number, depthOut: Int32Array, nowMs: number): number {
    const nowS = this.secs(nowMs);
    const limit = depthOut.length;
    let k = 0;
    for (; k < blocks; k++) {
      const i = this.find(chain[2 * k] as number, chain[2 * k + 1] as number);
      if (i < 0) break;
      if (this.isExpired(i, nowS)) break;
      const a = this.w1[i] as number;
      const b = this.w2[i] as number;
      const liveA = this.isMember(a);
      const liveB = this.isMember(b);
      if (!liveA && !liveB) break;
      this.used[i] = nowS;
      this.state[i] = REFERENCED;
      if (liveA && (a & MAX_SLOT) < limit) depthOut[a & MAX_SLOT] = k + 1;
      if (liveB && (b & MAX_SLOT) < limit) depthOut[b & MAX_SLOT] = k + 1;
    }
    return k;
  }

  /** Set the reference bit and last use of the entries of `chain` blocks [from, to) that are present. */
  touch(chain: Int32Array, from: number, to: number, nowMs: number): void {
    const nowS = this.secs(nowMs);
    for (let k = from; k < to; k++) {
      const i = this.find(chain[2 * k] as number, chain[2 * k + 1] as number);
      if (i < 0) continue;
      this.used[i] = nowS;
      this.state[i] = REFERENCED;
    }
  }

  /** Whether (hi, lo) is present and live (tests, summaries). */
  has(hi: number, lo: number, nowMs: number): boolean {
    const i = this.find(hi, lo);
    return i >= 0 && !this.isExpired(i, this.secs(nowMs));
  }

  /**
   * Every live entry naming a current member, most recent worker only: `each(hi, lo, packedWorker, tag)`.
   * O(slots); for resynchronisation summaries, not for the request path.
   */
  forEachLive(nowMs: number, each: (hi: number, lo: number, worker: number, tag: number) => void): void {
    const nowS = this.secs(nowMs);
    for (let i = 0; i <= this.mask; i++) {
      if (this.state[i] === EMPTY || this.isExpired(i, nowS)) continue;
      const a = this.w1[i] as number;
      if (this.isMember(a)) each(this.hi[i] as number, this.lo[i] as number, a, this.tagged ? (this.tag[i] as number) : 0);
    }
  }

  clear(): void {
    this.state.fill(EMPTY);
    this.count = 0;
    this.hand = 0;
  }

  private evictOne(): void {
    const state = this.state;
    const mask = this.mask;
    // At most two sweeps: the first clears every reference bit it passes.
    for (let steps = 0; steps <= 2 * (mask + 1); steps++) {
      const i = this.hand;
      const s = state[i];
      if (s === REFERENCED) {
        state[i] = USED;
        this.hand = (i + 1) & mask;
      } else if (s === USED) {
        this.remove(i);
        this.evicted++;
        // The backward shift may have moved a later entry into i: the hand looks at it next time.
        return;
      } else {
        this.hand = (i + 1) & mask;
      }
    }
  }

  /** Backward-shift deletion: keep every entry reachable from its home slot without tombstones. */
  private remove(pos: number): void {
    const mask = this.mask;
    const state = this.state;
    let i = pos;
    state[i] = EMPTY;
    this.count--;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      if (state[j] === EMPTY) return;
      const k = this.home(this.hi[j] as number, this.lo[j] as number);
      // The entry at j may move to i only if i lies on its probe path, i.e. k is not in (i, j] cyclically.
      const stays = i <= j ? i < k && k <= j : i < k || k <= j;
      if (stays) continue;
      this.hi[i] = this.hi[j] as number;
      this.lo[i] = this.lo[j] as number;
      this.w1[i] = this.w1[j] as number;
      this.w2[i] = this.w2[j] as number;
      this.used[i] = this.used[j] as number;
      if (this.tagged) this.tag[i] = this.tag[j] as number;
      state[i] = state[j] as number;
      state[j] = EMPTY;
      i = j;
    }
  }

  private grow(): void {
    const oldHi = this.hi;
    const oldLo = this.lo;
    const oldW1 = this.w1;
    const oldW2 = this.w2;
    const oldUsed = this.used;
    const oldState = this.state;
    const oldTag = this.tag;
    const slots = (this.mask + 1) * 2;
    this.mask = slots - 1;
    this.hi = new Int32Array(slots);
    this.lo = new Int32Array(slots);
    this.w1 = new Int32Array(slots);
    this.w2 = new Int32Array(slots);
    this.used = new Int32Array(slots);
    this.state = new Uint8Array(slots);
    this.tag = new Int32Array(this.tagged ? slots : 0);
    this.hand = 0;
    const mask = this.mask;
    for (let j = 0; j < oldState.length; j++) {
      if (oldState[j] === EMPTY) continue;
      const hi = oldHi[j] as number;
      const lo = oldLo[j] as number;
      let i = this.home(hi, lo);
      while (this.state[i] !== EMPTY) i = (i + 1) & mask;
      this.hi[i] = hi;
      this.lo[i] = lo;
      this.w1[i] = oldW1[j] as number;
      this.w2[i] = oldW2[j] as number;
      this.used[i] = oldUsed[j] as number;
      this.state[i] = oldState[j] as number;
      if (this.tagged) this.tag[i] = oldTag[j] as number;
    }
  }
}
