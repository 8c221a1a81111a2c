import t from 'tap';
import { StreamReader, buildPayload, readCounts, emptyCounts } from '../../src/load/protocol.js';
import { parseLoadOptions } from '../../src/cli/load.js';
import { OptionsError } from '../../src/config/options.js';
import { barChart, cdfPoints, lineChart, niceTicks } from '../../src/load/charts/svg.js';
import { pngRenderer } from '../../src/load/charts/png.js';

t.test('StreamReader: SGLang cumulative text split across chunks; TTFT at first content, ITL between content', async (t) => {
  const r = new StreamReader(true);
  const ev = (text: string, n: number, last = false): string =>
    `data: ${JSON.stringify({ text, meta_info: { prompt_tokens: 7, completion_tokens: n, cached_tokens: 3, finish_reason: last ? { type: 'length', length: n } : null } })}\n\n`;
  const stream = ev('', 0) + ev(' the', 1) + ev(' the and', 2) + ev(' the and', 2) + ev(' the and for', 3, true) + 'data: [DONE]\n\n';
  // cut the bytes at awkward places; each piece arrives at its own time
  const cuts = [5, 40, 90, 200, 260, stream.length];
  let prev = 0;
  cuts.forEach((c, k) => {
    r.push(Buffer.from(stream.slice(prev, c)), 10 * (k + 1));
    prev = c;
  });
  t.equal(r.contentEvents, 3, 'empty text and a repeated cumulative text are not content');
  t.ok(r.firstContentAt > 0);
  t.equal(r.gaps.length, 2);
  t.equal(r.sawDone, true);
  t.same(r.counts, { promptTokens: 7, completionTokens: 3, cachedTokens: 3, finishReason: 'length' });
  t.equal(r.generatedChars, 12);
});

t.test('StreamReader: OpenAI chat deltas; role-only, empty finish and usage-only chunks are not content', async (t) => {
  const r = new StreamReader(false);
  const chunk = (delta: Record<string, unknown>, finish: string | null = null): string => `data: ${JSON.stringify({ choices: [{ index: 0, delta, finish_reason: finish }] })}\r\n\r\n`;
  r.push(Buffer.from(chunk({ role: 'assistant', content: '' })), 1);
  r.push(Buffer.from(chunk({ content: ' any' })), 2);
  r.push(Buffer.from(chunk({ content: ' now' }) + chunk({ content: ' can' })), 5);
  r.push(Buffer.from(chunk({}, 'length')), 6);
  r.push(Buffer.from(`data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 5, completion_tokens: 3, prompt_tokens_details: { cached_tokens: 2 } } })}\n\ndata: [DONE]\n\n`), 7);
  t.equal(r.firstContentAt, 2);
  t.equal(r.contentEvents, 3);
  t.same(r.gaps, [3, 0], 'events in one network chunk share its time');
  t.same(r.counts, { promptTokens: 5, completionTokens: 3, cachedTokens: 2, finishReason: 'length' });
});

t.test('StreamReader: an in-stream error event is the error', async (t) => {
  const r = new StreamReader(true);
  r.push(Buffer.from('data: {"error":{"message":"boom","code":"upstream_error"}}\n\ndata: [DONE]\n\n'), 1);
  t.equal(r.error, 'upstream_error: boom');
  t.equal(r.contentEvents, 0);
  const u = new StreamReader(true);
  u.push(Buffer.from('data: {"text":"abcd"}'), 1);
  u.end(2);
  t.equal(u.contentEvents, 1, 'an unterminated last event is read at the end');
});

t.test('payloads: bench_serving shapes, extra body merged', async (t) => {
  const spec = { prompt: 'hello', messages: undefined, promptTokens: 2, outputLen: 9, group: -1 };
  const g = buildPayload(spec, { api: 'sglang', openaiRoute: 'chat', model: 'm', stream: true, ignoreEos: true, extra: { sampling_params: { top_p: 0.5 }, rid_hint: 1 } });
  t.same(g, { text: 'hello', sampling_params: { temperature: 0, max_new_tokens: 9, ignore_eos: true, top_p: 0.5 }, stream: true, rid_hint: 1 });
  const c = buildPayload(spec, { api: 'openai', openaiRoute: 'chat', model: 'm', stream: true, ignoreEos: false, extra: undefined });
  t.same(c, { model: 'm', temperature: 0, max_tokens: 9, ignore_eos: false, stream: true, messages: [{ role: 'user', content: 'hello' }], stream_options: { include_usage: true } });
  const p = buildPayload(spec, { api: 'openai', openaiRoute: 'completions', model: 'm', stream: false, ignoreEos: true, extra: undefined });
  t.equal(p['prompt'], 'hello');
  t.notOk('stream_options' in p);
  const counts = emptyCounts();
  readCounts({ usage: { prompt_tokens: 4, completion_tokens: 2, cached_tokens: 1 } }, counts);
  t.same(counts, { promptTokens: 4, completionTokens: 2, cachedTokens: 1, finishReason: '' });
});

