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
 *
 * Modules: this one has the operations; radix-core.ts the state and the primitives that keep it
 * consistent (links, splits, tags, LRU lists, eviction); radix-node.ts nodes, label comparison and texts in
 * pieces; radix-snapshot.ts snapshot, restore and the invariant check; radix-types.ts the public types.
 */

import { RadixCore } from './radix-core.js';
import {
  checkTenant,
  checkText,
  ChunkCursor,
  chunksLength,
  findChild,
  findMember,
  matchLabel,
  type Membership,
  mostRecentTenant,
  ownCopy,
  RadixNode,
  TEXT_CHUNK_CHARS,
} from './radix-node.js';
import { checkInvariants, loadSnapshot, snapshotOf } from './radix-snapshot.js';
import type { EvictionResult, PrefixMatch, RadixSnapshot, RadixStats, RadixTreeOptions, TenantLengths, TenantStats } from './radix-types.js';

export { chunksLength, chunkText, DEFAULT_MAX_TREE_SIZE, MAX_TENANT_ID, TEXT_CHUNK_CHARS } from './radix-node.js';
export type { EvictionResult, PrefixMatch, RadixSnapshot, RadixStats, RadixTreeOptions, TenantLengths, TenantStats } from './radix-types.js';

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

export class RadixTree extends RadixCore {
  constructor(options: RadixTreeOptions = {}) {
    super(options);
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
    return snapshotOf(this);
  }

  /**
   * Rebuild a tree from a snapshot. The snapshot is validated (a malformed one throws a RangeError naming
   * the first problem) and the insert-time bound of `options` is enforced afterwards.
   */
  static restore(snapshot: RadixSnapshot, options: RadixTreeOptions = {}): RadixTree {
    const tree = new RadixTree(options);
    loadSnapshot(tree, snapshot);
    tree.evictTenantsBySize(tree.maxTenantChars);
    return tree;
  }

  /**
   * Full O(tree) consistency check for tests and debugging; throws an Error naming the first violation
   * (radix-snapshot.ts lists what it checks).
   */
  checkInvariants(): void {
    checkInvariants(this);
  }
}
