import t from 'tap';
import { createServer, type AddressInfo } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  errorCount,
  luaString,
  parseBytes,
  parseDurationMs,
  parseMetric,
  parseWrkOutput,
  postScript,
  runWrk,
  wrkArgs,
  writePostScript,
  WrkParseError,
} from '../../bench/lib/wrk.js';
import { findExecutable } from '../../bench/lib/system.js';

// A real report of wrk 4.1.0 (Debian) with --latency against the light backend.
const TYPICAL = `Running 3s test @ http://127.0.0.1:59079/generate
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.32ms  650.03us   9.94ms   77.16%
    Req/Sec    47.82k    12.44k   73.56k    63.33%
  Latency Distribution
     50%    1.22ms
     75%    1.66ms
     90%    2.06ms
     99%    3.26ms
  142675 requests in 3.00s, 63.95MB read
Requests/sec:  47486.85
Transfer/sec:     21.28MB
`;

// Every other unit wrk prints: seconds, minutes, M/k counts, GB, both error lines.
const SLOW = `Running 1m test @ http://127.0.0.1:8080/
  2 threads and 100 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.05s   512.00ms   2.00m    66.67%
    Req/Sec     1.20M   300.00k     2.50M    70.00%
  Latency Distribution
     50%  900.00ms
     75%    1.20s
     90%    1.50s
     99%    1.00m
  1234567 requests in 1.00m, 1.50GB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 5
Requests/sec:  20576.12
Transfer/sec:     25.60MB
`;

// What wrk prints when every request timed out: nan percentages, zero latencies.
const NOTHING = `Running 1s test @ http://127.0.0.1:8080/
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
    Req/Sec     0.00      0.00     0.00      -nan%
  Latency Distribution
     50%    0.00us
     75%    0.00us
     90%    0.00us
     99%    0.00us
  0 requests in 1.00s, 0.00B read
  Socket errors: connect 0, read 0, write 0, timeout 1
Requests/sec:      0.00
Transfer/sec:       0.00B
`;

t.test('parses a typical report', async (t) => {
  const r = parseWrkOutput(TYPICAL);
  t.equal(r.threads, 1);
  t.equal(r.connections, 64);
  t.equal(r.requests, 142675);
  t.equal(r.durationSec, 3);
  t.equal(r.requestsPerSec, 47486.85);
  t.equal(r.bytesRead, 63.95 * 1024 * 1024);
  t.equal(r.transferBytesPerSec, 21.28 * 1024 * 1024);
  t.equal(r.latency.avgMs, 1.32);
  t.ok(Math.abs(r.latency.stdevMs - 0.65003) < 1e-9);
  t.equal(r.latency.maxMs, 9.94);
  t.equal(r.latency.p50Ms, 1.22);
  t.equal(r.latency.p75Ms, 1.66);
  t.equal(r.latency.p90Ms, 2.06);
  t.equal(r.latency.p99Ms, 3.26);
  t.same(r.errors, { connect: 0, read: 0, write: 0, timeout: 0, non2xx3xx: 0 });
  t.equal(errorCount(r), 0);
});

t.test('parses seconds, minutes, GB and both error lines', async (t) => {
  const r = parseWrkOutput(SLOW);
  t.equal(r.threads, 2);
  t.equal(r.connections, 100);
  t.equal(r.durationSec, 60);
  t.equal(r.bytesRead, 1.5 * 1024 ** 3);
  t.equal(r.latency.avgMs, 1050);
  t.equal(r.latency.stdevMs, 512);
  t.equal(r.latency.maxMs, 120_000);
  t.equal(r.latency.p50Ms, 900);
  t.equal(r.latency.p75Ms, 1200);
  t.equal(r.latency.p99Ms, 60_000);
  t.same(r.errors, { connect: 1, read: 2, write: 3, timeout: 4, non2xx3xx: 5 });
  t.equal(errorCount(r), 15);
});

t.test('a run that completed nothing parses to zeros, not a crash', async (t) => {
  const r = parseWrkOutput(NOTHING);
  t.equal(r.requests, 0);
  t.equal(r.requestsPerSec, 0);
  t.equal(r.bytesRead, 0);
  t.equal(r.latency.p99Ms, 0);
  t.equal(r.errors.timeout, 1);
});

t.test('without --latency the percentiles are NaN; Windows line ends are fine', async (t) => {
  const noDist = TYPICAL.replace(/  Latency Distribution[\s\S]*?(?=  142675)/, '').replace(/\n/g, '\r\n');
  const r = parseWrkOutput(noDist);
  t.equal(r.requests, 142675);
  t.equal(r.requestsPerSec, 47486.85);
  t.ok(Number.isNaN(r.latency.p50Ms));
  t.ok(Number.isNaN(r.latency.p99Ms));
  t.equal(r.latency.avgMs, 1.32, 'thread stats still read');
});

