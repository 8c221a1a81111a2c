/**
 * Fault tests with real processes' sockets: a worker killed mid-load, a hanging worker, a worker answering
 * garbage bytes. Non-streaming requests never fail while another worker is up; streams already started end
 * with an SSE error event; counters return to zero.
 */
import net from 'node:net';
import http from 'node:http';
import t from 'tap';
import { startSimFleet } from '../../src/sim/fleet.js';
import { startTestRouter } from '../helpers/router.js';
import { post, waitFor } from '../helpers/client.js';
import { Field } from '../../src/actors/worker-table.js';

const body = (i: number, stream = false, tokens = 16) => ({ text: `fault test ${i} `.repeat(10), stream, sampling_params: { max_new_tokens: tokens, ignore_eos: true } });

/**
 * A TCP front for a worker that can be killed (listener closed, every connection reset) and revived on
 * the same port: uWS cannot re-listen on a port with connections in TIME_WAIT, Node's net can.
 */
async function killableFront(targetPort: number): Promise<{ port: number; url: string; kill(): Promise<void>; revive(): Promise<void> }> {
  const conns = new Set<net.Socket>();
  const make = () =>
    net.createServer((client) => {
      const upstream = net.connect(targetPort, '127.0.0.1');
      conns.add(client);
      conns.add(upstream);
      client.pipe(upstream).pipe(client);
      const drop = () => {
        client.destroy();
        upstream.destroy();
        conns.delete(client);
        conns.delete(upstream);
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
    });
  let server = make();
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    kill: async () => {
      const closed = new Promise<void>((res) => server.close(() => res()));
      for (const c of conns) c.resetAndDestroy();
      conns.clear();
      await closed;
    },
    revive: async () => {
      server = make();
      await new Promise<void>((res) => server.listen(port, '127.0.0.1', res));
    },
  };
}

function streamText(url: string, payload: unknown): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      const done = () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') });
      res.on('end', done);
      res.on('error', done);
      res.on('aborted', done);
    });
    req.on('error', reject);
    req.end(JSON.stringify(payload));
  });
}

