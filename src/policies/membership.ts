/**
 * Membership as the policy hosts hold it: plain copies of the members (the registry's entries carry
 * upstream pools that must not cross into actor threads), split by worker group for size-aware admission,
 * and the admission prefix of a decision's reason.
 */
import type { WorkerTable } from '../actors/worker-table.js';
import { decisionFor, isCandidate } from './common.js';
import type { Decision, RequestFeatures, WorkerInfo } from './types.js';

/** The fields a policy may see, copied: safe to freeze, to clone into an actor thread, to keep. */
export function plainMembers(ws: readonly WorkerInfo[]): readonly WorkerInfo[] {
  const out: WorkerInfo[] = new Array<WorkerInfo>(ws.length);
  for (let i = 0; i < ws.length; i++) {
    const w = ws[i] as WorkerInfo;
    out[i] = w.group === undefined
      ? { slot: w.slot, generation: w.generation, url: w.url, nodeId: w.nodeId }
      : { slot: w.slot, generation: w.generation, url: w.url, nodeId: w.nodeId, group: w.group };
  }
  return Object.freeze(out);
}

/**
 * The members, and per group the members of that group. `candidatesFor(table, group)` is what a policy
 * should decide among for a request admitted to `group`: the group's members while at least one of them
 * is available, else every member (admission saw the group available a moment ago; routing must not fail
 * because it no longer is).
 */
export class GroupedMembership {
  private members: readonly WorkerInfo[] = Object.freeze([]);
  private readonly byGroup = new Map<string, readonly WorkerInfo[]>();

  get all(): readonly WorkerInfo[] {
    return this.members;
  }

  set(ws: readonly WorkerInfo[]): void {
    this.members = ws;
    this.byGroup.clear();
    const groups = new Map<string, WorkerInfo[]>();
    for (const w of ws) {
      if (w.group === undefined) continue;
      let list = groups.get(w.group);
      if (list === undefined) groups.set(w.group, (list = []));
      list.push(w);
    }
    for (const [g, list] of groups) this.byGroup.set(g, Object.freeze(list));
  }

  candidatesFor(table: WorkerTable, group: string | undefined): readonly WorkerInfo[] {
    if (group === undefined) return this.members;
    const list = this.byGroup.get(group);
    if (list === undefined) return this.members;
    for (let i = 0; i < list.length; i++) if (isCandidate(table, list[i] as WorkerInfo)) return list;
    return this.members;
  }
}

/** A decision whose reason starts with admission's (when the request went through admission). */
export function withAdmission(d: Decision | null, req: RequestFeatures): Decision | null {
  if (d === null || req.admission === undefined) return d;
  const w: WorkerInfo = { slot: d.slot, generation: d.generation, url: d.url, nodeId: 0 };
  return decisionFor(w, `${req.admission}; ${d.reason}`, d.scores);
}
