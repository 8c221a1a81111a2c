/**
 * The approximate multi-tenant radix tree behind cache_aware routing: one tree of request TEXT per model
 * (UTF-16 code units, not tokens), each node an edge label plus the tenants (worker slots) that have
 * sent that prefix and when. Semantics follow sgl-router's tree (insert tags the whole path, prefix match
 * walks the shared tree, eviction removes a tenant's least-recently-used leaf while its character count
 * exceeds max_tree_size); the differences are listed in docs/radix-tree.md.
 *
 * Cost model (why the structure looks like this):
 * - Insert and match are linear in the prompt: one pass down the path, each label compared natively
 *   against an O(1) slice of the text (see matchLabel), nothing copied on a match, no recursion anywhere
 *   (200 KB prompts, 1M-deep chains).
 * - Every (node, tenant) pair is a Membership that also sits in that tenant's doubly linked LRU list,
 *   ordered so that a node always comes before its parent. The head of a tenant's list is therefore
 *   always a leaf for that tenant, and evicting it is O(1): no heap, no tree scan.
 * - Labels own their memory: a label never pins more than about twice its own length of a caller's
 *   string, so evicting a tenant frees the prompts it held (see ownCopy).
 */

/** Tenant ids are worker slots: small non-negative integers. */
export const MAX_TENANT_ID = 65_535;
/** sgl-router's default max_tree_size (characters per tenant). */
export const DEFAULT_MAX_TREE_SIZE = 2 ** 26;

/** Above this many children a node also keeps a Map from first character to child. */
const INDEX_CHILDREN_ABOVE = 8;
/** ... and drops it again below this many (hysteresis). */
const DROP_INDEX_BELOW = 4;
/** A label may carry this many dead characters beyond its own length before it is copied. */
const COPY_SLACK = 64;
/** V8 copies substrings shorter than this instead of creating a slice that pins the parent. */
const V8_SLICE_MIN = 13;
/** Stretches at least this long are compared natively (string equality) rather than per character. */
const NATIVE_COMPARE_MIN = 16;

export interface RadixTreeOptions {
  /**
   * Bound on each tenant's character count, enforced on every insert (sgl-router enforces max_tree_size
   * only in its periodic eviction, so its tree can grow without limit in between). Default 2^26.
   */
  readonly maxTenantChars?: number | undefined;
}

export interface PrefixMatch {
  /** Characters of the text matched by the tree (by any tenant). */
  readonly matchedChars: number;
  /** The tenant holding that match (most recently used at the deepest matched node); -1 when none. */
  readonly tenant: number;
}

export interface EvictionResult {
  readonly evictedChars: number;
  /** (node, tenant) tags removed. */
  readonly evictedEntries: number;
  readonly removedNodes: number;
}

export interface TenantStats {
  readonly tenant: number;
  /** Characters of the tree this tenant holds (sum of the labels of the nodes tagged with it). */
  readonly chars: number;
  /** Nodes tagged with this tenant. */
  readonly nodes: number;
}

export interface RadixStats {
  /** Nodes, root excluded. */
  readonly nodes: number;
  /** Distinct characters stored in the tree (sum of all labels). */
  readonly totalChars: number;
  /** (node, tenant) tags. */
  readonly entries: number;
  /** Tenants holding at least one node, by ascending id. */
  readonly tenants: readonly TenantStats[];
}

/**
 * A flat, transferable picture of the tree: nodes in preorder (parents before children), root excluded.
 * Used by the debug bundle, by tests (brute-force recounts) and to rebuild a tree (RadixTree.restore).
 */
export interface RadixSnapshot {
  readonly version: 1;
  /** The tree's operation counter (recency order). */
  readonly seq: number;
  /** parents[i]: index of node i's parent, -1 for a child of the root. */
  readonly parents: Int32Array;
  readonly labels: readonly string[];
  /** Node i's tags are entries [entryStart[i], entryStart[i + 1]). */
  readonly entryStart: Int32Array;
  readonly entryTenant: Int32Array;
  /** Recency of each tag (operation counter at its last touch). */
  readonly entrySeq: Float64Array;
  /** Caller time (ms) of each tag's last touch. */
  readonly entryTime: Float64Array;
}

/** Anything indexable by tenant id that prefixMatchTenants can write into. */
export type TenantLengths = number[] | Int32Array | Uint32Array | Float64Array;

/**
 * How hot a request's prefix is, measured in the same walk as its match (prefixMatchTenants): the
 * prefix is the shallowest node of the matched path that ends at or beyond `minChars` (the node by which
 * the match becomes worth following; a parent of a node is crossed by every walk that crosses the node,
 * so it is also the hottest such node). Each probe adds 1 to that node's heat, which halves every
 * `halfLife` probes; `share` is then the node's share of recent probes (1 when every request crossed it)
 * and `holders` how many tenants hold it. Reused object: set minChars, call, read share and holders.
 */
