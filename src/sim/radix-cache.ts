/**
 * A token radix tree with reference locks and LRU eviction: the simulator's RadixAttention.
 *
 * Every token in the tree occupies one KV slot. A running request locks the node at the end of its
 * cached prefix (and thereby the whole path to the root); locked tokens cannot be evicted. Eviction
 * removes the least recently used unlocked leaves first, like SGLang's RadixCache.evict.
 *
 * Edges hold views (subarray) of the inserted sequences, so inserting does not copy tokens.
 */

export class RadixNode {
  /** Children keyed by their first token. */
  readonly children = new Map<number, RadixNode>();
  lockRef = 0;
  /** Logical clock of the last match/insert that touched this node (LRU order). */
  lastAccess = 0;

  constructor(
    public parent: RadixNode | null,
    /** The tokens on the edge from the parent to this node. */
    public key: Uint32Array,
  ) {}

  get size(): number {
    return this.key.length;
  }
}

export interface MatchResult {
  /** The deepest node whose path is a prefix of the query (lock it to protect the match). */
  readonly node: RadixNode;
  /** Number of leading query tokens present in the tree. */
  readonly length: number;
}

export interface InsertResult {
  /** The node whose path equals the inserted sequence. */
  readonly node: RadixNode;
  /** Tokens that were not in the tree before (new KV slots now owned by the tree). */
  readonly added: number;
}

const EMPTY = new Uint32Array(0);

export class RadixCache {
  readonly root = new RadixNode(null, EMPTY);
  private clock = 0;
  /** Tokens held by the tree. */
  private total = 0;
  /** Tokens on paths locked by at least one request. */
  private locked = 0;
  /** Unlocked leaves: the eviction candidates. */
  private readonly evictableLeaves = new Set<RadixNode>();
  /** Tokens removed by eviction since creation. */
  evictedTotal = 0;

  constructor() {
    // The root is permanently locked so it is never a candidate and unlock walks stop there.
    this.root.lockRef = 1;
  }

  get totalSize(): number {
    return this.total;
  }
  get lockedSize(): number {
    return this.locked;
  }
  get evictableSize(): number {
    return this.total - this.locked;
  }

  /** Longest cached prefix of `tokens`; splits an edge when the match ends inside it. */
  match(tokens: Uint32Array, limit = tokens.length): MatchResult {
    const tick = ++this.clock;
    let node = this.root;
    let pos = 0;
    node.lastAccess = tick;
    while (pos < limit) {
      const child = node.children.get(tokens[pos] as number);
      if (child === undefined) break;
      const n = commonPrefix(child.key, tokens, pos, limit);
      child.lastAccess = tick;
      if (n < child.key.length) {
        node = this.split(child, n);
        pos += n;
        break;
      }
      node = child;
      pos += n;
    }
    return { node, length: pos };
  }

  /** Inserts tokens[0, length) and returns the node of the full sequence. */
  insert(tokens: Uint32Array, length = tokens.length): InsertResult {
    const tick = ++this.clock;
    let node = this.root;
    let pos = 0;
    while (pos < length) {
      const child = node.children.get(tokens[pos] as number);
      if (child === undefined) {
        const leaf = new RadixNode(node, tokens.subarray(pos, length));
        leaf.lastAccess = tick;
        if (node.children.size === 0) this.evictableLeaves.delete(node);
        node.children.set(tokens[pos] as number, leaf);
        this.total += leaf.size;
        // A new leaf under a locked path is itself unlocked (locks are per node path, set explicitly).
        this.evictableLeaves.add(leaf);
        return { node: leaf, added: length - pos };
      }
      const n = commonPrefix(child.key, tokens, pos, length);
      child.lastAccess = tick;
      if (n < child.key.length) {
        node = this.split(child, n);
        pos += n;
        continue;
      }
      node = child;
      pos += n;
    }
    return { node, added: 0 };
  }

