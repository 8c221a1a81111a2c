/**
 * The scheduler model without HTTP: stamps are the virtual clock's, so the figures are the model's
 * own (deterministic up to the moment a request arrives).
 */
import t from 'tap';
import { EOS_TOKEN_ID, SimEngine, type RequestSink, type SimRequest, type SubmitSpec } from '../../src/sim/engine.js';
import { resolveSimOptions, type SimOptions } from '../../src/sim/options.js';
import { tokenize } from '../../src/util/tokenizer.js';
import { promptOf, waitFor } from './helpers.js';

function engineWith(o: Partial<SimOptions>): SimEngine {
  return new SimEngine(resolveSimOptions({ timeScale: 0.02, ...o }), 0);
}

let ridCounter = 0;
function spec(prompt: Uint32Array, over: Partial<SubmitSpec> = {}): SubmitSpec {
  return {
    rid: `r${ridCounter++}`,
    promptIds: prompt,
    maxNewTokens: 16,
    minNewTokens: 0,
    ignoreEos: true,
    stop: null,
    stopTokenIds: null,
    createdAt: performance.now(),
    index: 0,
    ...over,
  };
}

/** Submits and resolves with the finished request; counts onTokens calls. */
function run(engine: SimEngine, s: SubmitSpec): { req: SimRequest; done: Promise<SimRequest>; tokenCalls: () => number } {
  let calls = 0;
  let resolve!: (r: SimRequest) => void;
  const done = new Promise<SimRequest>((r) => (resolve = r));
  const sink: RequestSink = { onTokens: () => void calls++, onFinish: (r) => resolve(r) };
  const req = engine.submit(s, sink);
  return { req, done, tokenCalls: () => calls };
}

const ttftMs = (r: SimRequest): number => r.firstTokenAt - r.spec.createdAt;

t.test('TTFT grows with uncached prompt tokens; a cached prefix cuts it and is reported', async (t) => {
  // Time-scale 1 (10.35 ms vs 150 ms modelled): TTFT also holds real CPU time between submit and the
  // step, which a cold JIT or a loaded machine can stretch to milliseconds.
  const e = engineWith({ timeScale: 1 });
  t.teardown(() => e.stop());
  const long = tokenize(promptOf(4000, 1));
  const short = tokenize(promptOf(40, 2));
  await run(e, spec(tokenize(promptOf(40, 3)), { maxNewTokens: 1 })).done; // warm-up
  const a = await run(e, spec(short, { maxNewTokens: 1 })).done;
  const b = await run(e, spec(long, { maxNewTokens: 1 })).done;
  t.equal(b.cachedTokens, 0);
  t.ok(ttftMs(b) > 3 * ttftMs(a), `long uncached TTFT ${ttftMs(b).toFixed(3)} ms > 3x short ${ttftMs(a).toFixed(3)} ms`);
  const c = await run(e, spec(long, { maxNewTokens: 1 })).done;
  t.equal(c.cachedTokens, 3999, 'all but the last prompt token come from the cache');
  t.ok(ttftMs(c) < ttftMs(b) / 3, `cached TTFT ${ttftMs(c).toFixed(3)} ms < 1/3 of uncached ${ttftMs(b).toFixed(3)} ms`);
  const st = e.stats();
  t.equal(st.kvUsedTokens, 0, 'nothing held once idle');
  t.ok(st.cacheTokens >= 4000, 'the finished sequences stay cached');
});

t.test('decode steps slow down with batch size (ITL grows)', async (t) => {
  const e = engineWith({ decodePerSeqMs: 0.5 });
  t.teardown(() => e.stop());
  const itl = (r: SimRequest): number => (r.lastTokenAt - r.firstTokenAt) / (r.completionTokens - 1);
  const solo = await run(e, spec(tokenize(promptOf(20, 3)), { maxNewTokens: 30 })).done;
  const batch = await Promise.all(Array.from({ length: 32 }, (_, i) => run(e, spec(tokenize(promptOf(20, 100 + i)), { maxNewTokens: 30 })).done));
  const meanBatch = batch.reduce((s, r) => s + itl(r), 0) / batch.length;
  t.ok(meanBatch > 2 * itl(solo), `ITL at batch 32 ${meanBatch.toFixed(3)} ms > 2x ITL alone ${itl(solo).toFixed(3)} ms`);
  t.equal(e.stats().totals.decodeSeqSteps > e.stats().totals.decodeSteps, true, 'decode steps carried several sequences');
});

