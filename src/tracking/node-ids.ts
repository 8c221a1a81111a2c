/**
 * Node (GPU) ids of the workers given at start-up, in the precedence users expect:
 *   1. --worker-node-ids, one per worker URL in order;
 *   2. --worker-node-map / the config file's `worker-node-map`, by URL: {"http://host:30001": 3};
 *   3. port order (seed 000: the lowest port is GPU 0), skipping ids already taken by 1 and 2.
 * URLs are compared normalised (normalizeWorkerUrl), so "localhost:30001" and "http://localhost:30001/" are
 * the same worker. The result goes to WorkerRegistry.addMany; /list_workers, traces and completion records
 * all read the registry's entry, so they always agree.
 */
import { readFileSync } from 'node:fs';
import { normalizeWorkerUrl } from '../workers/registry.js';
import { parseWorkerUrlMap } from '../workers/url-map.js';

const MAX_NODE_ID = 1_000_000;

function parseNodeId(v: unknown, where: string): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\s*\d+\s*$/.test(v) ? Number(v) : Number.NaN;
  if (!Number.isInteger(n) || n < 0 || n > MAX_NODE_ID) throw new Error(`${where}: '${String(v)}' is not a node id (an integer from 0 to ${MAX_NODE_ID})`);
  return n;
}

/**
 * Parse --worker-node-map: a JSON object `{"url": id, ...}`, or `url=id` pairs separated by commas or
 * whitespace, or (from a config file) the object itself.
 */
export function parseNodeMap(raw: string | Readonly<Record<string, unknown>> | undefined): Map<string, number> {
  const out = new Map<string, number>();
  for (const [key, id] of parseWorkerUrlMap(raw, '--worker-node-map', 'id', (m) => new Error(m))) {
    out.set(key, parseNodeId(id, `--worker-node-map[${key}]`));
  }
  return out;
}

/**
 * The option parser flattens an object-valued config key to "[object Object]"; read that key from the
 * config file itself (kebab, snake or camel case, as the parser accepts).
 */
export function nodeMapFromConfigFile(configPath: string): Record<string, unknown> | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(configPath, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read config file ${configPath}: ${(err as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object') return undefined;
  const o = parsed as Record<string, unknown>;
  const v = o['worker-node-map'] ?? o['worker_node_map'] ?? o['workerNodeMap'];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw new Error(`${configPath}: worker-node-map must be an object {"http://host:port": id}`);
  return v as Record<string, unknown>;
}

/** The --worker-node-map option as parsed, resolved against the config file when it came from there. */
export function resolveNodeMapOption(value: string | undefined, configPath: string | undefined): Map<string, number> {
  if (value === '[object Object]' && configPath !== undefined) return parseNodeMap(nodeMapFromConfigFile(configPath));
  return parseNodeMap(value);
}

/**
 * One node id per URL (same order as `urls`). Throws on a malformed id and on --worker-node-ids of the
 * wrong length.
 */
export function assignNodeIds(urls: readonly string[], explicitIds: readonly string[], nodeMap: ReadonlyMap<string, number>): number[] {
  if (explicitIds.length > 0 && explicitIds.length !== urls.length) {
    throw new Error(`--worker-node-ids has ${explicitIds.length} ids for ${urls.length} worker URLs`);
  }
  const parsed = urls.map((u) => normalizeWorkerUrl(u));
  const ids = new Array<number | undefined>(urls.length).fill(undefined);
  const taken = new Set<number>();
  for (let i = 0; i < parsed.length; i++) {
    const p = parsed[i] as { url: string };
    const explicit = explicitIds[i];
    const id = explicit !== undefined ? parseNodeId(explicit, '--worker-node-ids') : nodeMap.get(p.url);
    if (id === undefined) continue;
    // Two workers may share an id on purpose (two servers on one node); only the fallback avoids taken ids.
    taken.add(id);
    ids[i] = id;
  }
  // The rest by port order (then host), lowest port first, on the lowest ids still free.
  const rest = parsed
    .map((p, i) => ({ p: p as { host: string; port: number }, i }))
    .filter(({ i }) => ids[i] === undefined)
    .sort((a, b) => a.p.port - b.p.port || a.p.host.localeCompare(b.p.host));
  let next = 0;
  for (const { i } of rest) {
    while (taken.has(next)) next++;
    ids[i] = next;
    taken.add(next);
  }
  return ids as number[];
}
