/**
 * The batching model seen through the HTTP API: figures are read from what the server reports
 * (meta_info, /metrics, /get_load), compared within one test, with wide margins.
 */
import t from 'tap';
import { startSimFleet } from '../../src/sim/fleet.js';
import { getJson, metric, metrics, postJson, postStream, promptOf, rawRequest, waitFor } from './helpers.js';

/** Mean TTFT (s) of the requests run by `fn`, from the server's histogram. */
async function ttftOf(url: string, fn: () => Promise<unknown>): Promise<number> {
  const before = await metrics(url);
  await fn();
  const after = await metrics(url);
  const sum = metric(after, 'sglang:time_to_first_token_seconds_sum') - metric(before, 'sglang:time_to_first_token_seconds_sum');
  const count = metric(after, 'sglang:time_to_first_token_seconds_count') - metric(before, 'sglang:time_to_first_token_seconds_count');
  return sum / count;
}

async function itlOf(url: string, fn: () => Promise<unknown>): Promise<number> {
  const before = await metrics(url);
  await fn();
  const after = await metrics(url);
  const sum = metric(after, 'sglang:inter_token_latency_seconds_sum') - metric(before, 'sglang:inter_token_latency_seconds_sum');
  const count = metric(after, 'sglang:inter_token_latency_seconds_count') - metric(before, 'sglang:inter_token_latency_seconds_count');
  return sum / count;
}

t.test('TTFT grows with uncached prompt length; a repeated prefix is cached and cuts TTFT', async (t) => {
  // Model figures at time-scale 1: 16 tokens ~10.6 ms, 6000 uncached ~220 ms, 6000 cached ~10 ms.
  // Server-side TTFT also holds real CPU time (JSON, tokenizer; slow while the JIT warms up), hence
  // real time and 3x margins against a predicted 20x.
  const fleet = await startSimFleet({ port: 0, timeScale: 1 });
  t.teardown(() => fleet.close());
  const url = fleet.urls[0] as string;
  const gen = (text: string) => postJson(`${url}/generate`, { text, sampling_params: { max_new_tokens: 1 } });
  const short = await ttftOf(url, () => gen(promptOf(16, 1)));
  const long = promptOf(6000, 2);
  let first: any;
  const uncached = await ttftOf(url, async () => (first = await gen(long)));
  t.equal(first.body.meta_info.cached_tokens, 0);
  t.ok(uncached > 3 * short, `6000 uncached tokens: TTFT ${(uncached * 1000).toFixed(2)} ms > 3x a 16-token prompt ${(short * 1000).toFixed(2)} ms`);
  let second: any;
  const cached = await ttftOf(url, async () => (second = await gen(long)));
  t.equal(second.body.meta_info.cached_tokens, 5999, 'cached_tokens reports the hit');
  t.ok(cached < uncached / 3, `cached TTFT ${(cached * 1000).toFixed(2)} ms < 1/3 of uncached ${(uncached * 1000).toFixed(2)} ms`);
  // A shared prefix with a new suffix: only the suffix is computed.
  const third = await gen(long.slice(0, 4000 * 4) + promptOf(100, 3));
  t.equal(third.body.meta_info.cached_tokens, 4000);
  const m = await metrics(url);
  t.ok(metric(m, 'sglang:cache_hit_rate') > 0.4, 'the hit rate gauge reflects the hits');
});

t.test('ITL grows with the batch size', async (t) => {
  const fleet = await startSimFleet({ port: 0, timeScale: 0.05, decodePerSeqMs: 0.5 });
  t.teardown(() => fleet.close());
  const url = fleet.urls[0] as string;
  const body = (i: number) => ({ text: promptOf(32, 10 + i), sampling_params: { max_new_tokens: 40, ignore_eos: true } });
  const alone = await itlOf(url, () => postJson(`${url}/generate`, body(0)));
  const batched = await itlOf(url, () => Promise.all(Array.from({ length: 48 }, (_, i) => postJson(`${url}/generate`, body(i + 1)))));
  t.ok(batched > 2 * alone, `ITL with 48 running ${(batched * 1000).toFixed(2)} ms > 2x alone ${(alone * 1000).toFixed(2)} ms`);
});

