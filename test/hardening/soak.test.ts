/**
 * The soak (`npm run soak`): its bookkeeping (slope, expected errors, verdict, schedule) on made-up
 * numbers, and a short real run (20 s, every fault kind) through the CLI: exit 0, nothing lost, no
 * counter leaked, every fault applied, the table and the JSON written.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { FAULT_KINDS, isExpected, judge, memoryTrend, slopePerMinute, tallyErrors, type FaultWindow, type MemoryTrend, type RequestRecord } from '../../bench/lib/soak-report.js';
import { soakTimeline } from '../../bench/lib/soak-run.js';

const SOAK = fileURLToPath(new URL('../../bench/soak.js', import.meta.url));
const MB = 1024 * 1024;

t.test('slope: least squares, per minute', (t) => {
  t.equal(slopePerMinute([]), 0);
  t.equal(slopePerMinute([{ t: 0, v: 5 }]), 0);
  // 1 MB every 10 s = 6 MB/min, with noise around the line.
  const pts = Array.from({ length: 31 }, (_, i) => ({ t: i * 10_000, v: 100 * MB + i * MB + (i % 2 === 0 ? 0.2 : -0.2) * MB }));
  t.ok(Math.abs(slopePerMinute(pts) / MB - 6) < 0.05, `${slopePerMinute(pts) / MB} MB/min`);
  const trend = memoryTrend(pts, 100_000);
  t.equal(trend.first, 100.2);
  t.equal(trend.afterWarmup, 110.2);
  t.equal(trend.max, 130.2);
  t.equal(trend.samples, 21, 'only samples after warm-up count for the slope');
  t.ok(Math.abs(trend.slopeMbPerMin - 6) < 0.1);
  t.ok(Math.abs(trend.lastHalfSlopeMbPerMin - 6) < 0.2);
  // A ramp then a plateau: the whole steady part slopes up, its last half is flat.
  const plateau = memoryTrend(Array.from({ length: 40 }, (_, i) => ({ t: i * 10_000, v: Math.min(i, 20) * MB })), 0);
  t.ok(plateau.slopeMbPerMin > 2, `ramp + plateau: ${plateau.slopeMbPerMin} MB/min overall`);
  t.equal(plateau.lastHalfSlopeMbPerMin, 0, 'its last half is flat');
  t.end();
});

t.test('errors a fault explains are expected; others are not', (t) => {
  const faults: FaultWindow[] = [
    { kind: 'hang', worker: 0, start: 10_000, end: 15_000, note: '' },
    { kind: 'kill', worker: 1, start: 30_000, end: 35_000, note: '' },
  ];
  t.ok(isExpected('upstream_timeout', 14_000, 19_000, faults, 6000), 'a hang explains a 504 of a request sent during it');
  t.ok(isExpected('upstream_timeout', 20_000, 25_000, faults, 6000), '... or within the slack after it');
  t.notOk(isExpected('upstream_timeout', 22_000, 27_000, faults, 6000), 'not long after');
  t.notOk(isExpected('stream:upstream_error', 12_000, 13_000, faults, 6000), 'a hang does not explain a cut stream');
  t.ok(isExpected('stream:upstream_error', 28_000, 31_000, faults, 6000), 'a kill does');
  t.notOk(isExpected('no_healthy_workers', 31_000, 31_000, faults, 6000), 'nothing explains no healthy workers');
  const records: RequestRecord[] = [
    { sentAt: 11_000, endedAt: 16_000, stream: false, outcome: { kind: 'error', error: 'upstream_timeout' } },
    { sentAt: 1000, endedAt: 2000, stream: false, outcome: { kind: 'error', error: 'upstream_timeout' } },
    { sentAt: 1000, endedAt: 2000, stream: false, outcome: { kind: 'ok' } },
  ];
  t.same(tallyErrors(records, faults, 6000), [{ kind: 'upstream_timeout', count: 2, expected: 1, unexpected: 1 }]);
  t.end();
});

t.test('verdict: lost requests, leaked counters and RSS growth fail the soak', (t) => {
  const flat: MemoryTrend = { first: 100, afterWarmup: 110, last: 111, max: 120, slopeMbPerMin: 0.5, lastHalfSlopeMbPerMin: 0.1, samples: 30 };
  const growing: MemoryTrend = { ...flat, slopeMbPerMin: 12 };
  t.same(judge(0, [{ name: 'active', value: 0 }], flat, flat, { maxRssSlopeMbPerMin: 5 }), { pass: true, reasons: [] });
  t.notOk(judge(1, [], flat, flat, { maxRssSlopeMbPerMin: 5 }).pass, 'one lost request fails');
  t.match(judge(0, [{ name: 'active', value: 2 }], flat, flat, { maxRssSlopeMbPerMin: 5 }).reasons, [/leaked counter active = 2/]);
  t.match(judge(0, [], growing, flat, { maxRssSlopeMbPerMin: 5 }).reasons, [/RSS grows 12 MB\/min/]);
  t.ok(judge(0, [], flat, growing, { maxRssSlopeMbPerMin: 5 }).pass, 'the heap slope is reported only, unless asked');
  t.notOk(judge(0, [], flat, growing, { maxRssSlopeMbPerMin: 5, maxHeapSlopeMbPerMin: 2 }).pass);
  t.end();
});

t.test('schedule: after warm-up, every fault kind fits even in a short run, none in the cool-down', (t) => {
  const short = soakTimeline({ minutes: 1 / 3, faultEverySecs: 30, faultSecs: 8, faults: FAULT_KINDS, workers: 3 });
  t.equal(short.durationMs, 20_000);
  t.equal(short.warmupMs, 4000);
  t.same(short.faults.map((f) => f.kind), [...FAULT_KINDS], 'each kind once');
  t.ok(short.faults.every((f) => f.start >= short.warmupMs && f.end <= short.durationMs - short.cooldownMs));
  const long = soakTimeline({ minutes: 10, faultEverySecs: 30, faultSecs: 8, faults: FAULT_KINDS, workers: 3 });
  t.equal(long.warmupMs, 60_000);
  t.ok(long.faults.length >= 16, `${long.faults.length} faults in 10 minutes`);
  t.equal(long.faults[1]!.start - long.faults[0]!.start, 30_000);
  t.equal(long.faults[0]!.end - long.faults[0]!.start, 8000);
  t.same(new Set(long.faults.map((f) => f.worker)), new Set([0, 1, 2]), 'faults rotate over the workers');
  t.end();
});

t.test('a 20 s soak through the CLI: exit 0, nothing lost or leaked, every fault applied', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-soak-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const json = join(dir, 'soak.json');
  // RSS over 20 s is warm-up noise: the slope threshold is for real runs (it is reported here all the same).
  const args = [SOAK, '--minutes', String(1 / 3), '--rate', '15', '--sample-secs', '1', '--max-rss-slope-mb-per-min', '100000', '--json', json];
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('exit', (c) => resolve({ code: c, stdout: out, stderr: err }));
  });
  t.equal(code, 0, `exit 0\n${stdout}\n${stderr.slice(-3000)}`);
  t.match(stdout, /verdict: PASS/);
  t.match(stdout, /router memory \(MB\)/);
  const r = JSON.parse(readFileSync(json, 'utf8')) as {
    requests: { sent: number; ok: number; lost: number; slowClients: number };
    faults: FaultWindow[];
    leaks: { name: string; value: number }[];
    rss: MemoryTrend;
    samples: unknown[];
    errors: { kind: string; unexpected: number }[];
  };
  t.ok(r.requests.sent >= 150, `${r.requests.sent} requests sent`);
  t.ok(r.requests.ok > r.requests.sent / 2, `${r.requests.ok} answered ok`);
  t.equal(r.requests.lost, 0, 'nothing lost');
  t.same(r.faults.map((f) => f.kind), [...FAULT_KINDS], 'every fault kind ran');
  t.ok(r.faults.every((f) => f.note !== '' && !/failed/.test(f.note)), `every fault applied: ${r.faults.map((f) => f.note).join('; ')}`);
  t.match(r.faults.find((f) => f.kind === 'kill')!.note, /SIGKILL pid \d+, restarted/);
  t.ok(r.leaks.length >= 4 && r.leaks.every((l) => l.value === 0), 'every counter back to 0');
  t.ok(r.samples.length >= 10, `${r.samples.length} memory samples`);
  t.ok(r.rss.first > 0 && r.rss.max >= r.rss.last, 'RSS first/last/max reported');
  t.comment(`errors: ${JSON.stringify(r.errors)}`);
});