t.test('switchyard load flags: bench_serving names, clear errors', async (t) => {
  const o = parseLoadOptions(['--url', 'http://127.0.0.1:1', '--dataset-name', 'random', '--num-prompts', '5', '--request-rate', '20', '--burstiness', '0.5', '--max-concurrency', '4', '--slo', 'ttft=100', '--extra-request-body', '{"top_k": 3}', '--disable-stream', '--output', '/tmp/x'], {});
  t.equal(o.numPrompts, 5);
  t.equal(o.requestRate, 20);
  t.equal(o.burstiness, 0.5);
  t.equal(o.maxConcurrency, 4);
  t.equal(o.disableStream, true);
  t.same(o.extraRequestBody, { top_k: 3 });
  t.equal(o.slo?.ttftMs, 100);
  t.equal(parseLoadOptions(['--url', 'http://x'], {}).requestRate, Infinity, 'inf by default');
  t.throws(() => parseLoadOptions([], {}), /--url is required/);
  t.throws(() => parseLoadOptions(['--url', 'http://x', '--request-rate', 'lots'], {}), OptionsError);
  t.throws(() => parseLoadOptions(['--url', 'http://x', '--dataset', 'sharegpt'], {}), /needs --dataset-path/);
  t.throws(() => parseLoadOptions(['--url', 'http://x', '--extra-request-body', '[1]'], {}), /JSON object/);
  t.throws(() => parseLoadOptions(['--url', 'http://x', '--dataset', 'imagenet'], {}), /must be one of/);
  t.equal(parseLoadOptions(['--url', 'http://x'], { SWITCHYARD_LOAD_SEED: '42', SWITCHYARD_SEED: '7' }).seed, 42, 'own env prefix');
});

t.test('charts: nice ticks, labelled SVG, PNG when the renderer is here', async (t) => {
  t.same(niceTicks(0, 97), [0, 20, 40, 60, 80, 100]);
  t.same(niceTicks(0, 1, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  const svg = lineChart({ title: 'T <1>', xLabel: 'x (ms)', yLabel: 'fraction', series: [{ name: 'a&b', points: cdfPoints([1, 2, 3, 4]), step: true }], xLog: true });
  t.match(svg, /^<svg /);
  t.match(svg, /T &lt;1&gt;/, 'text escaped');
  t.match(svg, /x \(ms\)/);
  t.match(svg, /a&amp;b/, 'legend');
  t.match(svg, /<polyline /);
  const bars = barChart({ title: 'B', yLabel: 'tok/s', categories: ['p1', 'p2'], series: [{ name: '', values: [3, 5] }], colorByCategory: true });
  t.equal((bars.match(/<rect x=/g) ?? []).length >= 2 + 2, true, 'background, frame and 2 bars');
  t.same(cdfPoints([]), []);
  t.same(cdfPoints([5, 6]), [[5, 0.5], [6, 1]]);
  const { renderer, reason } = pngRenderer();
  if (renderer === undefined) {
    t.comment(`PNG renderer unavailable: ${reason}`);
    return;
  }
  const { mkdtempSync, readFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const path = join(mkdtempSync(join(tmpdir(), 'sy-png-')), 'c.png');
  renderer.write(svg, path);
  t.same([...readFileSync(path).subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG file');
});

t.test('without a PNG renderer, charts degrade to SVG only and say why', async (t) => {
  const { spawnSync } = await import('node:child_process');
  const { mkdtempSync, existsSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'sy-nopng-'));
  const png = new URL('../../src/load/charts/png.js', import.meta.url).href;
  const script = `const m = await import(${JSON.stringify(png)}); const w = m.writeChart('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', ${JSON.stringify(join(dir, 'c'))}); console.log(JSON.stringify({ w, reason: m.pngRenderer().reason }));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, SWITCHYARD_NO_PNG: '1' }, encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { w: { svg: string; png: string | null }; reason: string };
  t.equal(out.w.png, undefined, 'no PNG written (the key is absent from the JSON)');
  t.match(out.reason, /SWITCHYARD_NO_PNG/);
  t.ok(existsSync(join(dir, 'c.svg')));
  t.notOk(existsSync(join(dir, 'c.png')));
});
