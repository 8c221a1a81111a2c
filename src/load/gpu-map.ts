/**
 * Which GPU served a request (seed 000's GPU tracking), in order of trust:
 *   header             X-SGLang-Worker mapped through the router's /list_workers node_id (Switchyard)
 *   header_port_order  X-SGLang-Worker mapped by port order of the distinct worker URLs listed or seen
 *                      (lowest port -> GPU 0: 30001 -> 0, 30002 -> 1, ...)
 *   traces             no header: the router's POST /v1/traces/batch named the worker
 *   estimated          no header, no trace: what the policy would have done (round_robin: send counter mod
 *                      N; random: hash of the request id mod N); an estimate, marked as one
 *   single_server      the target is one server: GPU 0
 *   unknown            nothing tells (the GPU id is left empty)
 * Port order needs every URL, so it is settled after the run (requests.csv is then rewritten once).
 */
import { normalizeUrl, portOf, type TargetInfo } from './target.js';

export const GPU_SOURCES = ['', 'header', 'header_port_order', 'traces', 'estimated', 'single_server', 'unknown'] as const;
export type GpuSource = (typeof GPU_SOURCES)[number];
export const SRC_NONE = 0;
export const SRC_HEADER = 1;
export const SRC_PORT_ORDER = 2;
export const SRC_TRACES = 3;
export const SRC_ESTIMATED = 4;
export const SRC_SINGLE = 5;
export const SRC_UNKNOWN = 6;

export class GpuMapper {
  private readonly urls: string[] = [];
  private readonly index = new Map<string, number>();
  private readonly nodeIds = new Map<string, number>();
  private finalMap: Int32Array | undefined;

  constructor(readonly target: TargetInfo) {
    for (const w of target.workers) {
      this.workerIndex(w.url);
      if (w.nodeId !== undefined) this.nodeIds.set(normalizeUrl(w.url), w.nodeId);
    }
  }

  get isSingleServer(): boolean {
    return this.target.kind === 'server';
  }

  /** Index of a worker URL in this run's table (registered on first sight). */
  workerIndex(raw: string): number {
    const url = normalizeUrl(raw);
    let i = this.index.get(url);
    if (i === undefined) {
      i = this.urls.length;
      this.urls.push(url);
      this.index.set(url, i);
      this.finalMap = undefined;
    }
    return i;
  }

  workerUrl(i: number): string {
    return this.urls[i] ?? '';
  }

  get workerCount(): number {
    return this.urls.length;
  }

  /** GPU of a worker known right away (by node_id), else -1 (settled after the run by port order). */
  immediateGpu(workerIdx: number): number {
    const url = this.urls[workerIdx];
    if (url === undefined) return -1;
    return this.nodeIds.get(url) ?? -1;
  }

  /** Final worker -> GPU map: node_id where listed, else port order (after the highest node_id). */
  gpuOf(workerIdx: number): { gpu: number; source: number } {
    const url = this.urls[workerIdx];
    if (url === undefined) return { gpu: -1, source: SRC_UNKNOWN };
    const nid = this.nodeIds.get(url);
    if (nid !== undefined) return { gpu: nid, source: SRC_HEADER };
    if (this.finalMap === undefined) this.finalMap = this.portOrder();
    return { gpu: this.finalMap[workerIdx] as number, source: SRC_PORT_ORDER };
  }

  private portOrder(): Int32Array {
    const map = new Int32Array(this.urls.length).fill(-1);
    let base = 0;
    for (const nid of this.nodeIds.values()) base = Math.max(base, nid + 1);
    const rest = this.urls
      .map((url, i) => ({ url, i, port: portOf(url) }))
      .filter((w) => !this.nodeIds.has(w.url))
      .sort((a, b) => a.port - b.port || (a.url < b.url ? -1 : a.url > b.url ? 1 : 0));
    rest.forEach((w, rank) => {
      map[w.i] = base + rank;
    });
    return map;
  }

  /** Number of GPUs for the policy estimate: listed workers, else distinct seen, else the given count. */
  gpuCount(fallback: number | undefined): number {
    if (this.urls.length > 0) return this.urls.length;
    return fallback ?? 0;
  }
}

/** FNV-1a of a string (the "hash of request id" of seed 000's random estimate). */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Seed 000's policy-based estimate; undefined when the policy has none. */
export function estimateGpu(policy: string, sendOrder: number, requestId: string, n: number): number | undefined {
  if (n <= 0) return undefined;
  if (policy === 'round_robin') return sendOrder % n;
  if (policy === 'random') return fnv1a(requestId) % n;
  return undefined;
}
