/** Shared helpers of the metrics tests. */
import { Rec, REC_HEADER } from '../../src/metrics/stats-protocol.js';

export interface Sample {
  worker?: number;
  route?: number;
  status?: 0 | 1 | 2;
  stream?: boolean;
  durationMs?: number;
  e2eMs?: number;
  ttftMs?: number;
  queueMs?: number;
  serverQueueMs?: number;
  input?: number;
  output?: number;
  cached?: number;
  itlMs?: number[];
}

/** Pack samples exactly as StatsHost does (stats-protocol.ts layout). */
export function pack(samples: readonly Sample[]): Float64Array {
  const out: number[] = [];
  for (const s of samples) {
    const rec = new Array<number>(REC_HEADER).fill(-1);
    rec[Rec.Worker] = s.worker ?? 0;
    rec[Rec.Route] = s.route ?? 1;
    rec[Rec.Status] = s.status ?? 0;
    rec[Rec.Stream] = s.stream === false ? 0 : 1;
    rec[Rec.DurationUs] = (s.durationMs ?? s.e2eMs ?? 1) * 1000;
    rec[Rec.E2eUs] = s.e2eMs === undefined ? -1 : s.e2eMs * 1000;
    rec[Rec.TtftUs] = s.ttftMs === undefined ? -1 : s.ttftMs * 1000;
    rec[Rec.QueueUs] = s.queueMs === undefined ? -1 : s.queueMs * 1000;
    rec[Rec.ServerQueueUs] = s.serverQueueMs === undefined ? -1 : s.serverQueueMs * 1000;
    rec[Rec.InputTokens] = s.input ?? 0;
    rec[Rec.OutputTokens] = s.output ?? 0;
    rec[Rec.CachedTokens] = s.cached ?? 0;
    const gaps = s.itlMs ?? [];
    rec[Rec.ItlCount] = gaps.length;
    out.push(...rec, ...gaps);
  }
  return Float64Array.from(out);
}

/** |a - b| <= tol * |b| (HDR with 2 significant digits is within 1%). */
export function near(a: number | null | undefined, b: number, tol = 0.01): boolean {
  return typeof a === 'number' && Math.abs(a - b) <= tol * Math.abs(b) + 1e-9;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