t.test('max_running_requests caps the batch; the rest queue and report queue time', async (t) => {
  const e = engineWith({ maxRunningRequests: 2 });
  t.teardown(() => e.stop());
  const runs = Array.from({ length: 6 }, (_, i) => run(e, spec(tokenize(promptOf(30, 200 + i)), { maxNewTokens: 20 })));
  await new Promise((r) => setTimeout(r, 0));
  const reqs = await Promise.all(runs.map((x) => x.done));
  t.ok(reqs.slice(2).every((r) => r.queueTimeSec > 0), 'requests past the cap waited');
  t.ok(reqs[5]!.queueTimeSec > reqs[2]!.queueTimeSec, 'later requests waited longer');
  const order = [...reqs].sort((a, b) => a.admittedAt - b.admittedAt).map((r) => r.rid);
  t.same(order, reqs.map((r) => r.rid), 'FCFS admission');
});

t.test('a queue is visible while it exists', async (t) => {
  const e = engineWith({ maxRunningRequests: 1 });
  t.teardown(() => e.stop());
  const runs = Array.from({ length: 3 }, (_, i) => run(e, spec(tokenize(promptOf(10, 300 + i)), { maxNewTokens: 5000 })));
  t.equal(e.numWaiting + e.numRunning, 3);
  await new Promise((r) => setTimeout(r, 5));
  t.equal(e.numRunning, 1);
  t.equal(e.numWaiting, 2);
  for (const x of runs) e.abort(x.req);
  t.equal(e.numWaiting, 0);
  t.equal(e.numRunning, 0);
});

t.test('long prompts are prefilled in chunks of chunked_prefill_size', async (t) => {
  const e = engineWith({ chunkedPrefillSize: 1000, maxPrefillTokens: 1000 });
  t.teardown(() => e.stop());
  const r = await run(e, spec(tokenize(promptOf(3500, 4)), { maxNewTokens: 2 })).done;
  t.equal(e.stats().totals.prefillSteps, 4, '3500 tokens in 4 prefill steps');
  t.equal(e.stats().totals.prefillTokens, 3500);
  t.equal(r.completionTokens, 2);
});

t.test('ignore_eos gives exactly max_new_tokens; otherwise a seeded length with EOS', async (t) => {
  const e = engineWith({ outputLenMedian: 5, outputLenSigma: 0.5 });
  t.teardown(() => e.stop());
  const exact = await run(e, spec(tokenize(promptOf(8, 5)), { maxNewTokens: 64, ignoreEos: true })).done;
  t.equal(exact.completionTokens, 64);
  t.same(exact.finishReason, { type: 'length', length: 64 });
  t.equal(exact.text.length, 64 * 4, 'each generated token is 4 characters');
  const natural = await Promise.all(Array.from({ length: 20 }, (_, i) => run(e, spec(tokenize(promptOf(8, 400 + i)), { maxNewTokens: 64, ignoreEos: false })).done));
  const stopped = natural.filter((r) => r.finishReason?.type === 'stop');
  t.ok(stopped.length >= 15, `most requests end early with a median of 5 (${stopped.length}/20)`);
  for (const r of stopped) {
    t.same(r.finishReason, { type: 'stop', matched: EOS_TOKEN_ID });
    t.equal(r.outputIds[r.outputIds.length - 1], EOS_TOKEN_ID);
    t.ok(r.completionTokens < 64);
  }
  const capped = await run(e, spec(tokenize(promptOf(8, 6)), { maxNewTokens: 1, ignoreEos: false })).done;
  t.same(capped.finishReason, { type: 'length', length: 1 });
  // Two fresh engines with the same seed and the same submissions draw the same lengths.
  const lengths = async (): Promise<number[]> => {
    const fresh = engineWith({ outputLenMedian: 5, outputLenSigma: 0.5 });
    t.teardown(() => fresh.stop());
    const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => run(fresh, spec(tokenize(promptOf(8, 400 + i)), { maxNewTokens: 64, ignoreEos: false })).done));
    return rs.map((r) => r.completionTokens);
  };
  t.same(await lengths(), await lengths(), 'the seed fixes the length distribution');
});

