/**
 * Hash chains of request text, the compact form in which router replicas tell each other where a prefix
 * was routed (cache-aware affinity across replicas, docs/radix-tree.md "Remote prefix index").
 *
 * The text is cut into fixed blocks of `blockChars` UTF-16 code units (only full blocks count) and block i
 * gets a 64-bit hash h_i = H(h_{i-1}, block_i), h_{-1} derived from the model name. So h_i names the whole
 * prefix up to the end of block i: two texts share h_i exactly when they share their first (i + 1) blocks
 * (up to hash collisions), and a replica that learns "h_i -> worker W" knows W was sent that prefix.
 *
 * Cost: linear and native-assisted. The text is written into a reused byte buffer with one native
 * `Buffer.write(..., 'utf16le')` (~13 us for 200 KB) and hashed as 32-bit words (two code units each) by
 * four independent multiply-rotate lanes, which the CPU runs in parallel; each block ends with a
 * murmur-style finaliser folding the lanes into the two 32-bit halves that seed the next block. Measured
 * ~0.55 ns per character (~110 us for 200 KB; a `charCodeAt` loop costs ~3.8 ns per character). And most
 * of it is skipped in the common case: the hasher remembers recent texts by their first block (bounded in
 * count and characters), and the blocks a new text shares with one of them (a system prompt) keep their
 * hashes (commonBlocks finds them with native string equality at ~0.1 ns per character). Not a
 * cryptographic hash: a client that crafts a collision only steers its own request's routing.
 *
 * Word order is the machine's (little-endian everywhere Node runs in practice); replicas of one deployment
 * must agree on it and on `blockChars`, which every published batch carries.
 */

export const DEFAULT_AFFINITY_BLOCK_CHARS = 128;
export const MIN_AFFINITY_BLOCK_CHARS = 16;
export const MAX_AFFINITY_BLOCK_CHARS = 65536;

const M1 = 0xcc9e2d51 | 0;
const M2 = 0x1b873593 | 0;
const M3 = 0x85ebca6b | 0;
const M4 = 0xc2b2ae35 | 0;

/** Block sizes the hasher accepts: multiples of 8 (four lanes of two code units) in [16, 65536]. */
export function isValidBlockChars(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= MIN_AFFINITY_BLOCK_CHARS && n <= MAX_AFFINITY_BLOCK_CHARS && n % 8 === 0;
}

/** The two 32-bit halves every chain of `model` starts from (FNV-1a over the name, two ways). */
function seedHalves(model: string, out: Int32Array): void {
  let a = 0x811c9dc5 | 0;
  let b = 0x9747b28c | 0;
  for (let i = 0; i < model.length; i++) {
    const c = model.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, M1);
  }
  out[0] = a;
  out[1] = b ^ model.length;
}

/**
 * Computes the chain of a text into `chain` (block i at [2i] = high half, [2i + 1] = low half). One
 * instance per thread: it reuses its buffers, so `chain` is valid until the next `hash` call.
 */
export class PrefixChainHasher {
  readonly blockChars: number;
  /** The last text's chain: 2 x `blocks` Int32 values (grown as needed, never shrunk). */
  chain = new Int32Array(256);
  /** Blocks of the last text hashed. */
  blocks = 0;
  private bytes: Buffer;
  private words: Int32Array;
  private readonly seed = new Int32Array(2);
  private seedModel: string | undefined = undefined;

  /**
   * `reuse`: most recent texts remembered for prefix reuse, one per distinct first block (0: hash every
   * text whole); `reuseChars`: bound on their total length (the strings are kept alive).
   */
  constructor(blockChars = DEFAULT_AFFINITY_BLOCK_CHARS, reuse = 128, reuseChars = 1 << 22) {
    if (!isValidBlockChars(blockChars)) throw new RangeError(`prefix chain: block size must be a multiple of 8 in [16, 65536], got ${String(blockChars)}`);
    this.blockChars = blockChars;
    this.reuse = reuse;
    this.reuseChars = reuseChars;
    this.bytes = Buffer.allocUnsafeSlow(64 * 1024);
    this.words = new Int32Array(this.bytes.buffer, this.bytes.byteOffset, this.bytes.length >> 2);
  }

  /** Full blocks of a text of `chars` code units. */
  blocksOf(chars: number): number {
    return Math.floor(chars / this.blockChars);
  }

  /**
   * Hash every full block of `text` under `model` ('' or undefined: the default model); returns the block
   * count. When a recent text began with the same first block, the blocks both share (found by native
   * string comparison, ~0.1 ns per character) keep that text's hashes and only the rest is hashed: a long
   * shared system prompt is hashed once, not once per request.
   */
  hash(text: string, model: string | undefined): number {
    const B = this.blockChars;
    const n = Math.floor(text.length / B);
    this.blocks = n;
    if (n === 0) return 0;
    if (this.chain.length < 2 * n) {
      let size = this.chain.length;
      while (size < 2 * n) size *= 2;
      this.chain = new Int32Array(size);
    }
    const m = model ?? '';
    if (m !== this.seedModel) {
      seedHalves(m, this.seed);
      this.seedModel = m;
    }
    const chain = this.chain;
    this.hashRange(text, 0, 1, this.seed[0] as number, this.seed[1] as number);
    let done = 1;
    if (this.reuse > 0 && n > 1) {
      const key = (chain[0] as number) * 4096 + ((chain[1] as number) >>> 20);
      const prev = this.recent.get(key);
      if (prev !== undefined) {
        const common = commonBlocks(text, prev.text, B, n < prev.blocks ? n : prev.blocks);
        if (common > 1) {
          chain.set(prev.chain.subarray(2, 2 * common), 2);
          done = common;
          this.reusedBlocks += common - 1;
        }
        this.recent.delete(key);
      }
      if (done < n) this.hashRange(text, done, n, chain[2 * done - 2] as number, chain[2 * done - 1] as number);
      this.remember(key, text, n, prev);
      return n;
    }
    if (n > 1) this.hashRange(text, 1, n, chain[0] as number, chain[1] as number);
    return n;
  }

