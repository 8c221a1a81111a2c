/**
 * OpenTelemetry: spans exported over OTLP/HTTP to a tiny receiver on a real socket (JSON and protobuf),
 * and no OpenTelemetry module loaded at all when no endpoint is configured.
 */
import t, { type Test } from 'tap';
import http from 'node:http';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { startTestRouter } from '../helpers/router.js';
import { startFixtureBackend } from '../helpers/fixture-backend.js';
import { post, waitFor } from '../helpers/client.js';
import { registerPolicy, unregisterPolicy } from '../../src/policies/registry.js';
import { collectAvailable, decisionFor } from '../../src/policies/common.js';
import type { WorkerInfo } from '../../src/policies/types.js';
import { displayUrl, resolveOtlpConfig } from '../../src/otel/config.js';
import { decisionKind, remoteParent } from '../../src/otel/tracing.js';
import { trace } from '@opentelemetry/api';

interface Received {
  path: string;
  contentType: string;
  body: Buffer;
}

async function startReceiver(t: Test, status = 200): Promise<{ url: string; got: Received[] }> {
  const got: Received[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      got.push({ path: req.url ?? '', contentType: String(req.headers['content-type'] ?? ''), body: Buffer.concat(chunks) });
      res.writeHead(status, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, got };
}

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: { key: string; value: Record<string, unknown> }[];
  status?: { code?: number; message?: string };
}

function spansOf(got: Received[]): { spans: OtlpSpan[]; resources: Record<string, unknown>[] } {
  const spans: OtlpSpan[] = [];
  const resources: Record<string, unknown>[] = [];
  for (const r of got) {
    const body = JSON.parse(r.body.toString('utf8')) as { resourceSpans: { resource: { attributes: OtlpSpan['attributes'] }; scopeSpans: { spans: OtlpSpan[] }[] }[] };
    for (const rs of body.resourceSpans) {
      resources.push(attrs(rs.resource.attributes));
      for (const ss of rs.scopeSpans) spans.push(...ss.spans);
    }
  }
  return { spans, resources };
}

function attrs(list: OtlpSpan['attributes']): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const a of list) {
    const v = a.value;
    out[a.key] = v['stringValue'] ?? (v['intValue'] !== undefined ? Number(v['intValue']) : undefined) ?? v['doubleValue'] ?? v['boolValue'];
  }
  return out;
}

const TEST_STATS = { checkpointIntervalMs: 0, askTimeoutMs: 60_000, actor: { execArgv: [] } };
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_ID = '00f067aa0ba902b7';

