/**
 * A simulated server's own metrics: the latency histograms and windows its Prometheus exposition reports
 * (SGLang's names, metrics.ts), and the totals its /sim/stats reports. The engine updates them on its hot
 * path; nothing here allocates per token.
 */
import { performance } from 'node:perf_hooks';
import { Histogram, HitRateWindow, RateWindow, type MetricsSnapshot } from './metrics.js';

/** Totals and gauges of one engine (SimServer.stats() adds HTTP-level figures). */
export interface EngineStats {
  waiting: number;
  running: number;
  kvCapacity: number;
  kvUsedTokens: number;
  kvFreeTokens: number;
  cacheTokens: number;
  cacheLockedTokens: number;
  cacheEvictableTokens: number;
  privateTokens: number;
  evictedTokens: number;
  newTokenRatio: number;
  totals: {
    submitted: number;
    finished: number;
    aborted: number;
    promptTokens: number;
    cachedTokens: number;
    generatedTokens: number;
    steps: number;
    prefillSteps: number;
    decodeSteps: number;
    decodeSeqSteps: number;
    prefillTokens: number;
    retractions: number;
    /** Modelled busy time (sum of step durations), ms. */
    busyMs: number;
    /** Real CPU time spent in step processing (batching, tokens, sink writes), ms. */
    stepCpuMs: number;
  };
}

/** The gauges a snapshot needs from the engine. */
export interface EngineGauges {
  readonly numRunning: number;
  readonly numWaiting: number;
  readonly usedTokens: number;
  readonly kvCapacity: number;
}

export class EngineMetrics {
  readonly ttft = new Histogram();
  readonly itl = new Histogram();
  readonly e2e = new Histogram();
  readonly queueTime = new Histogram();
  readonly genRate = new RateWindow();
  readonly hitRate = new HitRateWindow();
  readonly totals: EngineStats['totals'] = {
    submitted: 0,
    finished: 0,
    aborted: 0,
    promptTokens: 0,
    cachedTokens: 0,
    generatedTokens: 0,
    steps: 0,
    prefillSteps: 0,
    decodeSteps: 0,
    decodeSeqSteps: 0,
    prefillTokens: 0,
    retractions: 0,
    busyMs: 0,
    stepCpuMs: 0,
  };

  snapshot(g: EngineGauges): MetricsSnapshot {
    const now = performance.now();
    return {
      numRunningReqs: g.numRunning,
      numQueueReqs: g.numWaiting,
      numUsedTokens: g.usedTokens,
      tokenUsage: g.usedTokens / g.kvCapacity,
      cacheHitRate: this.hitRate.rate(),
      genThroughput: this.genRate.rate(now),
      promptTokensTotal: this.totals.promptTokens,
      generationTokensTotal: this.totals.generatedTokens,
      cachedTokensTotal: this.totals.cachedTokens,
      numRequestsTotal: this.totals.finished,
      numAbortedRequestsTotal: this.totals.aborted,
      ttft: this.ttft,
      itl: this.itl,
      e2e: this.e2e,
      queueTime: this.queueTime,
    };
  }
}