t.test('past max-running-requests a queue forms, visible in /get_load, /metrics and queue_time', async (t) => {
  const fleet = await startSimFleet({ port: 0, timeScale: 0.05, maxRunningRequests: 4 });
  t.teardown(() => fleet.close());
  const url = fleet.urls[0] as string;
  const inflight = Array.from({ length: 12 }, (_, i) =>
    postJson(`${url}/generate`, { text: promptOf(20, 30 + i), sampling_params: { max_new_tokens: 200, ignore_eos: true } }),
  );
  let load: any;
  await waitFor(async () => {
    load = (await getJson(`${url}/get_load`)).body[0];
    return load.num_waiting_reqs > 0;
  }, 5000, 'a waiting queue');
  t.ok(load.num_reqs <= 12 && load.num_reqs - load.num_waiting_reqs <= 4, `running ${load.num_reqs - load.num_waiting_reqs} <= 4`);
  t.ok(load.num_tokens > 0, 'running requests hold KV tokens');
  const m = await metrics(url);
  t.ok(metric(m, 'sglang:num_queue_reqs') > 0);
  t.ok(metric(m, 'sglang:num_running_reqs') <= 4);
  const results = await Promise.all(inflight);
  const queueTimes = results.map((r) => r.body.meta_info.queue_time as number);
  const late = queueTimes.slice(4);
  t.ok(late.every((q) => q > 0), 'requests past the cap report queue time');
  t.ok(Math.max(...late) > 10 * Math.max(...queueTimes.slice(0, 4), 1e-6), 'they waited much longer than the first four');
  const idle = (await getJson(`${url}/get_load`)).body[0];
  t.same(idle, { dp_rank: 0, num_reqs: 0, num_waiting_reqs: 0, num_tokens: 0 });
});

t.test('a small KV capacity evicts unreferenced prefixes LRU', async (t) => {
  const fleet = await startSimFleet({ port: 0, timeScale: 0.02, maxTotalTokens: 4000 });
  t.teardown(() => fleet.close());
  const url = fleet.urls[0] as string;
  const gen = (seed: number) => postJson(`${url}/generate`, { text: promptOf(1000, 50 + seed), sampling_params: { max_new_tokens: 1 } });
  await gen(0);
  t.equal((await gen(0)).body.meta_info.cached_tokens, 999, 'cached while there is room');
  for (let i = 1; i <= 4; i++) await gen(i);
  const stats = fleet.servers[0]!.stats();
  t.ok(stats.evictedTokens >= 1000, `evicted ${stats.evictedTokens} tokens`);
  t.ok(stats.cacheTokens <= 4000);
  t.equal((await gen(0)).body.meta_info.cached_tokens, 0, 'the least recently used prompt was evicted');
  t.equal((await gen(4)).body.meta_info.cached_tokens, 999, 'the most recent one survived');
});

t.test('prefill interrupts decoding (ITL of running streams includes prefill steps)', async (t) => {
  const fleet = await startSimFleet({ port: 0, timeScale: 0.05 });
  t.teardown(() => fleet.close());
  const url = fleet.urls[0] as string;
  const stream = postStream(`${url}/generate`, { text: promptOf(10, 60), stream: true, sampling_params: { max_new_tokens: 400, ignore_eos: true } });
  await waitFor(() => fleet.servers[0]!.stats().running === 1, 5000, 'the stream to run');
  const big = rawRequest(`${url}/generate`, 'POST', JSON.stringify({ text: promptOf(8000, 61), sampling_params: { max_new_tokens: 1 } }));
  await big.promise;
  const s = await stream;
  t.ok(s.done);
  const st = fleet.servers[0]!.stats();
  t.ok(st.totals.prefillSteps >= 2 && st.totals.decodeSteps >= 399);
});