t.test('OTLP/HTTP JSON: a route span per request with a routing_decision child, batched to a real receiver', async (t) => {
  const receiver = await startReceiver(t);
  const fb = await startFixtureBackend();
  t.teardown(() => fb.close());
  const candidates: WorkerInfo[] = [];
  registerPolicy('otel_kv', () => ({
    name: 'otel_kv',
    stateful: false,
    select(req, ctx) {
      const n = collectAvailable(ctx.table, ctx.workers, candidates);
      if (n === 0) return null;
      return decisionFor(candidates[0] as WorkerInfo, `large_input: ${req.inputTokens} > 8`, { predicted_kv_mb: 7500, load: 0 });
    },
  }));
  t.teardown(() => unregisterPolicy('otel_kv'));
  const r = await startTestRouter(['--worker-urls', fb.url, '--policy', 'otel_kv', '--prometheus-port', '0', '--otlp-endpoint', receiver.url, '--otlp-protocol', 'http/json'], {
    observability: { stats: TEST_STATS, otlpFlushMs: 100 },
  });
  t.teardown(() => r.close(2000));
  await waitFor(() => r.ctx.registry.healthyCount() === 1, 10_000, 'a healthy worker');
  t.same(r.observability.otlp, { tracesUrl: `${receiver.url}/v1/traces`, protocol: 'http/json', serviceName: 'switchyard', flushMs: 100 });

  const long = 'word '.repeat(40);
  t.equal((await post(`${r.url}/generate`, { text: long, stream: true }, { traceparent: `00-${TRACE_ID}-${PARENT_ID}-01` })).status, 200);
  t.equal((await post(`${r.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'hello' }] })).status, 200);
  fb.handler = (_rec, res) => res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":"busy"}');
  t.equal((await post(`${r.url}/v1/completions`, { prompt: 'fail' })).status, 503);
  fb.handler = undefined;
  t.equal((await post(`${r.url}/v1/embeddings?x=1`, { input: 'hello', model: 'm' })).status, 200);

  await waitFor(() => spansOf(receiver.got).spans.length >= 8, 15_000, 'eight spans at the receiver');
  t.ok(receiver.got.every((g) => g.path === '/v1/traces' && g.contentType.startsWith('application/json')));
  t.ok(receiver.got.length <= 4, `batched: ${receiver.got.length} export(s) for 8 spans`);
  const { spans, resources } = spansOf(receiver.got);
  t.equal(resources[0]?.['service.name'], 'switchyard');
  const byName = (n: string): OtlpSpan[] => spans.filter((s) => s.name === n);
  t.same(spans.map((s) => s.name).sort(), ['chat_completion', 'completion', 'generate', 'passthrough', 'routing_decision', 'routing_decision', 'routing_decision', 'routing_decision']);

  const gen = byName('generate')[0] as OtlpSpan;
  t.equal(gen.traceId, TRACE_ID, 'the client traceparent is the parent');
  t.equal(gen.parentSpanId, PARENT_ID);
  t.equal(gen.kind, 2, 'SERVER');
  const ga = attrs(gen.attributes);
  t.match(ga, { 'http.route': '/generate', 'http.response.status_code': 200, 'switchyard.status': 'completed', 'switchyard.stream': true, 'switchyard.worker': fb.url, 'gen_ai.usage.output_tokens': 5 });
  t.type(ga['switchyard.ttft_ms'], 'number');
  const child = spans.find((s) => s.name === 'routing_decision' && s.parentSpanId === gen.spanId) as OtlpSpan;
  t.ok(child, 'routing_decision is a child of the route span');
  t.equal(child.traceId, TRACE_ID);
  const ca = attrs(child.attributes);
  t.same(
    { ...ca },
    {
      'routing.input_tokens': Math.ceil(long.length / 4),
      'routing.decision': 'large_input',
      'routing.trigger_reason': `large_input: ${Math.ceil(long.length / 4)} > 8`,
      'routing.policy': 'otel_kv',
      'routing.worker': fb.url,
      'routing.node_id': 0,
      'routing.predicted_kv_mb': 7500,
      'routing.score.load': 0,
    },
  );
  t.ok(BigInt(child.startTimeUnixNano) >= BigInt(gen.startTimeUnixNano));
  t.ok(BigInt(child.endTimeUnixNano) <= BigInt(gen.endTimeUnixNano), 'the decision ends before the request does');
  t.ok(BigInt(gen.endTimeUnixNano) > BigInt(gen.startTimeUnixNano));

  const chat = byName('chat_completion')[0] as OtlpSpan;
  t.notOk(chat.parentSpanId, 'without a traceparent the route span is a root');
  t.not(chat.traceId, TRACE_ID);
  t.equal(attrs(chat.attributes)['http.route'], '/v1/chat/completions');
  const failed = byName('completion')[0] as OtlpSpan;
  t.equal(failed.status?.code, 2, 'failed requests have status ERROR');
  t.equal(attrs(failed.attributes)['error.type'], 'http_503');
  t.equal(attrs(failed.attributes)['http.route'], '/v1/completions');
  const passthrough = byName('passthrough')[0] as OtlpSpan;
  t.match(attrs(passthrough.attributes), { 'http.route': '/v1/embeddings', 'http.response.status_code': 200 }, 'a pass-through route is labelled by its path (query string dropped), not a placeholder');

  const bundle = JSON.parse((await (await fetch(`${r.url}/admin/debug/bundle`)).text()) as string) as Record<string, any>;
  t.match(bundle['opentelemetry'], { enabled: true, protocol: 'http/json', requests_traced: 4, failed_exports: 0 });
  t.ok(bundle['opentelemetry'].exported_spans >= 8);
});

t.test('with size-aware admission the routing_decision span carries its action, trigger reason and KV estimate (seed 002)', async (t) => {
  const receiver = await startReceiver(t);
  const single = await startFixtureBackend();
  const multi = await startFixtureBackend();
  t.teardown(() => Promise.all([single.close(), multi.close()]));
  const r = await startTestRouter(
    ['--worker-urls', single.url, multi.url, '--worker-groups', `${multi.url}=multi`, '--large-input-tokens', '20', '--policy', 'round_robin', '--prometheus-port', '0', '--otlp-endpoint', receiver.url, '--otlp-protocol', 'http/json'],
    { observability: { stats: TEST_STATS, otlpFlushMs: 100 } },
  );
  t.teardown(() => r.close(2000));
  await waitFor(() => r.ctx.registry.healthyCount() === 2, 10_000, 'two healthy workers');
  const text = 'x'.repeat(400); // 100 tokens by the 4-characters rule
  t.equal((await post(`${r.url}/generate`, { text, sampling_params: { max_new_tokens: 28 } })).status, 200);
  t.equal((await post(`${r.url}/generate`, { text: 'small', sampling_params: { max_new_tokens: 8 } })).status, 200);
  await waitFor(() => spansOf(receiver.got).spans.filter((s) => s.name === 'routing_decision').length >= 2, 15_000, 'two decisions exported');
  const decisions = spansOf(receiver.got).spans.filter((s) => s.name === 'routing_decision').map((s) => attrs(s.attributes));
  const big = decisions.find((a) => a['routing.input_tokens'] === 100) as Record<string, unknown>;
  t.match(big, { 'routing.decision': 'multi', 'routing.trigger_reason': /^large_input: 100 > 20 tokens -> multi$/, 'routing.worker': multi.url, 'routing.policy': 'round_robin', 'routing.policy_reason': /round_robin: counter/ });
  t.equal(big['routing.predicted_kv_mb'], Math.round(((100 + 28) * 131072) / 2 ** 20 * 10) / 10, '(input + max_new_tokens) x kv bytes per token');
  const small = decisions.find((a) => a['routing.input_tokens'] !== 100) as Record<string, unknown>;
  t.match(small, { 'routing.decision': 'single', 'routing.trigger_reason': /^small: /, 'routing.worker': single.url });
});

t.test('OTLP/HTTP protobuf (the default protocol) reaches the receiver; a refusing collector is counted, not fatal', async (t) => {
  const receiver = await startReceiver(t);
  const refusing = await startReceiver(t, 400);
  const fb = await startFixtureBackend();
  t.teardown(() => fb.close());
  for (const [target, ok] of [
    [receiver, true],
    [refusing, false],
  ] as const) {
    const r = await startTestRouter(['--worker-urls', fb.url, '--policy', 'round_robin', '--prometheus-port', '0', '--otlp-endpoint', `${target.url}/`], { observability: { stats: TEST_STATS, otlpFlushMs: 50 } });
    await waitFor(() => r.ctx.registry.healthyCount() === 1, 10_000, 'a healthy worker');
    t.equal((await post(`${r.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'hi' }] })).status, 200, 'routing is unaffected');
    await waitFor(() => target.got.length >= 1, 15_000, 'an export');
    const body = target.got[0] as Received;
    t.equal(body.path, '/v1/traces');
    t.equal(body.contentType, 'application/x-protobuf');
    for (const s of ['chat_completion', 'routing_decision', 'routing.trigger_reason', 'switchyard']) t.ok(body.body.includes(Buffer.from(s)), `payload carries "${s}"`);
    if (!ok) {
      await waitFor(async () => {
        const b = JSON.parse(await (await fetch(`${r.url}/admin/debug/bundle`)).text()) as Record<string, any>;
        return b['opentelemetry'].failed_exports >= 1;
      }, 15_000, 'the failure to be counted');
    }
    await r.close(2000);
  }
});

