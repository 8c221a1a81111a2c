/** The SGLang API shapes of every endpoint, over real sockets. */
import t from 'tap';
import { startSimFleet } from '../../src/sim/fleet.js';
import { getJson, metric, metrics, postJson, postStream, promptOf, waitFor } from './helpers.js';

const MODEL = 'test-org/Sim-8B';

t.test('API shapes', async (t) => {
  const fleet = await startSimFleet({ count: 2, port: 0, timeScale: 0.02, modelPath: MODEL, outputLenMedian: 1000 });
  t.teardown(() => fleet.close());
  const [u0, u1] = fleet.urls as [string, string];
  t.equal(fleet.ports.length, 2);
  t.not(fleet.ports[0], fleet.ports[1]);

  await t.test('server i reports GPU id i, on every response', async (t) => {
    for (const [i, url] of fleet.urls.entries()) {
      const h = await fetch(`${url}/health`);
      t.equal(h.status, 200);
      t.equal(await h.text(), '', '/health has an empty body');
      t.equal(h.headers.get('x-sim-gpu-id'), String(i));
      const info = await getJson(`${url}/get_server_info`);
      t.equal(info.body.gpu_id, i);
      t.equal(info.headers.get('x-sim-gpu-id'), String(i));
      const missing = await getJson(`${url}/nope`);
      t.equal(missing.headers.get('x-sim-gpu-id'), String(i), 'errors carry it too');
    }
  });

  await t.test('POST /generate (non-streaming)', async (t) => {
    const r = await postJson(`${u0}/generate`, { text: 'The capital of France is', rid: 'req-1', sampling_params: { max_new_tokens: 8, ignore_eos: true } });
    t.equal(r.status, 200);
    t.match(r.headers.get('content-type'), /application\/json/);
    t.type(r.body.text, 'string');
    t.equal(r.body.text.length, 32, '8 tokens of 4 characters');
    t.equal(r.body.output_ids.length, 8);
    t.ok(r.body.output_ids.every((x: unknown) => Number.isInteger(x)));
    const m = r.body.meta_info;
    t.equal(m.id, 'req-1', 'id is the rid');
    t.equal(m.prompt_tokens, 6, "'The capital of France is' is 24 characters: 6 tokens");
    t.equal(m.completion_tokens, 8);
    t.equal(m.cached_tokens, 0);
    t.same(m.finish_reason, { type: 'length', length: 8 });
    t.type(m.e2e_latency, 'number');
    t.type(m.queue_time, 'number');
    t.ok(m.e2e_latency > 0 && m.queue_time >= 0 && m.queue_time <= m.e2e_latency);
    const again = await postJson(`${u0}/generate`, { text: 'The capital of France is', sampling_params: { max_new_tokens: 1 } });
    t.equal(again.body.meta_info.cached_tokens, 5, 'the repeated prompt hits the cache (all but the last token)');
    t.match(again.body.meta_info.id, /^[0-9a-f]{32}$/, 'a generated id without rid');
    const put = await fetch(`${u0}/generate`, { method: 'PUT', body: JSON.stringify({ input_ids: [1, 2, 3], sampling_params: { max_new_tokens: 2 } }) });
    t.equal(put.status, 200, 'PUT works too');
    const ids = (await put.json()) as any;
    t.equal(ids.meta_info.prompt_tokens, 3, 'input_ids are used as is');
  });

  await t.test('POST /generate streaming: cumulative text, full meta_info per chunk, [DONE]', async (t) => {
    const s = await postStream(`${u0}/generate`, { text: promptOf(20, 1), stream: true, rid: 'stream-1', sampling_params: { max_new_tokens: 6, ignore_eos: true } });
    t.equal(s.status, 200);
    t.match(s.headers.get('content-type'), /text\/event-stream/);
    t.ok(s.done, 'ends with data: [DONE]');
    t.ok(s.raw.endsWith('data: [DONE]\n\n'));
    t.equal(s.events.length, 6, 'one chunk per token when the client keeps up');
    for (let i = 0; i < s.events.length; i++) {
      const e = s.events[i];
      t.equal(e.meta_info.id, 'stream-1');
      t.equal(e.meta_info.completion_tokens, i + 1);
      t.equal(e.meta_info.prompt_tokens, 20);
      t.equal(e.output_ids.length, i + 1, 'output_ids are cumulative too');
      if (i > 0) t.ok(e.text.startsWith(s.events[i - 1].text), 'text is cumulative');
      t.equal(e.meta_info.finish_reason === null, i < 5);
    }
    const last = s.events[5];
    t.same(last.meta_info.finish_reason, { type: 'length', length: 6 });
    t.type(last.meta_info.e2e_latency, 'number');
    t.notOk('e2e_latency' in s.events[0].meta_info, 'e2e_latency only once finished');
  });

  await t.test('--stream-interval sends a chunk every N tokens (the first at once)', async (t) => {
    const f = await startSimFleet({ port: 0, timeScale: 0.02, streamInterval: 4 });
    t.teardown(() => f.close());
    const s = await postStream(`${f.urls[0]}/generate`, { text: 'x', stream: true, sampling_params: { max_new_tokens: 10, ignore_eos: true } });
    t.same(
      s.events.map((e) => e.meta_info.completion_tokens),
      [1, 4, 8, 10],
    );
    const c = await postStream(`${f.urls[0]}/v1/chat/completions`, { messages: [{ role: 'user', content: 'x' }], stream: true, max_tokens: 10, ignore_eos: true });
    const text = c.events.map((e) => e.choices[0].delta.content ?? '').join('');
    t.equal(text.length, 40, 'deltas still add up');
    t.equal(c.events.length, 5, 'chunks at tokens 1, 4 and 8, the rest of the text at the end, then the finish chunk');
  });

  await t.test('POST /generate batches answer with a list; streamed batches tag chunks with index', async (t) => {
    const r = await postJson(`${u0}/generate`, { text: ['first prompt', 'second prompt here'], rid: ['a', 'b'], sampling_params: { max_new_tokens: 3 } });
    t.equal(r.status, 200);
    t.ok(Array.isArray(r.body));
    t.equal(r.body.length, 2);
    t.same(r.body.map((x: any) => x.meta_info.id), ['a', 'b']);
    t.same(r.body.map((x: any) => x.meta_info.prompt_tokens), [3, 5]);
    const ids = await postJson(`${u0}/generate`, { input_ids: [[1, 2], [3, 4, 5]], sampling_params: [{ max_new_tokens: 1 }, { max_new_tokens: 2 }] });
    t.same(ids.body.map((x: any) => x.meta_info.completion_tokens <= 2), [true, true]);
    t.equal(ids.body[0].meta_info.completion_tokens, 1, 'per-item sampling params');
    const s = await postStream(`${u0}/generate`, { text: ['x'.repeat(8), 'y'.repeat(12)], stream: true, sampling_params: { max_new_tokens: 3, ignore_eos: true } });
    t.ok(s.done);
    t.same(new Set(s.events.map((e) => e.index)), new Set([0, 1]));
    t.equal(s.events.filter((e) => e.meta_info.finish_reason !== null).length, 2, 'each item finishes once');
  });

  await t.test('POST /v1/chat/completions', async (t) => {
    const messages = [
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: 'Say something.' },
    ];
    const r = await postJson(`${u0}/v1/chat/completions`, { model: MODEL, messages, max_tokens: 5, ignore_eos: true });
    t.equal(r.status, 200);
    const b = r.body;
    t.match(b.id, /^chatcmpl-/);
    t.equal(b.object, 'chat.completion');
    t.type(b.created, 'number');
    t.equal(b.model, MODEL);
    t.equal(b.choices.length, 1);
    t.equal(b.choices[0].index, 0);
    t.equal(b.choices[0].message.role, 'assistant');
    t.equal(b.choices[0].message.content.length, 20);
    t.equal(b.choices[0].finish_reason, 'length');
    // 'You are terse.' = 14 chars -> 4 tokens; 'Say something.' = 14 -> 4; + 2 per message + 1.
    t.same(b.usage, { prompt_tokens: 13, completion_tokens: 5, total_tokens: 18, prompt_tokens_details: { cached_tokens: 0 } });
    // The next turn repeats the answer: the cache covers the whole previous conversation.
    const next = [...messages, { role: 'assistant', content: b.choices[0].message.content }, { role: 'user', content: 'More.' }];
    const r2 = await postJson(`${u0}/v1/chat/completions`, { messages: next, max_completion_tokens: 2 });
    t.equal(r2.body.usage.prompt_tokens_details.cached_tokens, 13 + 4, 'prompt + answer (minus its last token) were cached');
    t.equal(r2.body.usage.completion_tokens, 2, 'max_completion_tokens is honoured');
    const parts = await postJson(`${u0}/v1/chat/completions`, { messages: [{ role: 'user', content: [{ type: 'text', text: 'abcd' }, { type: 'image_url', image_url: { url: 'x' } }] }], max_tokens: 1 });
    t.equal(parts.body.usage.prompt_tokens, 4, 'text parts are concatenated, other parts ignored');
  });

  await t.test('streaming chat: role, deltas, finish chunk, usage chunk, [DONE]', async (t) => {
    const s = await postStream(`${u0}/v1/chat/completions`, {
      messages: [{ role: 'user', content: 'Count.' }],
      max_tokens: 4,
      ignore_eos: true,
      stream: true,
      stream_options: { include_usage: true },
    });
    t.ok(s.done);
    const chunks = s.events;
    t.ok(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0].id));
    t.same(chunks[0].choices[0].delta.role, 'assistant');
    const content = chunks.flatMap((c) => c.choices.map((ch: any) => ch.delta.content ?? '')).join('');
    t.equal(content.length, 16, 'deltas add up to 4 tokens of text');
    const finish = chunks.filter((c) => c.choices[0]?.finish_reason != null);
    t.equal(finish.length, 1);
    t.equal(finish[0].choices[0].finish_reason, 'length');
    const usage = chunks[chunks.length - 1];
    t.same(usage.choices, []);
    // 'Count.' is 2 tokens, + role header and end of turn + the assistant header.
    // Its first token (the user header) was cached by an earlier test's request.
    t.same(usage.usage, { prompt_tokens: 5, completion_tokens: 4, total_tokens: 9, prompt_tokens_details: { cached_tokens: 1 } });
    const noUsage = await postStream(`${u0}/v1/chat/completions`, { messages: [{ role: 'user', content: 'Count.' }], max_tokens: 2, stream: true });
    t.ok(noUsage.events.every((c) => c.choices.length === 1), 'no usage chunk unless asked');
  });

  await t.test('POST /v1/completions (and streaming)', async (t) => {
    const r = await postJson(`${u0}/v1/completions`, { prompt: 'Once upon a time', max_tokens: 3, ignore_eos: true });
    t.equal(r.status, 200);
    t.match(r.body.id, /^cmpl-/);
    t.equal(r.body.object, 'text_completion');
    t.equal(r.body.choices[0].text.length, 12);
    t.equal(r.body.choices[0].finish_reason, 'length');
    t.equal(r.body.usage.prompt_tokens, 4);
    const multi = await postJson(`${u0}/v1/completions`, { prompt: ['a', 'b', 'c'], max_tokens: 1 });
    t.same(multi.body.choices.map((c: any) => c.index), [0, 1, 2]);
    t.equal(multi.body.usage.prompt_tokens, 3);
    const def = await postJson(`${u0}/v1/completions`, { prompt: [5, 6, 7], ignore_eos: true });
    t.equal(def.body.usage.completion_tokens, 16, 'OpenAI default max_tokens for completions is 16');
    const s = await postStream(`${u0}/v1/completions`, { prompt: 'Once upon a time', max_tokens: 3, ignore_eos: true, stream: true, stream_options: { include_usage: true } });
    t.ok(s.done);
    t.ok(s.events.slice(0, -1).every((c) => c.object === 'text_completion'));
    t.equal(s.events.slice(0, -1).map((c) => c.choices[0].text).join('').length, 12);
    t.equal(s.events.at(-1).usage.completion_tokens, 3);
  });

  await t.test('GET /v1/models, /get_model_info, /get_server_info', async (t) => {
    const models = await getJson(`${u1}/v1/models`);
    t.equal(models.body.object, 'list');
    t.equal(models.body.data[0].id, MODEL);
    t.equal(models.body.data[0].object, 'model');
    const mi = await getJson(`${u1}/get_model_info`);
    t.same(mi.body, { model_path: MODEL, tokenizer_path: MODEL, is_generation: true });
    const si = (await getJson(`${u1}/get_server_info`)).body;
    t.equal(si.model_path, MODEL);
    t.equal(si.tp_size, 1);
    t.equal(si.dp_size, 1);
    t.equal(si.port, fleet.ports[1]);
    t.equal(si.gpu_id, 1);
    t.equal(si.max_running_requests, 2048);
    t.equal(si.max_total_num_tokens, 400000);
    t.equal(si.chunked_prefill_size, 8192);
    t.type(si.version, 'string');
    t.ok(Array.isArray(si.internal_states) && si.internal_states.length === 1);
    t.type(si.internal_states[0].last_gen_throughput, 'number');
  });

  await t.test('GET /get_load, /v1/loads, /health_generate, /flush_cache', async (t) => {
    const load = await getJson(`${u1}/get_load`);
    t.same(load.body, [{ dp_rank: 0, num_reqs: 0, num_waiting_reqs: 0, num_tokens: 0 }]);
    const loads = await getJson(`${u1}/v1/loads`);
    t.equal(loads.body.loads[0].num_running_reqs, 0);
    const hg = await fetch(`${u1}/health_generate`);
    t.equal(hg.status, 200);
    // While busy, the next completed step answers it (SGLang: any output after the probe was sent).
    const busy = postJson(`${u1}/generate`, { text: 'busy', sampling_params: { max_new_tokens: 3000, ignore_eos: true } });
    await waitFor(async () => (await getJson(`${u1}/get_load`)).body[0].num_reqs === 1, 5000, 'a running request');
    t.equal((await fetch(`${u1}/health_generate`)).status, 200, 'healthy while busy');
    const busyLoad = await getJson(`${u1}/get_load`);
    t.equal(busyLoad.body[0].num_reqs, 1, 'the probe is not left behind');
    t.ok(busyLoad.body[0].num_tokens > 0);
    await busy;
    await postJson(`${u1}/generate`, { text: promptOf(50, 9), sampling_params: { max_new_tokens: 1 } });
    const cachedBefore = (await postJson(`${u1}/generate`, { text: promptOf(50, 9), sampling_params: { max_new_tokens: 1 } })).body.meta_info.cached_tokens;
    t.equal(cachedBefore, 49);
    const flush = await fetch(`${u1}/flush_cache`, { method: 'POST' });
    t.equal(flush.status, 200);
    const after = await postJson(`${u1}/generate`, { text: promptOf(50, 9), sampling_params: { max_new_tokens: 1 } });
    t.equal(after.body.meta_info.cached_tokens, 0, 'the cache is empty after a flush');
  });

  await t.test('GET /metrics: SGLang gauges, counters and histograms with model_name', async (t) => {
    const text = await (await fetch(`${u0}/metrics`)).text();
    for (const name of [
      'sglang:num_running_reqs',
      'sglang:num_queue_reqs',
      'sglang:token_usage',
      'sglang:cache_hit_rate',
      'sglang:gen_throughput',
      'sglang:prompt_tokens_total',
      'sglang:generation_tokens_total',
      'sglang:cached_tokens_total',
      'sglang:num_requests_total',
      'sglang:time_to_first_token_seconds_count',
      'sglang:inter_token_latency_seconds_count',
      'sglang:e2e_request_latency_seconds_count',
    ]) {
      t.match(text, new RegExp(`^${name}\\{model_name="test-org/Sim-8B"`, 'm'), name);
    }
    t.match(text, /^# TYPE sglang:time_to_first_token_seconds histogram$/m);
    t.match(text, /^sglang:e2e_request_latency_seconds_bucket\{model_name="test-org\/Sim-8B",le="\+Inf"\} \d+$/m);
    const m = await metrics(u0);
    t.ok(metric(m, 'sglang:num_requests_total') >= 10);
    t.ok(metric(m, 'sglang:cached_tokens_total') > 0);
    t.ok(metric(m, 'sglang:generation_tokens_total') > 0);
    t.equal(metric(m, 'sglang:num_running_reqs'), 0);
  });
});
