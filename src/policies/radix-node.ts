/**
 * The radix tree's parts (radix-tree.ts is the tree): nodes and their tenant tags, how labels are compared
 * with a text and copied out of it, texts in pieces, argument checks and constants. Internal to the tree's
 * modules (radix-core.ts, radix-snapshot.ts, radix-tree.ts); users import from radix-tree.ts.
 */

/** Tenant ids are worker slots: small non-negative integers. */
export const MAX_TENANT_ID = 65_535;
/** sgl-router's default max_tree_size (characters per tenant). */
export const DEFAULT_MAX_TREE_SIZE = 2 ** 26;

/** Above this many children a node also keeps a Map from first character to child. */
export const INDEX_CHILDREN_ABOVE = 8;
/** ... and drops it again below this many (hysteresis). */
export const DROP_INDEX_BELOW = 4;
/** A label may carry this many dead characters beyond its own length before it is copied. */
export const COPY_SLACK = 64;
/** V8 copies substrings shorter than this instead of creating a slice that pins the parent. */
export const V8_SLICE_MIN = 13;
/** Stretches at least this long are compared natively (string equality) rather than per character. */
export const NATIVE_COMPARE_MIN = 16;

export class Membership {
  prev: Membership | null = null;
  next: Membership | null = null;
  constructor(
    readonly node: RadixNode,
    readonly tenant: number,
    /** Operation counter at the last touch: the recency order across tenants. */
    public seq: number,
    /** Caller's clock at the last touch (ms). */
    public time: number,
    /** Position among the node's tags: 0 is node.m0, j > 0 is node.more[j - 1] (O(1) removal). */
    public slot: number,
  ) {}
}

export class RadixNode {
  firstChild: RadixNode | null = null;
  nextSibling: RadixNode | null = null;
  prevSibling: RadixNode | null = null;
  childCount = 0;
  childIndex: Map<number, RadixNode> | null = null;
  /**
   * The node's tags. Most nodes (leaves, unique text) have one: it lives inline (m0, t0), so such a node
   * costs three heap objects (node, tag, label), not five. Further tags go in `more`, with their tenant
   * ids alongside in `moreTenants` so the hot tenant scan reads one packed array, not 16 objects.
   */
  memberCount = 0;
  t0 = -1;
  m0: Membership | null = null;
  /**
   * The tenant of the most recent tag, -1 when unknown (its tag was removed, or a restored node). Every
   * touch carries the newest sequence number, so the last tenant to touch a node is its most recent.
   */
  lastTenant = -1;
  more: Membership[] | null = null;
  moreTenants: number[] | null = null;
  /**
   * Hotness (HotnessProbe): a decaying count of the probes that took this node as their prefix, and the
   * probe clock at its last update.
   */
  heat = 0;
  heatAt = 0;
  constructor(
    /** The edge's text: a string of its own, so a whole label compares natively (one `===`). */
    public label: string,
    /**
     * Characters of a caller's string this label may keep alive beyond its own (V8 substrings are
     * slices of their parent): the dead text left by splits, bounded by copying (COPY_SLACK).
     */
    public dead: number,
    /** First character of the label: the key among siblings. */
    public first: number,
    public parent: RadixNode | null,
  ) {}
}

/**
 * A fresh string holding s[start, end), so that a label never keeps a large caller string alive.
 * V8 implements long substrings as slices that pin their parent; concatenating and slicing again
 * forces a flat copy (verified by measurement; see docs/radix-tree.md).
 */
export function ownCopy(s: string, start: number, end: number): string {
  if (start === 0 && end === s.length) return s;
  if (end - start < V8_SLICE_MIN) return s.slice(start, end);
  return (' ' + s.slice(start, end)).slice(1);
}

/**
 * Characters of `label` matched by `text` from position i; the first is known to match (children are
 * keyed by it). Long stretches compare natively: `===` on two strings is a memcmp, and slices of 13+
 * characters are O(1) views. (A charCodeAt loop costs ~5 ns per character here; TurboFan also turns
 * startsWith into such a loop.) The whole label first (the usual case on a hit), then growing chunks
 * until one differs, then halving that chunk; the character loop only finishes the last few.
 */
export function matchLabel(label: string, text: string, i: number): number {
  const len = label.length;
  const rest = text.length - i;
  const limit = len < rest ? len : rest;
  let k = 1;
  if (limit >= NATIVE_COMPARE_MIN) {
    if (limit === len && text.slice(i, i + len) === label) return len;
    k = 0;
    let step = NATIVE_COMPARE_MIN;
    let hi = limit;
    for (;;) {
      const end = k + step < limit ? k + step : limit;
      if (text.slice(i + k, i + end) !== label.slice(k, end)) {
        hi = end;
        break;
      }
      k = end;
      if (k === limit) return k;
      step *= 2;
    }
    // the first difference lies in [k, hi)
    while (hi - k > NATIVE_COMPARE_MIN) {
      const mid = (k + hi) >>> 1;
      if (text.slice(i + k, i + mid) === label.slice(k, mid)) k = mid;
      else hi = mid;
    }
  }
  while (k < limit && label.charCodeAt(k) === text.charCodeAt(i + k)) k++;
  return k;
}

