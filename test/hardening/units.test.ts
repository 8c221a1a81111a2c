/**
 * Unit behaviour of the hardening pieces: backoff schedule, circuit breaker state machine (in the shared
 * worker table), admission limits (concurrency + FIFO queue + token bucket).
 */
import t from 'tap';
import { backoffMs, isRetryableStatus, DEFAULT_RETRY_POLICY } from '../../src/frontend/retry.js';
import { CircuitBreakers, Permit } from '../../src/workers/breaker.js';
import { BreakerState, Field, WorkerTable } from '../../src/actors/worker-table.js';
import { AdmissionLimits } from '../../src/frontend/admission.js';
import { SwitchyardError } from '../../src/errors.js';

t.test('backoff: exponential, capped, jittered within bounds', (t) => {
  const p = { ...DEFAULT_RETRY_POLICY, jitter: 0 };
  t.equal(backoffMs(p, 1), 50);
  t.equal(backoffMs(p, 2), 75);
  t.equal(backoffMs(p, 3), 113);
  t.equal(backoffMs(p, 100), 30_000, 'capped at max');
  const j = DEFAULT_RETRY_POLICY;
  t.equal(backoffMs(j, 1, () => 0), 40, 'lowest jitter: -20%');
  t.equal(backoffMs(j, 1, () => 1), 60, 'highest jitter: +20%');
  t.equal(backoffMs(j, 100, () => 1), 30_000, 'jitter never exceeds the max');
  for (let i = 0; i < 1000; i++) {
    const d = backoffMs(j, 4);
    if (d < Math.round(168.75 * 0.8) - 1 || d > Math.round(168.75 * 1.2) + 1) t.fail(`out of bounds: ${d}`);
  }
  t.same([408, 429, 500, 502, 503, 504].map(isRetryableStatus), [true, true, true, true, true, true]);
  t.same([200, 400, 404, 413, 501].map(isRetryableStatus), [false, false, false, false, false]);
  t.end();
});

t.test('breaker: closed -> open -> half-open (limited probes) -> closed; failure in half-open re-opens', async (t) => {
  const table = WorkerTable.create(8);
  const ref = table.allocate();
  const seen: string[] = [];
  const b = new CircuitBreakers(table, { failureThreshold: 3, successThreshold: 2, openMs: 40 }, (_r, from, to) => seen.push(`${from}->${to}`));
  t.teardown(() => b.close());
  t.equal(b.tryAcquire(ref), Permit.Normal);
  b.record(ref, Permit.Normal, false);
  b.record(ref, Permit.Normal, false);
  b.record(ref, Permit.Normal, true); // a success resets the count
  b.record(ref, Permit.Normal, false);
  b.record(ref, Permit.Normal, false);
  t.equal(table.get(ref.slot, Field.Breaker), BreakerState.Closed, 'not yet: failures must be consecutive');
  b.record(ref, Permit.Normal, false);
  t.equal(table.get(ref.slot, Field.Breaker), BreakerState.Open, 'open after 3 consecutive failures');
  t.notOk(table.isAvailable(ref.slot), 'an open breaker makes the worker unavailable to policies');
  t.equal(b.tryAcquire(ref), Permit.Refused);
  await new Promise((r) => setTimeout(r, 120));
  t.equal(table.get(ref.slot, Field.Breaker), BreakerState.HalfOpen, 'half-open after the timeout');
  t.ok(table.isAvailable(ref.slot));
  t.equal(b.tryAcquire(ref), Permit.Probe);
  t.equal(b.tryAcquire(ref), Permit.Probe);
  t.equal(b.tryAcquire(ref), Permit.Refused, 'only successThreshold probes at once');
  b.record(ref, Permit.Probe, undefined); // an aborted probe gives its permit back
  t.equal(b.tryAcquire(ref), Permit.Probe);
  b.record(ref, Permit.Probe, true);
  t.equal(table.get(ref.slot, Field.Breaker), BreakerState.HalfOpen);
  b.record(ref, Permit.Probe, false);
  t.equal(table.get(ref.slot, Field.Breaker), BreakerState.Open, 'a failed probe re-opens');
  await new Promise((r) => setTimeout(r, 120));
  t.equal(b.tryAcquire(ref), Permit.Probe);
  t.equal(b.tryAcquire(ref), Permit.Probe);
  b.record(ref, Permit.Probe, true);
  b.record(ref, Permit.Probe, true);
  t.equal(table.get(ref.slot, Field.Breaker), BreakerState.Closed, 'closed after successThreshold successes');
  t.same(seen, ['0->1', '1->2', '2->1', '1->2', '2->0']);
  t.same(b.transitions, { opened: 2, halfOpened: 2, closed: 1 });
  // A slot reused by another worker starts closed with fresh counts.
  b.record(ref, Permit.Normal, false);
  table.release(ref.slot);
  const again = table.allocate();
  t.equal(again.slot, ref.slot);
  b.record(again, Permit.Normal, false);
  b.record(again, Permit.Normal, false);
  t.equal(table.get(again.slot, Field.Breaker), BreakerState.Closed, 'old failures do not count for the new worker');
});

