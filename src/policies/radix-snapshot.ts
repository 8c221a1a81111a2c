/**
 * The radix tree as a flat picture and back (RadixTree.snapshot / RadixTree.restore: the debug bundle,
 * tests), and the O(tree) consistency check (RadixTree.checkInvariants).
 */
import type { RadixCore } from './radix-core.js';
import { COPY_SLACK, findChild, findMember, INDEX_CHILDREN_ABOVE, MAX_TENANT_ID, memberAt, Membership, RadixNode } from './radix-node.js';
import type { RadixSnapshot } from './radix-types.js';

/** The tree in preorder (parents before children), root excluded. */
export function snapshotOf(tree: RadixCore): RadixSnapshot {
  const parents = new Int32Array(tree.nodeCount);
  const labels: string[] = new Array<string>(tree.nodeCount);
  const entryStart = new Int32Array(tree.nodeCount + 1);
  const entryTenant = new Int32Array(tree.entryCount);
  const entrySeq = new Float64Array(tree.entryCount);
  const entryTime = new Float64Array(tree.entryCount);
  // Iterative preorder: a stack of nodes and their parents' indices.
  const stack: RadixNode[] = [];
  const stackParent: number[] = [];
  for (let ch = tree.root.firstChild; ch !== null; ch = ch.nextSibling) {
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
  return { version: 1, seq: tree.seq, parents, labels, entryStart, entryTenant, entrySeq, entryTime };
}

/**
 * Full O(tree) consistency check for tests and debugging; throws an Error naming the first violation.
 * Checks links, child indexes, label storage bounds, that every node has a tag, that tag sets shrink
 * going down, per-tenant counts against a recount, and that each LRU list holds exactly the tenant's
 * tags with every node ahead of its parent.
 */
export function checkInvariants(tree: RadixCore): void {
  const fail = (what: string): never => {
    throw new Error(`radix tree invariant: ${what}`);
  };
  const chars: number[] = [];
  const entries: number[] = [];
  let nodes = 0;
  let total = 0;
  let entryTotal = 0;
  const stack: RadixNode[] = [tree.root];
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
    if (node === tree.root) continue;
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
      if (parent !== tree.root) {
        const up = findMember(parent, m.tenant);
        if (up === null) fail(`tenant ${m.tenant} tags a node but not its parent`);
        else if (up.seq < m.seq) fail('a parent is older than its child');
      }
    }
  }
  if (nodes !== tree.nodeCount) fail(`nodeCount ${tree.nodeCount} != ${nodes}`);
  if (total !== tree.charCount) fail(`charCount ${tree.charCount} != ${total}`);
  if (entryTotal !== tree.entryCount) fail(`entryCount ${tree.entryCount} != ${entryTotal}`);
  let active = 0;
  for (let t = 0; t < Math.max(tree.tenantChars.length, chars.length); t++) {
    if ((tree.tenantChars[t] ?? 0) !== (chars[t] ?? 0)) fail(`tenant ${t} chars ${tree.tenantChars[t] ?? 0} != ${chars[t] ?? 0}`);
    const e = entries[t] ?? 0;
    if ((tree.tenantEntries[t] ?? 0) !== e) fail(`tenant ${t} entries`);
    if (e > 0) active++;
    // The LRU list: exactly the tenant's tags, and a node's tag ahead of its parent's.
    const position = new Map<RadixNode, number>();
    let listed = 0;
    let prev: Membership | null = null;
    for (let m = tree.lruHead[t] ?? null; m !== null; m = m.next) {
      if (m.prev !== prev) fail(`tenant ${t} LRU back-links`);
      if (m.tenant !== t || findMember(m.node, t) !== m) fail(`tenant ${t} LRU holds a foreign or removed tag`);
      position.set(m.node, listed++);
      prev = m;
    }
    if ((tree.lruTail[t] ?? null) !== prev) fail(`tenant ${t} LRU tail`);
    if (listed !== e) fail(`tenant ${t} LRU length ${listed} != ${e}`);
    for (const [node, at] of position) {
      const parent = node.parent as RadixNode;
      if (parent !== tree.root && (position.get(parent) ?? -1) < at) fail(`tenant ${t} LRU puts a parent before its child`);
    }
  }
  if (active !== tree.activeTenants) fail('activeTenants');
}

/** Rebuild into an empty tree; a malformed snapshot throws a RangeError naming the first problem. */
export function loadSnapshot(tree: RadixCore, snapshot: RadixSnapshot): void {
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
    const parent = p === -1 ? tree.root : (nodes[p] as RadixNode);
    const label = labels[i];
    if (typeof label !== 'string' || label.length === 0) bad(`node ${i}: empty label`);
    const text = label as string;
    const first = text.charCodeAt(0);
    if (findChild(parent, first) !== null) bad(`node ${i}: duplicate first character under one parent`);
    const node = new RadixNode(text, 0, first, parent);
    tree.attachChild(parent, node);
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
      if (parent !== tree.root) {
        const up = findMember(parent, tenant);
        if (up === null) bad(`node ${i}: tenant ${tenant} tags it but not its parent`);
        else if (up.seq < seq) bad(`node ${i}: tenant ${tenant} is more recent here than at the parent`);
      }
      tree.ensureTenant(tenant);
      tree.newMember(node, tenant, seq, time);
      tree.tenantChars[tenant] = (tree.tenantChars[tenant] as number) + text.length;
      const n = (tree.tenantEntries[tenant] as number) + 1;
      tree.tenantEntries[tenant] = n;
      if (n === 1) tree.activeTenants++;
      tree.entryCount++;
      if (seq > maxSeq) maxSeq = seq;
      entryDepth[e] = depth[i] as number;
    }
  }
  tree.seq = maxSeq;
  // LRU lists: by recency, and among equal recency deeper first (a node ahead of its parent).
  const byEntry: Membership[] = [];
  for (const node of nodes) for (let j = 0; j < node.memberCount; j++) byEntry.push(memberAt(node, j));
  const order = new Uint32Array(entries);
  for (let e = 0; e < entries; e++) order[e] = e;
  order.sort((a, b) => (entrySeq[a] as number) - (entrySeq[b] as number) || (entryDepth[b] as number) - (entryDepth[a] as number) || a - b);
  for (let e = 0; e < entries; e++) {
    const m = byEntry[order[e] as number] as Membership;
    tree.linkBefore(m, m.tenant, null);
  }
}