t.test('max_new_tokens 0 finishes after prefill; stop strings and stop token ids end early', async (t) => {
  const e = engineWith({});
  t.teardown(() => e.stop());
  const zero = await run(e, spec(tokenize(promptOf(12, 7)), { maxNewTokens: 0 })).done;
  t.equal(zero.completionTokens, 0);
  t.same(zero.finishReason, { type: 'length', length: 0 });
  const s = await run(e, spec(tokenize(promptOf(12, 8)), { maxNewTokens: 500, stop: [' the'] })).done;
  t.same(s.finishReason, { type: 'stop', matched: ' the' });
  t.notOk(s.text.includes(' the'), 'the stop string is trimmed');
  const theId = tokenize(' the')[0]!;
  const st = await run(e, spec(tokenize(promptOf(12, 9)), { maxNewTokens: 500, stopTokenIds: [theId] })).done;
  t.same(st.finishReason, { type: 'stop', matched: theId });
  t.equal(st.outputIds[st.outputIds.length - 1], theId);
});

t.test('KV pressure: unreferenced cache is evicted LRU, running requests keep their prefix', async (t) => {
  const e = engineWith({ maxTotalTokens: 3000, decodeBaseMs: 20 });
  t.teardown(() => e.stop());
  const hold = tokenize(promptOf(800, 10));
  // A long-running request locks its 800-token prefix while other prompts churn the cache.
  const holder = run(e, spec(hold, { maxNewTokens: 400 }));
  for (let i = 0; i < 6; i++) await run(e, spec(tokenize(promptOf(700, 20 + i)), { maxNewTokens: 2 })).done;
  t.ok(e.stats().evictedTokens > 0, 'churn evicted cached tokens');
  t.ok(e.stats().kvUsedTokens + e.stats().cacheEvictableTokens <= 3000, 'never above capacity');
  const again = await run(e, spec(hold, { maxNewTokens: 1 })).done;
  t.equal(again.cachedTokens, 799, 'the running request’s prefix was locked, so it is still cached');
  const first = await run(e, spec(tokenize(promptOf(700, 20)), { maxNewTokens: 1 })).done;
  t.equal(first.cachedTokens, 0, 'the oldest unreferenced prompt was evicted');
  e.abort(holder.req);
  t.equal(e.stats().kvUsedTokens, 0, 'abort frees the holder’s KV');
});

t.test('decode out of KV retracts requests; they resume and finish with every token', async (t) => {
  const e = engineWith({ maxTotalTokens: 1000, scheduleConservativeness: 0.1 });
  t.teardown(() => e.stop());
  const reqs = await Promise.all(Array.from({ length: 4 }, (_, i) => run(e, spec(tokenize(promptOf(100, 40 + i)), { maxNewTokens: 400 })).done));
  const st = e.stats();
  t.ok(st.totals.retractions > 0, `retractions happened (${st.totals.retractions})`);
  for (const r of reqs) {
    t.equal(r.completionTokens, 400);
    t.equal(r.text.length, 1600);
  }
  t.equal(st.kvUsedTokens, 0);
  t.ok(st.cacheTokens <= 1000);
});