t.test('a worker killed mid-load: 0 failed non-streaming requests, streams end with an error event, ejection and readmission', async (t) => {
  const fleet = await startSimFleet({ count: 3, timeScale: 0.05 });
  const front = await killableFront(fleet.ports[1]!);
  const urls = [fleet.urls[0]!, front.url, fleet.urls[2]!];
  const r = await startTestRouter(['--prometheus-port', '0', '--worker-urls', ...urls, '--policy', 'round_robin', '--retry-initial-backoff-ms', '5', '--health-success-threshold', '1']);
  t.teardown(async () => {
    await r.close(0);
    await front.kill();
    await fleet.close();
  });
  const victim = fleet.servers[1]!;
  const victimUrl = front.url;
  const plain = Array.from({ length: 90 }, (_, i) => post(`${r.url}/generate`, body(i, false, 64)));
  const streams = Array.from({ length: 15 }, (_, i) => streamText(`${r.url}/generate`, body(1000 + i, true, 64)));
  await waitFor(() => victim.stats().running > 0, 5000, 'victim busy');
  await front.kill();
  const results = await Promise.all(plain);
  t.same(results.filter((x) => x.status !== 200).map((x) => x.status), [], '0 failed non-streaming requests');
  const worker = r.ctx.registry.list().find((w) => w.url === victimUrl)!;
  await waitFor(() => r.ctx.table.get(worker.slot, Field.Healthy) === 0, 1000, 'ejected within 1 s');
  const streamed = await Promise.all(streams);
  for (const s of streamed) {
    t.equal(s.status, 200);
    const ended = s.text.includes('data: [DONE]');
    t.ok(ended, 'every stream ends with [DONE]');
  }
  const broken = streamed.filter((s) => s.text.includes('"error"'));
  t.ok(r.ctx.counters.retries > 0, `requests in flight on the killed worker were retried (${r.ctx.counters.retries}); ${broken.length} streams broken`);
  t.ok(broken.every((s) => /"code":"upstream_/.test(s.text)), 'broken streams carry an SSE error event with a code');
  // Recovery: a worker on the same port is readmitted by the recovery probes.
  await front.revive();
  await waitFor(() => r.ctx.table.get(worker.slot, Field.Healthy) === 1, 10_000, 'readmitted');
  await waitFor(() => r.ctx.counters.active === 0, 10_000, 'drained');
  for (const w of r.ctx.registry.list()) t.equal(r.ctx.table.inFlight(w.slot), 0, `${w.url}: in-flight 0`);
});

t.test('a hanging worker: 504 upstream_timeout and counters freed', async (t) => {
  const fleet = await startSimFleet({ count: 1, timeScale: 0.01, hang: true });
  const r = await startTestRouter(['--prometheus-port', '0', '--worker-urls', ...fleet.urls, '--request-timeout-secs', '0.3']);
  t.teardown(async () => {
    await r.close(0);
    await fleet.close();
  });
  const results = await Promise.all([post(`${r.url}/generate`, body(1)), streamText(`${r.url}/generate`, body(2, true))]);
  t.equal(results[0].status, 504);
  t.equal(JSON.parse(results[0].body).error.code, 'upstream_timeout');
  t.equal(results[1].status, 504);
  // (a front-end thread counts a request finished just after its response left)
  await waitFor(() => r.ctx.counters.active === 0, 5000, 'no active request');
  t.equal(r.ctx.table.inFlight(r.ctx.registry.list()[0]!.slot), 0);
});

t.test('a worker answering garbage bytes is retried elsewhere', async (t) => {
  // Healthy for GET probes, garbage for data POSTs.
  const garbage = net.createServer((sock) => {
    sock.once('data', (d) => {
      if (d.toString('latin1').startsWith('GET')) sock.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok');
      else sock.end(Buffer.from([0x48, 0x54, 0x54, 0x50, 0xff, 0x00, 0x13, 0x37, 0x0d, 0x0a, 0x0d, 0x0a]));
    });
    sock.on('error', () => undefined);
  });
  await new Promise<void>((res) => garbage.listen(0, '127.0.0.1', res));
  const gurl = `http://127.0.0.1:${(garbage.address() as net.AddressInfo).port}`;
  const fleet = await startSimFleet({ count: 1, timeScale: 0.01 });
  const r = await startTestRouter(['--prometheus-port', '0', '--worker-urls', gurl, ...fleet.urls, '--policy', 'round_robin', '--retry-initial-backoff-ms', '1']);
  t.teardown(async () => {
    await r.close(0);
    await fleet.close();
    garbage.close();
  });
  const results = await Promise.all(Array.from({ length: 20 }, (_, i) => post(`${r.url}/generate`, body(i))));
  t.same(results.filter((x) => x.status !== 200).length, 0, 'every request answered by the good worker');
  t.ok(r.ctx.counters.retries > 0, 'garbage answers were retried');
  // (a front-end thread counts a request finished just after its response left)
  await waitFor(() => r.ctx.counters.active === 0, 5000, 'no active request');
});

t.test("the sim's garbage-rate fault (POST /sim/faults): garbage answers are retried elsewhere, streams included", async (t) => {
  const fleet = await startSimFleet({ count: 2, timeScale: 0.01 });
  const r = await startTestRouter(['--prometheus-port', '0', '--worker-urls', ...fleet.urls, '--policy', 'round_robin', '--retry-initial-backoff-ms', '1', '--cb-failure-threshold', '1000']);
  t.teardown(async () => {
    await r.close(0);
    await fleet.close();
  });
  const set = await post(`${fleet.urls[0]}/sim/faults`, { garbage_rate: 1 });
  t.equal(set.status, 200);
  t.equal(JSON.parse(set.body).faults.garbageRate, 1);
  const raw = await new Promise<string>((resolve) => {
    const s = net.connect(fleet.ports[0]!, '127.0.0.1');
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    s.on('error', () => undefined);
    const b = JSON.stringify(body(0));
    s.write(`POST /generate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${b.length}\r\n\r\n${b}`);
  });
  t.match(raw, /^HTTP\/1\.1 [^0-9]/, 'the worker answers without a status code (then closes)');
  const results = await Promise.all([
    ...Array.from({ length: 10 }, (_, i) => post(`${r.url}/generate`, body(i))),
    ...Array.from({ length: 6 }, (_, i) => streamText(`${r.url}/generate`, body(100 + i, true))),
  ]);
  t.same(results.filter((x) => x.status !== 200).map((x) => x.status), [], 'every request answered by the good worker');
  for (const s of results.slice(10)) t.match((s as { text: string }).text, /data: \[DONE\]/);
  t.ok(r.ctx.counters.retries > 0, `garbage answers were retried (${r.ctx.counters.retries})`);
  const stats = fleet.servers[0]!.stats();
  t.ok(stats.garbageAnswers > 1, `the sim counted its garbage answers (${stats.garbageAnswers})`);
  t.equal(r.ctx.counters.active, 0);
});