t.test('without an OTLP endpoint no OpenTelemetry module is ever loaded (child processes)', async (t) => {
  const probe = fileURLToPath(new URL('./fixtures/otel-probe.js', import.meta.url));
  const run = (args: string[]): Promise<{ status: number; otelModules: number }> =>
    new Promise((resolve, reject) => {
      execFile(process.execPath, [probe, ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
        if (err !== null) return reject(new Error(`${err.message}\n${stderr}`));
        resolve(JSON.parse(stdout.trim().split('\n').pop() as string) as { status: number; otelModules: number });
      });
    });
  const receiver = await startReceiver(t);
  const [off, on] = await Promise.all([run([]), run([receiver.url])]);
  t.same(off, { status: 200, otelModules: 0 }, 'not configured: nothing imported');
  t.equal(on.status, 200);
  t.ok(on.otelModules > 0, `configured: the SDK is loaded (${on.otelModules} modules) — the probe can see it`);
});

t.test('endpoint resolution from flags and the standard environment', async (t) => {
  t.equal(resolveOtlpConfig({}, {}), undefined);
  t.equal(resolveOtlpConfig({ otlpEndpoint: 'http://c:4318' }, { OTEL_SDK_DISABLED: 'true' }), undefined);
  t.equal(resolveOtlpConfig({ otlpEndpoint: 'http://c:4318' }, {})?.tracesUrl, 'http://c:4318/v1/traces');
  t.equal(resolveOtlpConfig({ otlpEndpoint: 'http://c:4318/otlp/' }, {})?.tracesUrl, 'http://c:4318/otlp/v1/traces');
  t.equal(resolveOtlpConfig({ otlpEndpoint: 'http://c:4318/v1/traces' }, {})?.tracesUrl, 'http://c:4318/v1/traces');
  t.equal(resolveOtlpConfig({}, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://c/custom' })?.tracesUrl, 'https://c/custom');
  t.equal(resolveOtlpConfig({ otlpEndpoint: 'http://c:4318' }, { OTEL_SERVICE_NAME: 'edge-router' })?.serviceName, 'edge-router');
  t.equal(resolveOtlpConfig({ otlpEndpoint: 'http://c:4318', otlpProtocol: 'http/json' }, {})?.protocol, 'http/json');
  t.throws(() => resolveOtlpConfig({ otlpEndpoint: 'http://c:4318', otlpProtocol: 'grpc' }, {}), /grpc is not supported/);
  t.throws(() => resolveOtlpConfig({ otlpEndpoint: 'not a url' }, {}), /not a valid URL/);
  t.throws(() => resolveOtlpConfig({ otlpEndpoint: 'ftp://c' }, {}), /http or https/);
  t.equal(resolveOtlpConfig({ otlpProtocol: 'grpc' }, {}), undefined, 'a stray protocol setting without an endpoint is harmless');
  t.equal(displayUrl('https://user:pw@c:1/v1/traces?token=x'), 'https://c:1/v1/traces');
  t.equal(displayUrl('::'), '[invalid url]');
  await t.rejects(startTestRouter(['--otlp-endpoint', 'ftp://x', '--worker-urls', 'http://127.0.0.1:9']), /http or https/, 'a bad endpoint fails start-up');
});

t.test('decision kinds and traceparent parsing', async (t) => {
  t.equal(decisionKind('cache_hit: match 0.82 > 0.30'), 'cache_hit');
  t.equal(decisionKind('round_robin: counter 3 mod 4'), 'round_robin');
  t.equal(decisionKind(''), 'unspecified');
  const sc = trace.getSpanContext(remoteParent(`00-${TRACE_ID}-${PARENT_ID}-01`));
  t.match(sc, { traceId: TRACE_ID, spanId: PARENT_ID, traceFlags: 1, isRemote: true });
  for (const bad of ['', 'garbage', `ff-${TRACE_ID}-${PARENT_ID}-01`, `00-${'0'.repeat(32)}-${PARENT_ID}-01`, `00-${TRACE_ID}-${'0'.repeat(16)}-01`]) {
    t.equal(trace.getSpanContext(remoteParent(bad)), undefined, `ignored: '${bad}'`);
  }
});