t.test('abort removes a request from the queue, a chunked prefill or the running batch and frees its KV', async (t) => {
  const e = engineWith({ maxRunningRequests: 2, chunkedPrefillSize: 256 });
  t.teardown(() => e.stop());
  const running = [0, 1].map((i) => run(e, spec(tokenize(promptOf(50, 60 + i)), { maxNewTokens: 1000 })));
  const queued = [2, 3, 4].map((i) => run(e, spec(tokenize(promptOf(50, 60 + i)), { maxNewTokens: 1000 })));
  await waitFor(() => e.numRunning === 2 && running.every((x) => x.req.state === 'running'), 5000, 'two running');
  t.equal(e.numRunning, 2);
  t.equal(e.numWaiting, 3);
  t.ok(e.stats().kvUsedTokens > 0);
  for (const x of [...running, ...queued]) e.abort(x.req);
  t.equal(e.numRunning, 0);
  t.equal(e.numWaiting, 0);
  t.equal(e.stats().kvUsedTokens, 0);
  t.equal(e.stats().privateTokens, 0);
  t.equal(e.stats().totals.aborted, 5);
  // A chunked prefill in flight.
  const big = run(e, spec(tokenize(promptOf(3000, 70)), { maxNewTokens: 5 }));
  await new Promise((r) => setTimeout(r, 1));
  e.abort(big.req);
  t.equal(e.stats().kvUsedTokens, 0);
  t.equal(e.stats().privateTokens, 0);
  // The engine still works afterwards.
  const after = await run(e, spec(tokenize(promptOf(20, 71)), { maxNewTokens: 3 })).done;
  t.equal(after.completionTokens, 3);
});

t.test('slow-factor multiplies step times per server', async (t) => {
  const o = resolveSimOptions({ timeScale: 0.02, slowFactor: [1, 4] });
  const fast = new SimEngine(o, 0);
  const slow = new SimEngine(o, 1);
  t.teardown(() => {
    fast.stop();
    slow.stop();
  });
  const p = tokenize(promptOf(200, 80));
  const [a, b] = await Promise.all([run(fast, spec(p, { maxNewTokens: 10 })).done, run(slow, spec(p, { maxNewTokens: 10 })).done]);
  const decode = (r: SimRequest): number => r.lastTokenAt - r.firstTokenAt;
  t.ok(decode(b) > 2.5 * decode(a), `slow server decode ${decode(b).toFixed(2)} ms vs fast ${decode(a).toFixed(2)} ms`);
});

t.test('flush_cache only when idle', async (t) => {
  const e = engineWith({});
  t.teardown(() => e.stop());
  await run(e, spec(tokenize(promptOf(100, 90)), { maxNewTokens: 2 })).done;
  t.ok(e.cache.totalSize > 0);
  const busy = run(e, spec(tokenize(promptOf(100, 91)), { maxNewTokens: 500 }));
  t.equal(e.flushCache(), false);
  e.abort(busy.req);
  t.equal(e.flushCache(), true);
  t.equal(e.cache.totalSize, 0);
});

t.test('jitter perturbs step times; without it the model is deterministic', async (t) => {
  const decodeMs = async (o: Partial<SimOptions>): Promise<number> => {
    const e = engineWith(o);
    t.teardown(() => e.stop());
    const r = await run(e, spec(tokenize(promptOf(64, 95)), { maxNewTokens: 50 })).done;
    return r.lastTokenAt - r.firstTokenAt;
  };
  const plainA = await decodeMs({ seed: 1 });
  const plainB = await decodeMs({ seed: 2 });
  t.ok(Math.abs(plainA - plainB) < 1e-6, `no jitter: ${plainA.toFixed(4)} = ${plainB.toFixed(4)} ms regardless of the seed`);
  const jitA = await decodeMs({ seed: 1, jitter: 0.3 });
  const jitB = await decodeMs({ seed: 2, jitter: 0.3 });
  t.ok(Math.abs(jitA - jitB) > 1e-3, `jitter 0.3: ${jitA.toFixed(4)} vs ${jitB.toFixed(4)} ms differ by seed`);
  t.ok(Math.abs(jitA / plainA - 1) < 0.5, 'the mean stays near the model');
});
