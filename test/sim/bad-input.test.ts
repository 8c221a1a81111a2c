/** Bad input gets a JSON error with a stable code, never a crash or a hang. */
import t from 'tap';
import { startSimFleet } from '../../src/sim/fleet.js';
import { getJson, postJson, rawRequest } from './helpers.js';

t.test('bad input', async (t) => {
  const fleet = await startSimFleet({ port: 0, timeScale: 0.02, maxBodyBytes: 4096, contextLength: 1000 });
  t.teardown(() => fleet.close());
  const url = fleet.urls[0] as string;

  const cases: [string, string, unknown, number, string][] = [
    ['/generate', 'malformed JSON', '{"text": "abc"', 400, 'invalid_json'],
    ['/generate', 'empty body', '', 400, 'invalid_json'],
    ['/generate', 'a JSON array', '[1,2]', 400, 'invalid_request'],
    ['/generate', 'no prompt', { sampling_params: {} }, 400, 'missing_prompt'],
    ['/generate', 'empty text', { text: '' }, 400, 'missing_prompt'],
    ['/generate', 'text and input_ids', { text: 'a', input_ids: [1] }, 400, 'invalid_request'],
    ['/generate', 'text of the wrong type', { text: 42 }, 400, 'invalid_request'],
    ['/generate', 'input_ids with a float', { input_ids: [1, 2.5] }, 400, 'invalid_request'],
    ['/generate', 'input_ids with a negative id', { input_ids: [-1] }, 400, 'invalid_request'],
    ['/generate', 'max_new_tokens negative', { text: 'a', sampling_params: { max_new_tokens: -1 } }, 400, 'invalid_request'],
    ['/generate', 'max_new_tokens fractional', { text: 'a', sampling_params: { max_new_tokens: 1.5 } }, 400, 'invalid_request'],
    ['/generate', 'max_new_tokens a string', { text: 'a', sampling_params: { max_new_tokens: '10' } }, 400, 'invalid_request'],
    ['/generate', 'sampling_params a string', { text: 'a', sampling_params: 'fast' }, 400, 'invalid_request'],
    ['/generate', 'temperature negative', { text: 'a', sampling_params: { temperature: -1 } }, 400, 'invalid_request'],
    ['/generate', 'top_p zero', { text: 'a', sampling_params: { top_p: 0 } }, 400, 'invalid_request'],
    ['/generate', 'top_k zero', { text: 'a', sampling_params: { top_k: 0 } }, 400, 'invalid_request'],
    ['/generate', 'n > 1', { text: 'a', sampling_params: { n: 2 } }, 400, 'invalid_request'],
    ['/generate', 'stop not strings', { text: 'a', sampling_params: { stop: [1] } }, 400, 'invalid_request'],
    ['/generate', 'ignore_eos not a bool', { text: 'a', sampling_params: { ignore_eos: 'yes' } }, 400, 'invalid_request'],
    ['/generate', 'stream not a bool', { text: 'a', stream: 'true' }, 400, 'invalid_request'],
    ['/generate', 'rid not a string', { text: 'a', rid: 5 }, 400, 'invalid_request_id'],
    ['/generate', 'batch rid of the wrong length', { text: ['a', 'b'], rid: ['x'] }, 400, 'invalid_request_id'],
    ['/generate', 'prompt beyond the context', { text: 'x'.repeat(4000) }, 400, 'invalid_request'],
    ['/v1/chat/completions', 'no messages', { model: 'm' }, 400, 'missing_prompt'],
    ['/v1/chat/completions', 'empty messages', { messages: [] }, 400, 'invalid_request'],
    ['/v1/chat/completions', 'message without role', { messages: [{ content: 'x' }] }, 400, 'invalid_request'],
    ['/v1/chat/completions', 'content a number', { messages: [{ role: 'user', content: 5 }] }, 400, 'invalid_request'],
    ['/v1/chat/completions', 'max_tokens negative', { messages: [{ role: 'user', content: 'x' }], max_tokens: -5 }, 400, 'invalid_request'],
    ['/v1/chat/completions', 'stream_options not an object', { messages: [{ role: 'user', content: 'x' }], stream_options: true }, 400, 'invalid_request'],
    ['/v1/chat/completions', 'model not a string', { messages: [{ role: 'user', content: 'x' }], model: 3 }, 400, 'invalid_request'],
    ['/v1/completions', 'no prompt', { max_tokens: 3 }, 400, 'missing_prompt'],
    ['/v1/completions', 'prompt an object', { prompt: { a: 1 } }, 400, 'invalid_request'],
    ['/v1/completions', 'empty prompt list', { prompt: [] }, 400, 'invalid_request'],
  ];
  for (const [path, what, body, status, code] of cases) {
    const r = await postJson(`${url}${path}`, typeof body === 'string' ? body : JSON.stringify(body));
    t.equal(r.status, status, `${path}: ${what} -> ${status}`);
    t.equal(r.body?.error?.code, code, `${path}: ${what} -> ${code}`);
    t.type(r.body?.error?.message, 'string');
  }

  await t.test('unknown route -> 404, wrong method -> 405 with Allow', async (t) => {
    const nf = await getJson(`${url}/v2/unknown`);
    t.equal(nf.status, 404);
    t.equal(nf.body.error.code, 'not_found');
    const nfPost = await postJson(`${url}/nope`, { text: 'a' });
    t.equal(nfPost.status, 404);
    const wm = await getJson(`${url}/generate`);
    t.equal(wm.status, 405);
    t.equal(wm.body.error.code, 'method_not_allowed');
    t.equal(wm.headers.get('allow'), 'POST, PUT');
    const wm2 = await postJson(`${url}/health`, {});
    t.equal(wm2.status, 405);
    t.equal(wm2.headers.get('allow'), 'GET');
  });

  await t.test('bodies over the limit -> 413 (declared or streamed)', async (t) => {
    const big = JSON.stringify({ text: 'x'.repeat(5000) });
    const r = await rawRequest(`${url}/generate`, 'POST', big).promise;
    t.equal(r.status, 413);
    t.equal(JSON.parse(r.body).error.code, 'payload_too_large');
    const declared = await fetch(`${url}/generate`, { method: 'POST', body: big });
    t.equal(declared.status, 413);
    t.equal(declared.headers.get('x-sim-gpu-id'), '0', 'the refusal names the server too');
    const chunked = await rawRequest(`${url}/generate`, 'POST', big, { 'transfer-encoding': 'chunked' }).promise;
    t.equal(chunked.status, 413, 'without content-length too');
  });

  await t.test('the server is healthy and serving after all of that', async (t) => {
    t.equal((await fetch(`${url}/health`)).status, 200);
    const ok = await postJson(`${url}/generate`, { text: 'fine', sampling_params: { max_new_tokens: 1 } });
    t.equal(ok.status, 200);
    const s = fleet.servers[0]!.stats();
    t.equal(s.running + s.waiting, 0);
  });
});
