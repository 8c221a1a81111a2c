// Seed 004's custom routing policy as a Switchyard plugin: the highest throughput / (latency * (1 + queue depth)).
// Run it: switchyard serve --worker-urls ... --policy-module ./examples/plugins/throughput-latency.js
export const name = 'throughput_latency';

export function route(request, workers, context) {
  let best = null;
  let bestScore = -1;
  for (const w of workers) {
    // A worker with no finished requests yet is tried first, so every worker gets measured.
    const score = w.samples === 0 ? Number.MAX_VALUE : w.throughput / (w.latencyMs * (1 + w.queueDepth));
    if (score > bestScore || (score === bestScore && context.random() < 0.5)) [best, bestScore] = [w, score];
  }
  return best && { worker: best, reason: `score ${bestScore.toPrecision(3)} on ${best.url}`, scores: { score: bestScore } };
}