export class HotnessProbe {
  /** In: characters the prefix must reach. */
  minChars = 0;
  /** Out: the prefix's share of recent probes in [0, 1]; 0 when no node of the path reaches minChars. */
  share = 0;
  /** Out: tenants holding the prefix (0 when none). */
  holders = 0;
  readonly halfLife: number;
  /** Per-probe decay factor, 2^(-1/halfLife); a node probed every time converges to heat 1 / (1 - decay). */
  readonly decay: number;
  constructor(halfLife: number) {
    if (!(Number.isFinite(halfLife) && halfLife >= 1)) throw new RangeError(`hotness probe: halfLife must be >= 1, got ${String(halfLife)}`);
    this.halfLife = halfLife;
    this.decay = 2 ** (-1 / halfLife);
  }
}

class Membership {
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

class RadixNode {
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
function ownCopy(s: string, start: number, end: number): string {
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
function matchLabel(label: string, text: string, i: number): number {
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
class ChunkCursor {
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

function checkTenant(tenant: number): void {
  if (!(Number.isInteger(tenant) && tenant >= 0 && tenant <= MAX_TENANT_ID)) {
    throw new RangeError(`radix tree: tenant must be an integer in [0, ${MAX_TENANT_ID}], got ${String(tenant)}`);
  }
}

function checkText(text: string): void {
  if (typeof text !== 'string') throw new TypeError('radix tree: text must be a string');
}

function findChild(node: RadixNode, c: number): RadixNode | null {
  const index = node.childIndex;
  if (index !== null) return index.get(c) ?? null;
  for (let ch = node.firstChild; ch !== null; ch = ch.nextSibling) if (ch.first === c) return ch;
  return null;
}

function findMember(node: RadixNode, tenant: number): Membership | null {
  if (node.t0 === tenant) return node.m0;
  const tenants = node.moreTenants;
  if (tenants === null) return null;
  for (let j = 0; j < tenants.length; j++) if (tenants[j] === tenant) return (node.more as Membership[])[j] as Membership;
  return null;
}

/** The node's j-th tag (0 <= j < memberCount). */
function memberAt(node: RadixNode, j: number): Membership {
  return (j === 0 ? node.m0 : (node.more as Membership[])[j - 1]) as Membership;
}

/**
 * The tenant of a node's most recently used tag (ties, only possible in restored trees: lowest id); -1
 * for the root. Cached in lastTenant, recomputed after that tag went.
 */
function mostRecentTenant(node: RadixNode): number {
  if (node.lastTenant >= 0 || node.memberCount === 0) return node.lastTenant;
  let best = node.m0 as Membership;
  for (let j = 1; j < node.memberCount; j++) {
    const m = memberAt(node, j);
    if (m.seq > best.seq || (m.seq === best.seq && m.tenant < best.tenant)) best = m;
  }
  node.lastTenant = best.tenant;
  return best.tenant;
}

export class RadixTree {
  readonly maxTenantChars: number;
  private readonly root = new RadixNode('', 0, -1, null);
  private seq = 0;
  private nodeCount = 0;
  private charCount = 0;
  private entryCount = 0;
  /** Tenants with at least one tag. */
  private activeTenants = 0;
  // Per tenant, indexed by id (grown on demand).
  private readonly tenantChars: number[] = [];
  private readonly tenantEntries: number[] = [];
  private readonly lruHead: (Membership | null)[] = [];
  private readonly lruTail: (Membership | null)[] = [];
  // Reused by prefixMatchTenants: the matched path and the matched length at the end of each node.
  private readonly pathNodes: (RadixNode | null)[] = [];
  private readonly pathEnds: number[] = [];
  /** Probes so far (HotnessProbe's clock). */
  private probes = 0;

  constructor(options: RadixTreeOptions = {}) {
    const max = options.maxTenantChars ?? DEFAULT_MAX_TREE_SIZE;
    if (!(Number.isInteger(max) && max >= 0)) {
      throw new RangeError(`radix tree: maxTenantChars must be a non-negative integer, got ${String(max)}`);
    }
    this.maxTenantChars = max;
  }

  /**
   * Record that `tenant` has seen `text`: tag every node on its path (splitting an edge where the text
   * diverges or ends inside it), then evict the tenant's least-recently-used leaves while its character
   * count exceeds maxTenantChars. O(text length + tags touched).
   */
  insert(text: string, tenant: number, nowMs: number): void {
    checkText(text);
    checkTenant(tenant);
    const n = text.length;
    if (n === 0) return;
    this.ensureTenant(tenant);
    const seq = ++this.seq;
    let node = this.root;
    let i = 0;
    // The tag placed just before (shallower on the path): deeper tags go right before it in the LRU
    // list, so the list keeps every node ahead of its parent.
    let cursor: Membership | null = null;
    while (i < n) {
      const c = text.charCodeAt(i);
      let child = findChild(node, c);
      if (child === null) {
        const leaf = new RadixNode(ownCopy(text, i, n), 0, c, node);
        this.attachChild(node, leaf);
        this.addMember(leaf, tenant, seq, nowMs, cursor);
        break;
      }
      const k = matchLabel(child.label, text, i);
      if (k < child.label.length) child = this.split(child, k);
      cursor = this.touch(child, tenant, seq, nowMs, cursor);
      i += k;
      node = child;
    }
    if ((this.tenantChars[tenant] as number) > this.maxTenantChars) this.evictTenant(tenant, this.maxTenantChars);
  }

  /**
   * The longest match of `text` in the tree by any tenant, and the tenant holding it: the most recently
   * used tenant at the deepest matched node (every tenant there matched the same length). With nowMs,
   * that tenant's path is touched (sgl-router does this on every match).
   */
  prefixMatch(text: string, nowMs?: number): PrefixMatch {
    checkText(text);
    const n = text.length;
    let node = this.root;
    let i = 0;
    while (i < n) {
      const child = findChild(node, text.charCodeAt(i));
      if (child === null) break;
      const k = matchLabel(child.label, text, i);
      i += k;
      node = child;
      if (k < child.label.length) break;
    }
    const tenant = mostRecentTenant(node);
    if (tenant < 0) return { matchedChars: 0, tenant: -1 };
    if (nowMs !== undefined) this.touchPath(node, tenant, nowMs);
    return { matchedChars: i, tenant };
  }

  /** Characters of `text` matched by what `tenant` holds. With nowMs, the matched path is touched. */
  prefixMatchTenant(text: string, tenant: number, nowMs?: number): number {
    checkText(text);
    checkTenant(tenant);
    const n = text.length;
    let node = this.root;
    let i = 0;
    while (i < n) {
      const child = findChild(node, text.charCodeAt(i));
      if (child === null || findMember(child, tenant) === null) break;
      const k = matchLabel(child.label, text, i);
      i += k;
      node = child;
      if (k < child.label.length) break;
    }
    if (nowMs !== undefined && node !== this.root) this.touchPath(node, tenant, nowMs);
    return i;
  }

  /**
   * Matched characters per tenant in one walk: out[t] = characters of `text` matched by tenant t (0 when
   * it holds none of it), for every t < out.length; the rest of `out` is zeroed. Returns the longest
   * match. Lets a policy take the longest match among a filtered set of workers. Does not touch. With a
   * probe, also measures how hot the matched prefix is (HotnessProbe).
   */
  prefixMatchTenants(text: string, out: TenantLengths, probe?: HotnessProbe): number {
    checkText(text);
    const n = text.length;
    const pathNodes = this.pathNodes;
    const pathEnds = this.pathEnds;
    let depth = 0;
    let node = this.root;
    let i = 0;
    while (i < n) {
      const child = findChild(node, text.charCodeAt(i));
      if (child === null) break;
      const k = matchLabel(child.label, text, i);
      i += k;
      node = child;
      pathNodes[depth] = child;
      pathEnds[depth] = i;
      depth++;
      if (k < child.label.length) break;
    }
    this.collectTenants(depth, out);
    if (probe !== undefined) this.probe(probe, depth);
    for (let d = 0; d < depth; d++) pathNodes[d] = null; // do not keep evicted nodes alive
    return i;
  }

  /**
   * insert() for a text in pieces (chunkText). Matches like insert; the part no node holds is added as a
   * chain of nodes of at most TEXT_CHUNK_CHARS characters each, so no label is a large object.
   */
  insertChunks(chunks: readonly string[], tenant: number, nowMs: number): void {
    checkTenant(tenant);
    const n = chunksLength(chunks);
    if (n === 0) return;
    this.ensureTenant(tenant);
    const seq = ++this.seq;
    const text = new ChunkCursor(chunks);
    let node = this.root;
    let i = 0;
    let cursor: Membership | null = null;
    while (i < n) {
      const c = text.charCodeAt(i);
      let child = findChild(node, c);
      if (child === null) {
        // a chain: each link's tag goes before its parent's in the LRU list (the cursor moves down)
        while (i < n) {
          const len = n - i < TEXT_CHUNK_CHARS ? n - i : TEXT_CHUNK_CHARS;
          const leaf = new RadixNode(text.copy(i, len), 0, text.charCodeAt(i), node);
          this.attachChild(node, leaf);
          cursor = this.addMember(leaf, tenant, seq, nowMs, cursor);
          node = leaf;
          i += len;
        }
        break;
      }
      const k = text.matchLabel(child.label, i);
      if (k < child.label.length) child = this.split(child, k);
      cursor = this.touch(child, tenant, seq, nowMs, cursor);
      i += k;
      node = child;
    }
    if ((this.tenantChars[tenant] as number) > this.maxTenantChars) this.evictTenant(tenant, this.maxTenantChars);
  }

  /** prefixMatchTenants() for a text in pieces (chunkText). */
  prefixMatchTenantsChunks(chunks: readonly string[], out: TenantLengths, probe?: HotnessProbe): number {
    const text = new ChunkCursor(chunks);
    const n = chunksLength(chunks);
    let depth = 0;
    let node = this.root;
    let i = 0;
    while (i < n) {
      const child = findChild(node, text.charCodeAt(i));
      if (child === null) break;
      const k = text.matchLabel(child.label, i);
      i += k;
      node = child;
      this.pathNodes[depth] = child;
      this.pathEnds[depth] = i;
      depth++;
      if (k < child.label.length) break;
    }
    this.collectTenants(depth, out);
    if (probe !== undefined) this.probe(probe, depth);
    for (let d = 0; d < depth; d++) this.pathNodes[d] = null;
    return i;
  }

  /** out[t] = where tenant t's match ends on the path just walked (pathNodes[0, depth)). */
  private collectTenants(depth: number, out: TenantLengths): void {
    out.fill(0);
    // Tag sets shrink going down a path, so a tenant's match ends at the deepest node it tags: walk back
    // up, first writer wins, and stop at a node every tenant tags (its ancestors add nothing).
    const limit = out.length;
    for (let j = depth - 1; j >= 0; j--) {
      const at = this.pathNodes[j] as RadixNode;
      const end = this.pathEnds[j] as number;
      const t0 = at.t0;
      if (t0 < limit && out[t0] === 0) out[t0] = end;
      const tenants = at.moreTenants;
      if (tenants !== null) {
        for (let m = 0; m < tenants.length; m++) {
          const t = tenants[m] as number;
          if (t < limit && out[t] === 0) out[t] = end;
        }
      }
      if (at.memberCount === this.activeTenants) break;
    }
  }

  /** HotnessProbe over the path just walked (pathNodes[0, depth)). */
  private probe(probe: HotnessProbe, depth: number): void {
    const clock = ++this.probes;
    probe.share = 0;
    probe.holders = 0;
    for (let d = 0; d < depth; d++) {
      if ((this.pathEnds[d] as number) < probe.minChars) continue;
      const node = this.pathNodes[d] as RadixNode;
      const heat = node.heat * probe.decay ** (clock - node.heatAt) + 1;
      node.heat = heat;
      node.heatAt = clock;
      probe.share = heat * (1 - probe.decay);
      probe.holders = node.memberCount;
      return;
    }
  }

  /** Drop a worker entirely (it left the fleet). O(its tags). */
  removeTenant(tenant: number): EvictionResult {
    checkTenant(tenant);
    return this.evictTenant(tenant, 0);
  }

  /**
   * sgl-router's periodic eviction: for every tenant whose character count exceeds maxSize, remove its
   * least-recently-used leaves until it does not. O(evicted tags).
   */
  evictTenantsBySize(maxSize: number): EvictionResult {
    if (!(Number.isFinite(maxSize) && maxSize >= 0)) {
      throw new RangeError(`radix tree: maxSize must be a non-negative number, got ${String(maxSize)}`);
    }
    let evictedChars = 0;
    let evictedEntries = 0;
    let removedNodes = 0;
    for (let t = 0; t < this.tenantChars.length; t++) {
      if ((this.tenantChars[t] as number) <= maxSize) continue;
      const r = this.evictTenant(t, maxSize);
      evictedChars += r.evictedChars;
      evictedEntries += r.evictedEntries;
      removedNodes += r.removedNodes;
    }
    return { evictedChars, evictedEntries, removedNodes };
  }

  /** Characters held by a tenant (the tree_size{worker} metric). */
  tenantSize(tenant: number): number {
    return this.tenantChars[tenant] ?? 0;
  }

  get size(): { readonly nodes: number; readonly totalChars: number; readonly entries: number } {
    return { nodes: this.nodeCount, totalChars: this.charCount, entries: this.entryCount };
  }

  stats(): RadixStats {
    const tenants: TenantStats[] = [];
    for (let t = 0; t < this.tenantEntries.length; t++) {
      const nodes = this.tenantEntries[t] as number;
      if (nodes > 0) tenants.push({ tenant: t, chars: this.tenantChars[t] as number, nodes });
    }
    return { nodes: this.nodeCount, totalChars: this.charCount, entries: this.entryCount, tenants };
  }

  snapshot(): RadixSnapshot {
    const parents = new Int32Array(this.nodeCount);
    const labels: string[] = new Array<string>(this.nodeCount);
    const entryStart = new Int32Array(this.nodeCount + 1);
    const entryTenant = new Int32Array(this.entryCount);
    const entrySeq = new Float64Array(this.entryCount);
    const entryTime = new Float64Array(this.entryCount);
    // Iterative preorder: a stack of nodes and their parents' indices.
    const stack: RadixNode[] = [];
    const stackParent: number[] = [];
    for (let ch = this.root.firstChild; ch !== null; ch = ch.nextSibling) {
      stack.push(ch);
      stackParent.push(-1);
    }
    let index = 0;
    let entry = 0;
    while (stack.length > 0) {
      const node = stack.pop() as RadixNode;
      const parent = stackParent.pop() as number;
      parents[index] = parent;
      labels[index] = node.label;
      entryStart[index] = entry;
      for (let j = 0; j < node.memberCount; j++) {
        const m = memberAt(node, j);
        entryTenant[entry] = m.tenant;
        entrySeq[entry] = m.seq;
        entryTime[entry] = m.time;
        entry++;
      }
      for (let ch = node.firstChild; ch !== null; ch = ch.nextSibling) {
        stack.push(ch);
        stackParent.push(index);
      }
      index++;
    }
    entryStart[index] = entry;
    return { version: 1, seq: this.seq, parents, labels, entryStart, entryTenant, entrySeq, entryTime };
  }

  /**
   * Rebuild a tree from a snapshot. The snapshot is validated (a malformed one throws a RangeError naming
   * the first problem) and the insert-time bound of `options` is enforced afterwards.
   */
  static restore(snapshot: RadixSnapshot, options: RadixTreeOptions = {}): RadixTree {
    const tree = new RadixTree(options);
    tree.load(snapshot);
    tree.evictTenantsBySize(tree.maxTenantChars);
    return tree;
  }

  /**
   * Full O(tree) consistency check for tests and debugging; throws an Error naming the first violation.
   * Checks links, child indexes, label storage bounds, that every node has a tag, that tag sets shrink
   * going down, per-tenant counts against a recount, and that each LRU list holds exactly the tenant's
   * tags with every node ahead of its parent.
   */
  checkInvariants(): void {
    const fail = (what: string): never => {
      throw new Error(`radix tree invariant: ${what}`);
    };
    const chars: number[] = [];
    const entries: number[] = [];
    let nodes = 0;
    let total = 0;
    let entryTotal = 0;
    const stack: RadixNode[] = [this.root];
    while (stack.length > 0) {
      const node = stack.pop() as RadixNode;
      let count = 0;
      const firsts = node.childCount > 1 ? new Set<number>() : null;
      for (let ch = node.firstChild; ch !== null; ch = ch.nextSibling) {
        count++;
        if (ch.parent !== node) fail('child with a wrong parent link');
        if (ch.prevSibling === null ? node.firstChild !== ch : ch.prevSibling.nextSibling !== ch) fail('sibling links');
        if (firsts !== null) {
          if (firsts.has(ch.first)) fail('two children share a first character');
          firsts.add(ch.first);
        }
        if (node.childIndex !== null && node.childIndex.get(ch.first) !== ch) fail('child index misses a child');
        stack.push(ch);
      }
      if (count !== node.childCount) fail('childCount');
      if (node.childIndex !== null && node.childIndex.size !== count) fail('child index size');
      if (node.childIndex === null && count > INDEX_CHILDREN_ABOVE) fail('wide node without a child index');
      if (node === this.root) continue;
      nodes++;
      const len = node.label.length;
      total += len;
      if (len < 1) fail('empty label');
      if (node.dead > len + COPY_SLACK) fail('label pins too much dead text');
      if (node.label.charCodeAt(0) !== node.first) fail('first character key');
      if (node.memberCount === 0 || node.m0 === null) fail('node without a tenant');
      if (node.t0 !== (node.m0 as Membership).tenant) fail('t0');
      const more = node.more === null ? 0 : node.more.length;
      if (more === 0 ? node.more !== null || node.moreTenants !== null : node.moreTenants?.length !== more) fail('more arrays');
      if (node.memberCount !== 1 + more) fail('memberCount');
      if (node.lastTenant >= 0) {
        let maxSeq = -Infinity;
        for (let j = 0; j < node.memberCount; j++) maxSeq = Math.max(maxSeq, memberAt(node, j).seq);
        if (findMember(node, node.lastTenant)?.seq !== maxSeq) fail('lastTenant is not the most recent tag');
      }
      const parent = node.parent as RadixNode;
      for (let j = 0; j < node.memberCount; j++) {
        const m = memberAt(node, j);
        if (m.node !== node || m.slot !== j || (j > 0 && (node.moreTenants as number[])[j - 1] !== m.tenant)) fail('tag back-links');
        if (findMember(node, m.tenant) !== m) fail('duplicate tenant tag on a node');
        chars[m.tenant] = (chars[m.tenant] ?? 0) + len;
        entries[m.tenant] = (entries[m.tenant] ?? 0) + 1;
        entryTotal++;
        if (parent !== this.root) {
          const up = findMember(parent, m.tenant);
          if (up === null) fail(`tenant ${m.tenant} tags a node but not its parent`);
          else if (up.seq < m.seq) fail('a parent is older than its child');
        }
      }
    }
    if (nodes !== this.nodeCount) fail(`nodeCount ${this.nodeCount} != ${nodes}`);
    if (total !== this.charCount) fail(`charCount ${this.charCount} != ${total}`);
    if (entryTotal !== this.entryCount) fail(`entryCount ${this.entryCount} != ${entryTotal}`);
    let active = 0;
    for (let t = 0; t < Math.max(this.tenantChars.length, chars.length); t++) {
      if ((this.tenantChars[t] ?? 0) !== (chars[t] ?? 0)) fail(`tenant ${t} chars ${this.tenantChars[t] ?? 0} != ${chars[t] ?? 0}`);
      const e = entries[t] ?? 0;
      if ((this.tenantEntries[t] ?? 0) !== e) fail(`tenant ${t} entries`);
      if (e > 0) active++;
      // The LRU list: exactly the tenant's tags, and a node's tag ahead of its parent's.
      const position = new Map<RadixNode, number>();
      let listed = 0;
      let prev: Membership | null = null;
      for (let m = this.lruHead[t] ?? null; m !== null; m = m.next) {
        if (m.prev !== prev) fail(`tenant ${t} LRU back-links`);
        if (m.tenant !== t || findMember(m.node, t) !== m) fail(`tenant ${t} LRU holds a foreign or removed tag`);
        position.set(m.node, listed++);
        prev = m;
      }
      if ((this.lruTail[t] ?? null) !== prev) fail(`tenant ${t} LRU tail`);
      if (listed !== e) fail(`tenant ${t} LRU length ${listed} != ${e}`);
      for (const [node, at] of position) {
        const parent = node.parent as RadixNode;
        if (parent !== this.root && (position.get(parent) ?? -1) < at) fail(`tenant ${t} LRU puts a parent before its child`);
      }
    }
    if (active !== this.activeTenants) fail('activeTenants');
  }

  // ---- internals ----

  private ensureTenant(tenant: number): void {
    while (this.tenantChars.length <= tenant) {
      this.tenantChars.push(0);
      this.tenantEntries.push(0);
      this.lruHead.push(null);
      this.lruTail.push(null);
    }
  }

  private attachChild(parent: RadixNode, child: RadixNode): void {
    const head = parent.firstChild;
    child.nextSibling = head;
    child.prevSibling = null;
    if (head !== null) head.prevSibling = child;
    parent.firstChild = child;
    parent.childCount++;
    if (parent.childIndex !== null) parent.childIndex.set(child.first, child);
    else if (parent.childCount > INDEX_CHILDREN_ABOVE) {
      const index = new Map<number, RadixNode>();
      for (let ch: RadixNode | null = parent.firstChild; ch !== null; ch = ch.nextSibling) index.set(ch.first, ch);
      parent.childIndex = index;
    }
    this.nodeCount++;
    this.charCount += child.label.length;
  }

  private detachLeaf(node: RadixNode): void {
    const parent = node.parent as RadixNode;
    const prev = node.prevSibling;
    const next = node.nextSibling;
    if (prev === null) parent.firstChild = next;
    else prev.nextSibling = next;
    if (next !== null) next.prevSibling = prev;
    parent.childCount--;
    if (parent.childIndex !== null) {
      if (parent.childCount < DROP_INDEX_BELOW) parent.childIndex = null;
      else parent.childIndex.delete(node.first);
    }
    node.parent = null;
    node.prevSibling = null;
    node.nextSibling = null;
    this.nodeCount--;
    this.charCount -= node.label.length;
  }

  /**
   * Cut `node`'s label after k characters: a new upper node takes the first k (and node's place under its
   * parent, and a copy of its tags), node keeps the rest as the upper node's only child.
   */
  private split(node: RadixNode, k: number): RadixNode {
    const parent = node.parent as RadixNode;
    const label = node.label;
    const upper = new RadixNode(ownCopy(label, 0, k), 0, node.first, parent);
    // upper takes node's place among the siblings
    const prev = node.prevSibling;
    const next = node.nextSibling;
    upper.prevSibling = prev;
    upper.nextSibling = next;
    if (prev === null) parent.firstChild = upper;
    else prev.nextSibling = upper;
    if (next !== null) next.prevSibling = upper;
    if (parent.childIndex !== null) parent.childIndex.set(upper.first, upper);
    const rest = label.length - k;
    if (rest < V8_SLICE_MIN) {
      node.label = label.slice(k); // a copy
      node.dead = 0;
    } else if (node.dead + k > rest + COPY_SLACK) {
      // The lower part would pin dead text that grows with every split: copy it (amortised by them).
      node.label = ownCopy(label, k, label.length);
      node.dead = 0;
    } else {
      node.label = label.slice(k); // O(1) slice of the same backing string
      node.dead += k;
    }
    node.first = node.label.charCodeAt(0);
    node.parent = upper;
    node.prevSibling = null;
    node.nextSibling = null;
    upper.firstChild = node;
    upper.childCount = 1;
    this.nodeCount++;
    // upper inherits every tag; each copy goes right after the original in its tenant's list, which is
    // between node and node's old parent: the order invariant holds. Counts do not change (k + rest).
    const count = node.memberCount;
    const copies = node.more === null ? null : node.more.slice();
    upper.more = copies;
    upper.moreTenants = node.moreTenants === null ? null : node.moreTenants.slice();
    upper.memberCount = count;
    upper.t0 = node.t0;
    upper.lastTenant = node.lastTenant;
    // every walk that crossed node crossed what is now upper
    upper.heat = node.heat;
    upper.heatAt = node.heatAt;
    for (let j = 0; j < count; j++) {
      const m = memberAt(node, j);
      const u = new Membership(upper, m.tenant, m.seq, m.time, j);
      if (j === 0) upper.m0 = u;
      else (copies as Membership[])[j - 1] = u;
      const after = m.next;
      u.prev = m;
      u.next = after;
      m.next = u;
      if (after !== null) after.prev = u;
      else this.lruTail[m.tenant] = u;
      this.tenantEntries[m.tenant] = (this.tenantEntries[m.tenant] as number) + 1;
    }
    this.entryCount += count;
    return upper;
  }

  private newMember(node: RadixNode, tenant: number, seq: number, time: number): Membership {
    const j = node.memberCount;
    const m = new Membership(node, tenant, seq, time, j);
    if (j === 0) {
      node.m0 = m;
      node.t0 = tenant;
    } else if (node.more === null) {
      // exact-size literals: a push on [] would reserve 16 slots
      node.more = [m];
      node.moreTenants = [tenant];
    } else {
      node.more.push(m);
      (node.moreTenants as number[]).push(tenant);
    }
    node.memberCount = j + 1;
    return m;
  }

  /** Take a tag off its node: the last tag moves into its slot. */
  private dropMember(node: RadixNode, m: Membership): void {
    const last = node.memberCount - 1;
    let moved: Membership;
    if (last === 0) {
      moved = node.m0 as Membership;
      node.m0 = null;
      node.t0 = -1;
    } else {
      const more = node.more as Membership[];
      moved = more.pop() as Membership;
      (node.moreTenants as number[]).pop();
      if (more.length === 0) {
        node.more = null;
        node.moreTenants = null;
      }
    }
    node.memberCount = last;
    if (node.lastTenant === m.tenant) node.lastTenant = -1;
    if (moved === m) return;
    const slot = m.slot;
    if (slot === 0) {
      node.m0 = moved;
      node.t0 = moved.tenant;
    } else {
      (node.more as Membership[])[slot - 1] = moved;
      (node.moreTenants as number[])[slot - 1] = moved.tenant;
    }
    moved.slot = slot;
  }

  /** Tag node with tenant (new tag) and place it in the LRU list before `cursor` (tail when null). */
  private addMember(node: RadixNode, tenant: number, seq: number, time: number, cursor: Membership | null): Membership {
    const m = this.newMember(node, tenant, seq, time);
    node.lastTenant = tenant;
    this.linkBefore(m, tenant, cursor);
    this.tenantChars[tenant] = (this.tenantChars[tenant] as number) + node.label.length;
    const entries = (this.tenantEntries[tenant] as number) + 1;
    this.tenantEntries[tenant] = entries;
    if (entries === 1) this.activeTenants++;
    this.entryCount++;
    return m;
  }

  /** Refresh (or create) tenant's tag on node and move it right before `cursor`. */
  private touch(node: RadixNode, tenant: number, seq: number, time: number, cursor: Membership | null): Membership {
    const m = findMember(node, tenant);
    if (m === null) return this.addMember(node, tenant, seq, time, cursor);
    m.seq = seq;
    m.time = time;
    node.lastTenant = tenant;
    // Already in place (m.next === null means m is the tail) when the same tenant re-sends a prompt.
    if (m.next !== cursor) {
      this.unlink(m, tenant);
      this.linkBefore(m, tenant, cursor);
    }
    return m;
  }

  /** Touch tenant's tags from node up to the root (all present: tag sets shrink going down). */
  private touchPath(node: RadixNode, tenant: number, time: number): void {
    const seq = ++this.seq;
    for (let at: RadixNode = node; at !== this.root; at = at.parent as RadixNode) {
      const m = findMember(at, tenant) as Membership;
      m.seq = seq;
      m.time = time;
      at.lastTenant = tenant;
      // Walking up and appending keeps each node ahead of its parent.
      if (this.lruTail[tenant] !== m) {
        this.unlink(m, tenant);
        this.linkBefore(m, tenant, null);
      }
    }
  }

  private linkBefore(m: Membership, tenant: number, cursor: Membership | null): void {
    if (cursor === null) {
      const tail = this.lruTail[tenant] as Membership | null;
      m.prev = tail;
      m.next = null;
      if (tail !== null) tail.next = m;
      else this.lruHead[tenant] = m;
      this.lruTail[tenant] = m;
    } else {
      const before = cursor.prev;
      m.prev = before;
      m.next = cursor;
      cursor.prev = m;
      if (before !== null) before.next = m;
      else this.lruHead[tenant] = m;
    }
  }

  private unlink(m: Membership, tenant: number): void {
    const prev = m.prev;
    const next = m.next;
    if (prev !== null) prev.next = next;
    else this.lruHead[tenant] = next;
    if (next !== null) next.prev = prev;
    else this.lruTail[tenant] = prev;
    m.prev = null;
    m.next = null;
  }

  /** Remove tenant's least-recently-used leaves while its count exceeds maxSize. */
  private evictTenant(tenant: number, maxSize: number): EvictionResult {
    let evictedChars = 0;
    let evictedEntries = 0;
    let removedNodes = 0;
    for (;;) {
      const chars = this.tenantChars[tenant];
      if (chars === undefined || chars <= maxSize) break;
      // The head is a leaf for this tenant: none of its children carries the tenant (list order).
      const m = this.lruHead[tenant] as Membership;
      const node = m.node;
      this.unlink(m, tenant);
      this.dropMember(node, m);
      const len = node.label.length;
      this.tenantChars[tenant] = chars - len;
      const entries = (this.tenantEntries[tenant] as number) - 1;
      this.tenantEntries[tenant] = entries;
      if (entries === 0) this.activeTenants--;
      this.entryCount--;
      evictedChars += len;
      evictedEntries++;
      // A node without tags has no children either (children's tags are a subset of its own).
      if (node.memberCount === 0) {
        this.detachLeaf(node);
        removedNodes++;
      }
    }
    return { evictedChars, evictedEntries, removedNodes };
  }

  private load(snapshot: RadixSnapshot): void {
    const bad = (what: string): never => {
      throw new RangeError(`radix snapshot: ${what}`);
    };
    if (snapshot.version !== 1) bad('unsupported version');
    const { parents, labels, entryStart, entryTenant, entrySeq, entryTime } = snapshot;
    const count = parents.length;
    if (labels.length !== count || entryStart.length !== count + 1) bad('array lengths disagree');
    const entries = entryTenant.length;
    if (entrySeq.length !== entries || entryTime.length !== entries) bad('entry array lengths disagree');
    if (entryStart[0] !== 0 || entryStart[count] !== entries) bad('entry ranges do not cover the entries');
    const nodes: RadixNode[] = new Array<RadixNode>(count);
    const depth = new Int32Array(count);
    const entryDepth = new Int32Array(entries);
    let maxSeq = Number.isFinite(snapshot.seq) ? snapshot.seq : bad('seq');
    for (let i = 0; i < count; i++) {
      const p = parents[i] as number;
      if (!(p >= -1 && p < i)) bad(`node ${i}: parent ${p} does not precede it`);
      const parent = p === -1 ? this.root : (nodes[p] as RadixNode);
      const label = labels[i];
      if (typeof label !== 'string' || label.length === 0) bad(`node ${i}: empty label`);
      const text = label as string;
      const first = text.charCodeAt(0);
      if (findChild(parent, first) !== null) bad(`node ${i}: duplicate first character under one parent`);
      const node = new RadixNode(text, 0, first, parent);
      this.attachChild(parent, node);
      nodes[i] = node;
      depth[i] = p === -1 ? 0 : (depth[p] as number) + 1;
      const from = entryStart[i] as number;
      const to = entryStart[i + 1] as number;
      if (!(to > from)) bad(`node ${i}: no tenant`);
      for (let e = from; e < to; e++) {
        const tenant = entryTenant[e] as number;
        if (!(tenant >= 0 && tenant <= MAX_TENANT_ID)) bad(`node ${i}: tenant ${tenant} out of range`);
        const seq = entrySeq[e] as number;
        const time = entryTime[e] as number;
        if (!Number.isFinite(seq) || !Number.isFinite(time)) bad(`node ${i}: non-finite seq or time`);
        if (findMember(node, tenant) !== null) bad(`node ${i}: tenant ${tenant} twice`);
        if (parent !== this.root) {
          const up = findMember(parent, tenant);
          if (up === null) bad(`node ${i}: tenant ${tenant} tags it but not its parent`);
          else if (up.seq < seq) bad(`node ${i}: tenant ${tenant} is more recent here than at the parent`);
        }
        this.ensureTenant(tenant);
        this.newMember(node, tenant, seq, time);
        this.tenantChars[tenant] = (this.tenantChars[tenant] as number) + text.length;
        const n = (this.tenantEntries[tenant] as number) + 1;
        this.tenantEntries[tenant] = n;
        if (n === 1) this.activeTenants++;
        this.entryCount++;
        if (seq > maxSeq) maxSeq = seq;
        entryDepth[e] = depth[i] as number;
      }
    }
    this.seq = maxSeq;
    // LRU lists: by recency, and among equal recency deeper first (a node ahead of its parent).
    const byEntry: Membership[] = [];
    for (const node of nodes) for (let j = 0; j < node.memberCount; j++) byEntry.push(memberAt(node, j));
    const order = new Uint32Array(entries);
    for (let e = 0; e < entries; e++) order[e] = e;
    order.sort((a, b) => (entrySeq[a] as number) - (entrySeq[b] as number) || (entryDepth[b] as number) - (entryDepth[a] as number) || a - b);
    for (let e = 0; e < entries; e++) {
      const m = byEntry[order[e] as number] as Membership;
      this.linkBefore(m, m.tenant, null);
    }
  }
}
