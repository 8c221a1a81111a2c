/** The radix tree's public types (re-exported by radix-tree.ts). */

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