/**
 * A text in pieces (RequestFeatures.textChunks: a long prompt crosses into the policy actor as strings
 * of at most TEXT_CHUNK_CHARS, so that no piece is a large object; see docs/radix-tree.md), and the
 * walk's position in it: chunks[c] starts at character `base` of the whole text.
 */
export class ChunkCursor {
  c = 0;
  base = 0;
  constructor(readonly chunks: readonly string[]) {}

  /** Move to the chunk holding character i (i only grows during a walk); false past the end. */
  seek(i: number): boolean {
    const chunks = this.chunks;
    while (this.c < chunks.length) {
      const len = (chunks[this.c] as string).length;
      if (i < this.base + len) return true;
      this.base += len;
      this.c++;
    }
    return false;
  }

  charCodeAt(i: number): number {
    return this.seek(i) ? (this.chunks[this.c] as string).charCodeAt(i - this.base) : NaN;
  }

  /** matchLabel over the pieces: characters of `label` matched by the text from i (label[0] is known to match). */
  matchLabel(label: string, i: number): number {
    const len = label.length;
    let k = 0;
    while (k < len && this.seek(i + k)) {
      const chunk = this.chunks[this.c] as string;
      const off = i + k - this.base;
      const piece = len - k < chunk.length - off ? len - k : chunk.length - off;
      if (k > 0 && label.charCodeAt(k) !== chunk.charCodeAt(off)) return k;
      const sub = k === 0 && piece === len ? label : label.slice(k, k + piece);
      const m = matchLabel(sub, chunk, off);
      k += m;
      if (m < piece) return k;
    }
    return k;
  }

  /** The text's characters [i, i + n) (n <= TEXT_CHUNK_CHARS) as a string of its own. */
  copy(i: number, n: number): string {
    this.seek(i);
    const chunk = this.chunks[this.c] as string;
    const off = i - this.base;
    if (off + n <= chunk.length) return ownCopy(chunk, off, off + n);
    let s = chunk.slice(off);
    for (let c = this.c + 1; s.length < n && c < this.chunks.length; c++) s += (this.chunks[c] as string).slice(0, n - s.length);
    return (' ' + s).slice(1); // flattened into a fresh string (as ownCopy does)
  }
}

/** Total characters of a chunked text. */
export function chunksLength(chunks: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < chunks.length; i++) n += (chunks[i] as string).length;
  return n;
}

/**
 * Longest piece a chunked text is cut into, and longest label inserted from one: a two-byte string of
 * this many characters stays under V8's large-object size (32 KB), so neither the crossing nor the tree
 * allocates a large object per request (a fresh large object costs a page fault per 4 KB; measured in
 * docs/radix-tree.md).
 */
export const TEXT_CHUNK_CHARS = 8192;

/** A text cut into TEXT_CHUNK_CHARS pieces (O(1) slices of it). */
export function chunkText(text: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += TEXT_CHUNK_CHARS) out.push(text.slice(i, i + TEXT_CHUNK_CHARS));
  return out;
}

export function checkTenant(tenant: number): void {
  if (!(Number.isInteger(tenant) && tenant >= 0 && tenant <= MAX_TENANT_ID)) {
    throw new RangeError(`radix tree: tenant must be an integer in [0, ${MAX_TENANT_ID}], got ${String(tenant)}`);
  }
}

export function checkText(text: string): void {
  if (typeof text !== 'string') throw new TypeError('radix tree: text must be a string');
}

export function findChild(node: RadixNode, c: number): RadixNode | null {
  const index = node.childIndex;
  if (index !== null) return index.get(c) ?? null;
  for (let ch = node.firstChild; ch !== null; ch = ch.nextSibling) if (ch.first === c) return ch;
  return null;
}

export function findMember(node: RadixNode, tenant: number): Membership | null {
  if (node.t0 === tenant) return node.m0;
  const tenants = node.moreTenants;
  if (tenants === null) return null;
  for (let j = 0; j < tenants.length; j++) if (tenants[j] === tenant) return (node.more as Membership[])[j] as Membership;
  return null;
}

/** The node's j-th tag (0 <= j < memberCount). */
export function memberAt(node: RadixNode, j: number): Membership {
  return (j === 0 ? node.m0 : (node.more as Membership[])[j - 1]) as Membership;
}

/**
 * The tenant of a node's most recently used tag (ties, only possible in restored trees: lowest id); -1
 * for the root. Cached in lastTenant, recomputed after that tag went.
 */
export function mostRecentTenant(node: RadixNode): number {
  if (node.lastTenant >= 0 || node.memberCount === 0) return node.lastTenant;
  let best = node.m0 as Membership;
  for (let j = 1; j < node.memberCount; j++) {
    const m = memberAt(node, j);
    if (m.seq > best.seq || (m.seq === best.seq && m.tenant < best.tenant)) best = m;
  }
  node.lastTenant = best.tenant;
  return best.tenant;
}
