/**
 * The `route` label of the request metrics (sgl_router_requests_total, request_errors_total,
 * request_duration_seconds, /stats by_route): sgl-router's path for the three generation routes, the real
 * path for SGLang's other data routes the router forwards (embeddings, rerank, score, ...), and "other"
 * only for a path that is none of these. The set is fixed, so label cardinality stays bounded: the raw
 * path of an unknown route never becomes a label value.
 */
import type { RouteKind } from '../policies/types.js';

/** SGLang's pass-through data routes (POST, forwarded to one worker): src/frontend/router-app.ts DATA_ROUTES. */
export const PASSTHROUGH_PATHS = [
  '/v1/embeddings',
  '/v1/rerank',
  '/rerank',
  '/v1/score',
  '/encode',
  '/classify',
  '/v1/classify',
  '/v1/responses',
  '/v1/tokenize',
  '/v1/detokenize',
] as const;

/** Every label value, in index order: the index is what counters and packed samples carry. */
export const ROUTE_LABELS: readonly string[] = ['/generate', '/v1/chat/completions', '/v1/completions', ...PASSTHROUGH_PATHS, 'other'];
export const ROUTE_LABEL_COUNT = ROUTE_LABELS.length;
export const OTHER_ROUTE = ROUTE_LABEL_COUNT - 1;

const PASSTHROUGH_INDEX = new Map<string, number>(PASSTHROUGH_PATHS.map((p, i) => [p, 3 + i]));

/** The label index of a request: by its route kind, and for pass-through routes by its path (query string ignored). */
export function routeLabelIndex(route: RouteKind, path: string | undefined): number {
  switch (route) {
    case 'generate':
      return 0;
    case 'chat':
      return 1;
    case 'completions':
      return 2;
    default: {
      if (path === undefined) return OTHER_ROUTE;
      const q = path.indexOf('?');
      return PASSTHROUGH_INDEX.get(q < 0 ? path : path.slice(0, q)) ?? OTHER_ROUTE;
    }
  }
}