  /** Blocks whose hashes came from an earlier text (counter, for measurements). */
  reusedBlocks = 0;
  /** Recent texts by their first block (insertion order = recency), with their chains. */
  private readonly recent = new Map<number, RecentChain>();
  private readonly reuse: number;
  private readonly reuseChars: number;
  private recentChars = 0;

  private remember(key: number, text: string, n: number, reusable: RecentChain | undefined): void {
    let entry = reusable;
    if (entry !== undefined) this.recentChars -= entry.text.length;
    // Oldest first out, while over either bound (`reusable` was already taken out of the map).
    while (this.recent.size > 0 && (this.recent.size >= this.reuse || this.recentChars + text.length > this.reuseChars)) {
      const oldest = this.recent.keys().next().value as number;
      const old = this.recent.get(oldest) as RecentChain;
      this.recent.delete(oldest);
      this.recentChars -= old.text.length;
      if (entry === undefined) entry = old;
    }
    if (text.length > this.reuseChars) return;
    if (entry === undefined || entry.chain.length < 2 * n) entry = { text, blocks: n, chain: new Int32Array(Math.max(2 * n, entry?.chain.length ?? 0)) };
    entry.text = text;
    entry.blocks = n;
    entry.chain.set(this.chain.subarray(0, 2 * n));
    this.recent.set(key, entry);
    this.recentChars += text.length;
  }

  /** Hash blocks [from, to) of `text` into `chain`, starting from the halves (hi, lo). */
  private hashRange(text: string, from: number, to: number, hi: number, lo: number): void {
    const B = this.blockChars;
    const byteLen = (to - from) * B * 2;
    if (this.bytes.length < byteLen) {
      let size = this.bytes.length;
      while (size < byteLen) size *= 2;
      this.bytes = Buffer.allocUnsafeSlow(size);
      this.words = new Int32Array(this.bytes.buffer, this.bytes.byteOffset, size >> 2);
    }
    this.bytes.write(from === 0 ? text : text.slice(from * B, to * B), 0, byteLen, 'utf16le');
    hashBlocks(this.words, from, to - from, B >> 1, hi, lo, this.chain);
  }
}

interface RecentChain {
  text: string;
  blocks: number;
  chain: Int32Array;
}

/**
 * How many leading blocks (of B characters, at most `max`) two texts share: doubling steps, then halving,
 * each comparing only the characters not yet known equal with one native string equality.
 */
export function commonBlocks(a: string, b: string, B: number, max: number): number {
  if (a === b) return max;
  let good = 0;
  let step = 1;
  let bad = -1;
  while (good < max) {
    const to = good + step < max ? good + step : max;
    if (a.slice(good * B, to * B) === b.slice(good * B, to * B)) {
      good = to;
      step *= 2;
    } else {
      bad = to;
      break;
    }
  }
  if (bad < 0) return good;
  // blocks [0, good) equal; somewhere in [good, bad) a block differs
  while (bad - good > 1) {
    const mid = (good + bad) >>> 1;
    if (a.slice(good * B, mid * B) === b.slice(good * B, mid * B)) good = mid;
    else bad = mid;
  }
  return good;
}

/**
 * The chain of blocks [first, first + n) (their words from w[0]), each of `wordsPerBlock` 32-bit words (a
 * multiple of 4), starting from (hi, lo), the halves of block first - 1 (or the seed).
 * Kept a plain function over typed arrays so it stays monomorphic and optimised.
 */
function hashBlocks(w: Int32Array, first: number, n: number, wordsPerBlock: number, hi: number, lo: number, out: Int32Array): void {
  let p = 0;
  const last = first + n;
  for (let k = first; k < last; k++) {
    let a = hi;
    let b = lo;
    let c = hi ^ M3;
    let d = lo ^ M4;
    const end = p + wordsPerBlock;
    for (; p < end; p += 4) {
      a = Math.imul(a ^ (w[p] as number), M1);
      a = (a << 13) | (a >>> 19);
      b = Math.imul(b ^ (w[p + 1] as number), M2);
      b = (b << 15) | (b >>> 17);
      c = Math.imul(c ^ (w[p + 2] as number), M3);
      c = (c << 13) | (c >>> 19);
      d = Math.imul(d ^ (w[p + 3] as number), M4);
      d = (d << 15) | (d >>> 17);
    }
    // Fold the four lanes into two halves and finalise each (murmur3's fmix32), so every input bit
    // reaches every output bit before the halves seed the next block.
    let x = a ^ Math.imul(c ^ (c >>> 16), M1) ^ (b >>> 7) ^ k;
    let y = b ^ Math.imul(d ^ (d >>> 16), M2) ^ (a >>> 9);
    x ^= x >>> 16;
    x = Math.imul(x, M3);
    x ^= x >>> 13;
    x = Math.imul(x, M4);
    x ^= x >>> 16;
    y ^= y >>> 15;
    y = Math.imul(y, M1);
    y ^= y >>> 13;
    y = Math.imul(y, M2);
    y ^= y >>> 16;
    hi = x;
    lo = y;
    out[2 * k] = x;
    out[2 * k + 1] = y;
  }
}