t.test('admission: concurrency limit, FIFO queue, queue_full, queue_timeout, cancel', async (t) => {
  const a = new AdmissionLimits({ maxConcurrent: 2, queueSize: 2, queueTimeoutMs: 60 });
  const order: string[] = [];
  const cb = (name: string) => (err: SwitchyardError | null) => order.push(err === null ? name : `${name}:${err.code}`);
  t.equal(a.acquire(cb('a')), null);
  t.equal(a.acquire(cb('b')), null);
  const c = a.acquire(cb('c'));
  const d = a.acquire(cb('d'));
  t.ok(c !== null && !('code' in c) && d !== null && !('code' in d), 'c and d wait');
  const e = a.acquire(cb('e'));
  t.equal((e as SwitchyardError).code, 'queue_full');
  t.equal((e as SwitchyardError).status, 429);
  a.cancel(c as never);
  t.equal(a.queued, 1);
  a.release();
  t.same(order, ['d'], 'the cancelled waiter is skipped; d admitted');
  t.equal(a.active, 2);
  const f = a.acquire(cb('f'));
  t.ok(f !== null && !('code' in f));
  await new Promise((r) => setTimeout(r, 150));
  t.same(order, ['d', 'f:queue_timeout']);
  t.equal(a.queued, 0);
  a.release();
  a.release();
  t.equal(a.active, 0);
  t.equal(a.acquire(cb('g')), null, 'admitted at once when free');
  t.same(a.stats, { admitted: 4, queued: 3, queueFull: 1, queueTimeouts: 1, rateLimited: 0, cancelled: 1 });
});

t.test('admission: FIFO order under churn', (t) => {
  const a = new AdmissionLimits({ maxConcurrent: 1, queueSize: 5000, queueTimeoutMs: 60_000 });
  const got: number[] = [];
  t.equal(a.acquire(() => undefined), null);
  const waiters = [];
  for (let i = 0; i < 3000; i++) waiters.push(a.acquire((err) => (err === null ? got.push(i) : undefined)));
  for (let i = 0; i < 3000; i += 3) a.cancel(waiters[i] as never);
  for (let i = 0; i < 3000; i++) a.release();
  const expected = [];
  for (let i = 0; i < 3000; i++) if (i % 3 !== 0) expected.push(i);
  t.same(got, expected);
  a.drain(new Error('x') as never);
  t.end();
});

t.test('admission: token bucket rate limit', (t) => {
  let now = 0;
  const a = new AdmissionLimits({ maxConcurrent: -1, queueSize: 0, queueTimeoutMs: 0, ratePerSecond: 10, now: () => now });
  let ok = 0;
  let limited = 0;
  for (let i = 0; i < 15; i++) {
    const r = a.acquire(() => undefined);
    if (r === null) ok++;
    else if ((r as SwitchyardError).code === 'rate_limited') limited++;
  }
  t.equal(ok, 10, 'a burst of one second');
  t.equal(limited, 5);
  now += 500;
  ok = 0;
  for (let i = 0; i < 10; i++) if (a.acquire(() => undefined) === null) ok++;
  t.equal(ok, 5, 'refilled at 10/s');
  t.ok(new AdmissionLimits({ maxConcurrent: -1, queueSize: 1, queueTimeoutMs: 1 }).unlimited, 'no limits configured');
  t.end();
});

