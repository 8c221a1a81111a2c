/**
 * The radix tree's state and the primitives that keep it consistent: linking nodes, splitting edges,
 * tagging nodes with tenants, the per-tenant LRU lists and eviction. RadixTree (radix-tree.ts) extends it
 * with the operations; radix-snapshot.ts reads and rebuilds it. Its members are public for those two
 * modules only: use RadixTree's methods.
 */
import {
  COPY_SLACK,
  DEFAULT_MAX_TREE_SIZE,
  DROP_INDEX_BELOW,
  findMember,
  INDEX_CHILDREN_ABOVE,
  Membership,
  memberAt,
  ownCopy,
  RadixNode,
  V8_SLICE_MIN,
} from './radix-node.js';
import type { EvictionResult, RadixTreeOptions } from './radix-types.js';

export class RadixCore {
  readonly maxTenantChars: number;
  readonly root = new RadixNode('', 0, -1, null);
  seq = 0;
  nodeCount = 0;
  charCount = 0;
  entryCount = 0;
  /** Tenants with at least one tag. */
  activeTenants = 0;
  // Per tenant, indexed by id (grown on demand).
  readonly tenantChars: number[] = [];
  readonly tenantEntries: number[] = [];
  readonly lruHead: (Membership | null)[] = [];
  readonly lruTail: (Membership | null)[] = [];
  // Reused by prefixMatchTenants: the matched path and the matched length at the end of each node.
  readonly pathNodes: (RadixNode | null)[] = [];
  readonly pathEnds: number[] = [];
  /** Probes so far (HotnessProbe's clock). */
  probes = 0;

  constructor(options: RadixTreeOptions = {}) {
    const max = options.maxTenantChars ?? DEFAULT_MAX_TREE_SIZE;
    if (!(Number.isInteger(max) && max >= 0)) {
      throw new RangeError(`radix tree: maxTenantChars must be a non-negative integer, got ${String(max)}`);
    }
    this.maxTenantChars = max;
  }

  ensureTenant(tenant: number): void {
    while (this.tenantChars.length <= tenant) {
      this.tenantChars.push(0);
      this.tenantEntries.push(0);
      this.lruHead.push(null);
      this.lruTail.push(null);
    }
  }

  attachChild(parent: RadixNode, child: RadixNode): void {
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

  detachLeaf(node: RadixNode): void {
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
  split(node: RadixNode, k: number): RadixNode {
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

  newMember(node: RadixNode, tenant: number, seq: number, time: number): Membership {
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
  dropMember(node: RadixNode, m: Membership): void {
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
  addMember(node: RadixNode, tenant: number, seq: number, time: number, cursor: Membership | null): Membership {
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
  touch(node: RadixNode, tenant: number, seq: number, time: number, cursor: Membership | null): Membership {
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
  touchPath(node: RadixNode, tenant: number, time: number): void {
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

  linkBefore(m: Membership, tenant: number, cursor: Membership | null): void {
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

  unlink(m: Membership, tenant: number): void {
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
  evictTenant(tenant: number, maxSize: number): EvictionResult {
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
}