  /** Protects the path from `node` to the root against eviction. */
  lock(node: RadixNode): void {
    for (let n: RadixNode | null = node; n !== null && n !== this.root; n = n.parent) {
      if (n.lockRef === 0) {
        this.locked += n.size;
        if (n.children.size === 0) this.evictableLeaves.delete(n);
      }
      n.lockRef++;
    }
  }

  unlock(node: RadixNode): void {
    for (let n: RadixNode | null = node; n !== null && n !== this.root; n = n.parent) {
      if (n.lockRef <= 0) throw new Error('radix cache: unlock of an unlocked node');
      n.lockRef--;
      if (n.lockRef === 0) {
        this.locked -= n.size;
        if (n.children.size === 0) this.evictableLeaves.add(n);
      }
    }
  }

  /** Evicts at least `tokens` unlocked tokens (LRU leaves first) if possible; returns how many went. */
  evict(tokens: number): number {
    if (tokens <= 0 || this.evictableLeaves.size === 0) return 0;
    const heap = new LruHeap();
    for (const leaf of this.evictableLeaves) heap.push(leaf);
    let freed = 0;
    while (freed < tokens) {
      const leaf = heap.pop();
      if (leaf === undefined) break;
      const parent = leaf.parent as RadixNode;
      parent.children.delete(leaf.key[0] as number);
      this.evictableLeaves.delete(leaf);
      leaf.parent = null;
      this.total -= leaf.size;
      freed += leaf.size;
      if (parent !== this.root && parent.children.size === 0 && parent.lockRef === 0) {
        this.evictableLeaves.add(parent);
        heap.push(parent);
      }
    }
    this.evictedTotal += freed;
    return freed;
  }

  /** Drops every unlocked token. */
  reset(): void {
    this.evict(Number.POSITIVE_INFINITY);
  }

  /** Number of nodes (excluding the root); for tests and stats. */
  nodeCount(): number {
    let count = 0;
    const stack: RadixNode[] = [this.root];
    while (stack.length > 0) {
      const n = stack.pop() as RadixNode;
      for (const c of n.children.values()) {
        count++;
        stack.push(c);
      }
    }
    return count;
  }

  /** Splits `child` after its first `at` tokens; returns the new upper node. */
  private split(child: RadixNode, at: number): RadixNode {
    const parent = child.parent as RadixNode;
    const upper = new RadixNode(parent, child.key.subarray(0, at));
    upper.lockRef = child.lockRef;
    upper.lastAccess = child.lastAccess;
    parent.children.set(upper.key[0] as number, upper);
    child.key = child.key.subarray(at);
    child.parent = upper;
    upper.children.set(child.key[0] as number, child);
    // Sizes are unchanged: the tokens moved from child to upper; lock accounting is per token, so it holds.
    return upper;
  }
}

function commonPrefix(key: Uint32Array, tokens: Uint32Array, pos: number, limit: number): number {
  const max = Math.min(key.length, limit - pos);
  let i = 0;
  while (i < max && key[i] === tokens[pos + i]) i++;
  return i;
}

/** Binary min-heap of nodes by lastAccess. */
class LruHeap {
  private readonly items: RadixNode[] = [];

  push(node: RadixNode): void {
    const a = this.items;
    a.push(node);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if ((a[p] as RadixNode).lastAccess <= node.lastAccess) break;
      a[i] = a[p] as RadixNode;
      i = p;
    }
    a[i] = node;
  }

  pop(): RadixNode | undefined {
    const a = this.items;
    if (a.length === 0) return undefined;
    const top = a[0] as RadixNode;
    const last = a.pop() as RadixNode;
    if (a.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= a.length) break;
        const r = l + 1;
        const c = r < a.length && (a[r] as RadixNode).lastAccess < (a[l] as RadixNode).lastAccess ? r : l;
        if ((a[c] as RadixNode).lastAccess >= last.lastAccess) break;
        a[i] = a[c] as RadixNode;
        i = c;
      }
      a[i] = last;
    }
    return top;
  }
}