t.test('a report without the essential lines is an error', async (t) => {
  t.throws(() => parseWrkOutput(''), WrkParseError);
  t.throws(() => parseWrkOutput('unable to connect to 127.0.0.1:1 Connection refused'), /Requests\/sec/);
  t.throws(() => parseWrkOutput(TYPICAL.replace(/.*requests in.*\n/, '')), /requests in/);
  t.throws(() => parseWrkOutput(TYPICAL.replace('1.22ms', '1.22parsecs')), WrkParseError);
});

t.test('unit helpers', async (t) => {
  t.equal(parseDurationMs('250us'), 0.25);
  t.equal(parseDurationMs('3.5ms'), 3.5);
  t.equal(parseDurationMs('2s'), 2000);
  t.equal(parseDurationMs('1.5m'), 90_000);
  t.equal(parseDurationMs('1h'), 3_600_000);
  t.equal(parseDurationMs('10'), 10_000, 'bare number = seconds, as wrk -d');
  t.ok(Number.isNaN(parseDurationMs('-nanus')));
  t.throws(() => parseDurationMs('fast'), WrkParseError);
  t.equal(parseMetric('981'), 981);
  t.equal(parseMetric('20.01k'), 20010);
  t.equal(parseMetric('1.2M'), 1_200_000);
  t.equal(parseMetric('3G'), 3e9);
  t.throws(() => parseMetric('1.2X'), WrkParseError);
  t.equal(parseBytes('512.00B'), 512);
  t.equal(parseBytes('1.00KB'), 1024);
  t.equal(parseBytes('2MB'), 2 * 1024 ** 2);
  t.equal(parseBytes('1TB'), 1024 ** 4);
  t.throws(() => parseBytes('12'), WrkParseError, 'bytes need their B');
});

t.test('wrk arguments', async (t) => {
  t.same(wrkArgs({ url: 'http://h:1/g', threads: 1, connections: 64, durationSec: 10, scriptPath: '/s.lua' }), [
    '-t', '1', '-c', '64', '-d', '10s', '--timeout', '10s', '--latency', '-s', '/s.lua', 'http://h:1/g',
  ]);
  t.same(wrkArgs({ url: 'u', threads: 2, connections: 8, durationSec: 0.2, latency: false, timeoutSec: 3 }), ['-t', '2', '-c', '8', '-d', '1s', '--timeout', '3s', 'u']);
});

t.test('Lua strings escape quotes, backslashes and control characters', async (t) => {
  t.equal(luaString('plain'), '"plain"');
  t.equal(luaString('a"b\\c'), '"a\\"b\\\\c"');
  t.equal(luaString('x\ny\tz\u0000'), '"x\\010y\\009z\\000"');
  t.equal(luaString(']]'), '"]]"', 'no long-bracket pitfalls');
  const s = postScript('{"text":"hi"}');
  t.match(s, /^wrk\.method = "POST"$/m);
  t.match(s, /^wrk\.body = "\{\\"text\\":\\"hi\\"\}"$/m);
  t.match(s, /^wrk\.headers\["Content-Type"\] = "application\/json"$/m);
});

const wrk = findExecutable('wrk');

t.test('wrk sends the scripted POST body byte for byte', { skip: wrk === undefined ? 'wrk is not installed' : false }, async (t) => {
  const body = JSON.stringify({ text: 'quote " backslash \\ newline \n tab \t ]] unicode é', stream: false });
  const seen = new Set<string>();
  const methods = new Set<string>();
  const server = createHttpServer((req, res) => {
    methods.add(req.method ?? '');
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.add(Buffer.concat(chunks).toString('utf8'));
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const dir = mkdtempSync(join(tmpdir(), 'wrk-test-'));
  t.teardown(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const script = writePostScript(dir, 'body', body);
  const r = await runWrk({ url: `http://127.0.0.1:${port}/generate`, threads: 1, connections: 2, durationSec: 1, scriptPath: script, wrkPath: wrk as string });
  t.ok(r.requests > 0, 'requests were made');
  t.equal(errorCount(r), 0);
  t.same([...methods], ['POST']);
  t.same([...seen], [body], 'every request carried exactly the body');
  t.ok(r.raw.includes('Requests/sec'));
});

t.test('runWrk rejects a broken script instead of measuring plain GETs', { skip: wrk === undefined ? 'wrk is not installed' : false }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wrk-test-'));
  const server = createServer((s) => s.destroy());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const { writeFileSync } = await import('node:fs');
  const bad = join(dir, 'bad.lua');
  writeFileSync(bad, 'wrk.headers[[[oops]]] = 1\n');
  const port = (server.address() as AddressInfo).port;
  await t.rejects(runWrk({ url: `http://127.0.0.1:${port}/`, threads: 1, connections: 1, durationSec: 1, scriptPath: bad, wrkPath: wrk as string }), /wrk complained/);
  await t.rejects(runWrk({ url: 'http://127.0.0.1:1/', threads: 1, connections: 1, durationSec: 1, wrkPath: wrk as string }), /wrk exited with 1/);
});