t.test('admission: over the rate, requests wait in the queue (FIFO) and are admitted as tokens refill', async (t) => {
  const a = new AdmissionLimits({ maxConcurrent: -1, queueSize: 10, queueTimeoutMs: 10_000, ratePerSecond: 20 });
  const admittedAt: number[] = [];
  const order: number[] = [];
  for (let i = 0; i < 20; i++) t.equal(a.acquire(() => undefined), null, `burst ${i} admitted at once`);
  const t0 = Date.now();
  const waiters = [];
  for (let i = 0; i < 10; i++) {
    waiters.push(
      a.acquire((err) => {
        t.equal(err, null);
        order.push(i);
        admittedAt.push(Date.now() - t0);
      }),
    );
  }
  t.ok(waiters.every((w) => w !== null && !('code' in w)), 'the next 10 wait instead of being refused');
  t.equal(a.queued, 10);
  const full = a.acquire(() => undefined) as SwitchyardError;
  t.equal(full.code, 'queue_full', 'beyond the queue: 429 queue_full');
  t.equal(full.status, 429);
  t.equal(order.length, 0, 'nobody admitted before a token refilled');
  await new Promise((r) => setTimeout(r, 50));
  a.cancel(waiters[3] as never);
  while (order.length < 9) await new Promise((r) => setTimeout(r, 20));
  t.same(order, [0, 1, 2, 4, 5, 6, 7, 8, 9], 'FIFO, the cancelled waiter skipped');
  // 20 tokens/s: the 9th admission needs at least 8 more tokens after the first (lower bound only).
  t.ok(admittedAt[8]! >= 8 * 50 - 5, `admitted at the refill rate (${admittedAt.join(', ')} ms)`);
  t.equal(a.queued, 0);
  t.equal(a.stats.rateLimited, 0, 'nothing refused for the rate while the queue had room');
  t.equal(a.stats.queueFull, 1);
});

t.test('admission: a request waiting for a token times out with 408 queue_timeout', async (t) => {
  const a = new AdmissionLimits({ maxConcurrent: -1, queueSize: 10, queueTimeoutMs: 30, ratePerSecond: 1 });
  t.equal(a.acquire(() => undefined), null);
  const err = await new Promise<SwitchyardError | null>((resolve) => a.acquire(resolve));
  t.equal(err?.code, 'queue_timeout');
  t.equal(err?.status, 408);
  t.equal(a.queued, 0);
  a.drain(new SwitchyardError('shutting_down', 'x'));
});

t.test('admission: the bucket holds --max-concurrent-requests tokens (sgl-router), and tokens are not returned', async (t) => {
  const a = new AdmissionLimits({ maxConcurrent: 3, queueSize: 5, queueTimeoutMs: 10_000, ratePerSecond: 1 });
  for (let i = 0; i < 3; i++) t.equal(a.acquire(() => undefined), null, 'a burst of the concurrency limit');
  a.release();
  a.release();
  a.release();
  t.equal(a.active, 0);
  let admitted = false;
  const w = a.acquire(() => (admitted = true));
  t.ok(w !== null && !('code' in w), 'slots are free but the bucket is empty: it waits');
  t.notOk(admitted);
  a.drain(new SwitchyardError('shutting_down', 'x'));
  // Without a queue the rate refuses at once, as before.
  const b = new AdmissionLimits({ maxConcurrent: -1, queueSize: 0, queueTimeoutMs: 60_000, ratePerSecond: 2 });
  b.acquire(() => undefined);
  b.acquire(() => undefined);
  const refused = b.acquire(() => undefined) as SwitchyardError;
  t.equal(refused.code, 'rate_limited');
  t.ok((refused.details?.['retry_after_ms'] as number) > 0, 'retry_after_ms tells when the next token is due');
});

t.test('breaker: a worker readmitted by health checks gets its open breaker half-open at once', (t) => {
  const table = WorkerTable.create(4);
  const ref = table.allocate();
  const b = new CircuitBreakers(table, { failureThreshold: 2, successThreshold: 1, openMs: 60_000 });
  b.recovered(ref);
  t.equal(table.get(ref.slot, Field.Breaker), BreakerState.Closed, 'a closed breaker stays closed');
  b.record(ref, b.tryAcquire(ref), false);
  b.record(ref, b.tryAcquire(ref), false);
  t.equal(table.get(ref.slot, Field.Breaker), BreakerState.Open);
  b.recovered(ref);
  t.equal(table.get(ref.slot, Field.Breaker), BreakerState.HalfOpen, 'open -> half-open without waiting 60 s');
  t.equal(b.counts(ref).transitions(BreakerState.Open, BreakerState.HalfOpen), 1, 'counted as a transition');
  const probe = b.tryAcquire(ref);
  b.record(ref, probe, true);
  t.equal(table.get(ref.slot, Field.Breaker), BreakerState.Closed, 'a good probe closes it');
  b.close();
  t.end();
});
