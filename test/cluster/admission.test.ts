/**
 * Global admission through a real redis-server (src/cluster/admission.ts), with the limiters driven
 * directly: three replicas' AdmissionLimits sharing a global limit of 12 under load well above it, the
 * sum of what they admit checked at every admission; an idle replica's share going to busy ones; a
 * replica that dies without giving its lease back (its share reclaimed); Redis SIGKILLed (fallback to
 * ceil(12 / 3) each, logged once, metrics) and restarted (leases again, still within the limit).
 */
import t from 'tap';
import { RedisLink } from '../../src/cluster/redis-link.js';
import { GlobalAdmission } from '../../src/cluster/admission.js';
import { AdmissionLimits } from '../../src/frontend/admission.js';
import { findRedisServer, RedisServer, REDIS_SKIP_MESSAGE } from './redis-server.js';
import { captureLog, type CapturedLog } from './log-capture.js';

const bin = findRedisServer();
const LIMIT = 12;

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface Replica {
  readonly id: string;
  readonly link: RedisLink;
  readonly limits: AdmissionLimits;
  readonly global: GlobalAdmission;
  readonly log: CapturedLog;
  /** Closed loops of clients: how many, and whether they run. */
  clients: number;
  admitted: number;
}

t.test('global admission limits through Redis', { skip: bin === undefined ? REDIS_SKIP_MESSAGE : false }, async (t) => {
  const redis = await RedisServer.start(bin!);
  t.teardown(() => redis.stop());
  const prefix = `adm${process.pid}:`;
  const replicas: Replica[] = [];
  let maxSeen = 0;
  let checks = 0;
  const total = (): number => replicas.reduce((acc, r) => acc + r.limits.active, 0);
  const observe = (): void => {
    checks++;
    const n = total();
    if (n > maxSeen) maxSeen = n;
  };
  for (const id of ['a', 'b', 'c']) {
    const log = captureLog();
    const link = new RedisLink({ url: redis.url, keyPrefix: prefix, replicaId: id, logger: log.logger });
    const limits = new AdmissionLimits({ maxConcurrent: LIMIT, queueSize: 100_000, queueTimeoutMs: 120_000, ratePerSecond: 100_000 });
    const global = new GlobalAdmission(link, limits, { maxConcurrent: LIMIT, ratePerSecond: 100_000 }, log.logger);
    replicas.push({ id, link, limits, global, log, clients: 0, admitted: 0 });
  }
  await Promise.all(replicas.map((r) => r.link.start()));
  let stopping = false;
  t.teardown(async () => {
    stopping = true;
    for (const r of replicas) r.limits.drain(new (await import('../../src/errors.js')).SwitchyardError('shutting_down', 'test over'));
    await Promise.all(replicas.map(async (r) => {
      await r.global.close();
      await r.link.close();
    }));
  });

  // A client: acquire, hold 2-12 ms, release, again (while its replica wants that many clients).
  const client = (r: Replica, k: number): void => {
    if (stopping || k >= r.clients) return;
    const admitted = (): void => {
      r.admitted++;
      observe();
      setTimeout(() => {
        r.limits.release();
        client(r, k);
      }, 2 + Math.random() * 10);
    };
    const res = r.limits.acquire((err) => {
      if (err === null) admitted();
    });
    if (res === null) admitted();
  };
  const setClients = (r: Replica, n: number): void => {
    const before = r.clients;
    r.clients = n;
    for (let k = before; k < n; k++) client(r, k);
  };
  const [a, b, c] = replicas as [Replica, Replica, Replica];
  const shares = (): number[] => replicas.map((r) => r.global.stats().concurrency_share);

  t.test('first leases: every replica leased, idle shares spread within a few renewals', async (t) => {
    for (const r of replicas) t.equal(r.global.stats().leased, true, `${r.id} leased at start`);
    t.ok(shares().reduce((x, y) => x + y, 0) <= LIMIT, `shares ${shares().join('/')} within ${LIMIT}`);
    await until('idle shares spread', () => shares().every((x) => x >= 3), 2000);
    t.ok(shares().reduce((x, y) => x + y, 0) <= LIMIT, `shares ${shares().join('/')} within ${LIMIT}`);
    t.equal(a.log.count('admission.lease'), 1, 'one log line at the first lease');
  });

  t.test('three busy replicas, 40 clients each: never more than the limit admitted at once', async (t) => {
    maxSeen = 0;
    for (const r of replicas) setClients(r, 40);
    await new Promise((res) => setTimeout(res, 2500));
    t.ok(checks > 500, `${checks} admissions checked`);
    t.ok(maxSeen <= LIMIT, `max admitted at once ${maxSeen} <= ${LIMIT}`);
    t.ok(maxSeen >= LIMIT - 2, `the limit is used (max ${maxSeen})`);
    const s = shares();
    t.ok(s.every((x) => x >= 3 && x <= 5), `shares ${s.join('/')} about even`);
    const counts = replicas.map((r) => r.admitted);
    const sum = counts.reduce((x, y) => x + y, 0);
    t.ok(counts.every((x) => x > sum / 6), `admissions ${counts.join('/')} spread`);
  });

  t.test('an idle replica gives its share to the busy ones', async (t) => {
    setClients(c, 0);
    await until('busy replicas take the idle share', () => (shares()[0] as number) + (shares()[1] as number) >= LIMIT - 2, 5000);
    maxSeen = 0;
    await new Promise((res) => setTimeout(res, 500));
    t.ok(maxSeen <= LIMIT, `max ${maxSeen} <= ${LIMIT}`);
    t.ok(maxSeen >= LIMIT - 3, `the busy replicas use the idle one's share (max ${maxSeen}, shares ${shares().join('/')})`);
    // c idle: its rate weight is small, the busy ones split the rest
    t.ok(c.global.stats().rate_share < a.global.stats().rate_share, `rate shares ${replicas.map((r) => r.global.stats().rate_share.toFixed(0)).join('/')}`);
    setClients(c, 40);
    await until('c gets a share back', () => (shares()[2] as number) >= 3, 5000);
    maxSeen = 0;
    await new Promise((res) => setTimeout(res, 500));
    t.ok(maxSeen <= LIMIT, `after c's return: max ${maxSeen} <= ${LIMIT}`);
  });

  t.test('Redis SIGKILLed: fallback to ceil(12 / 3) each, logged once; restarted: leases again', async (t) => {
    maxSeen = 0;
    // a renewal timing out on a loaded machine is a fallback too (the lease is not trusted then): count from here
    const fallbackLines = a.log.count('admission.fallback');
    const leaseLines = a.log.count('admission.lease');
    const fallbacks = a.global.stats().fallbacks;
    await redis.kill9();
    await until('every replica in fallback', () => replicas.every((r) => r.global.stats().fallback), 5000);
    t.same(shares(), [4, 4, 4], 'local limit ceil(12 / 3)');
    const before = a.admitted;
    await new Promise((res) => setTimeout(res, 800));
    t.ok(a.admitted > before + 50, 'requests keep being admitted without Redis');
    t.ok(maxSeen <= LIMIT, `max ${maxSeen} <= ${LIMIT} during the outage`);
    t.equal(a.log.count('admission.fallback'), fallbackLines + 1, 'one log line for the outage');
    t.match(a.global.metricsText(), /switchyard_cluster_admission_fallback 1\n/);
    t.match(a.global.metricsText(), new RegExp(`switchyard_cluster_admission_fallbacks_total ${fallbacks + 1}\n`));
    t.match(a.global.metricsText(), /switchyard_cluster_admission_lease_failures_total [1-9]/);
    maxSeen = 0;
    await redis.launch();
    await until('every replica leased again', () => replicas.every((r) => r.global.stats().leased), 10_000);
    await new Promise((res) => setTimeout(res, 800));
    t.ok(maxSeen <= LIMIT, `max ${maxSeen} <= ${LIMIT} across the recovery`);
    t.equal(a.log.count('admission.fallback'), fallbackLines + 1, 'still one fallback line');
    t.equal(a.log.count('admission.lease'), leaseLines + 1, 'one line when the lease is back');
    // the replicas register one by one in the restarted (empty) Redis: while they do, nobody is granted
    // more than the even split of the replicas seen before, so the last to come back still gets its share
    const firstShares = replicas.map((r) => r.log.records.filter((x) => x['event'] === 'admission.lease').at(-1)?.['share']);
    t.same(firstShares, [4, 4, 4], 'first shares after the restart: the even split');
    t.match(a.global.metricsText(), /switchyard_cluster_admission_fallback 0\n/);
    t.match(a.global.metricsText(), /switchyard_cluster_admission_replicas 3\n/);
  });

  t.test('a replica that dies without giving its lease back: its share is reclaimed', async (t) => {
    setClients(c, 0);
    // c's connection goes away (a crash: no release); its lease expires after 500 ms
    await c.link.close();
    await until('a and b take c’s share', () => (shares()[0] as number) + (shares()[1] as number) >= LIMIT - 1, 5000);
    t.match(a.global.metricsText(), /switchyard_cluster_admission_replicas 2\n/);
    setClients(a, 0);
    setClients(b, 0);
  });
});

t.test('global token rate through Redis: three busy replicas admit the fleet rate, not three times it', { skip: bin === undefined ? REDIS_SKIP_MESSAGE : false }, async (t) => {
  const redis = await RedisServer.start(bin!);
  t.teardown(() => redis.stop());
  const RATE = 300;
  const parts = ['a', 'b', 'c'].map((id) => {
    const log = captureLog();
    const link = new RedisLink({ url: redis.url, keyPrefix: `rate${process.pid}:`, replicaId: id, logger: log.logger });
    const limits = new AdmissionLimits({ maxConcurrent: -1, queueSize: 100_000, queueTimeoutMs: 60_000, ratePerSecond: RATE });
    const global = new GlobalAdmission(link, limits, { maxConcurrent: -1, ratePerSecond: RATE }, log.logger);
    return { link, limits, global, admitted: 0 };
  });
  await Promise.all(parts.map((p) => p.link.start()));
  let stopping = false;
  t.teardown(async () => {
    stopping = true;
    const { SwitchyardError } = await import('../../src/errors.js');
    for (const p of parts) p.limits.drain(new SwitchyardError('shutting_down', 'test over'));
    await Promise.all(parts.map(async (p) => {
      await p.global.close();
      await p.link.close();
    }));
  });
  const loop = (p: (typeof parts)[number]): void => {
    if (stopping) return;
    const admitted = (): void => {
      p.admitted++;
      setTimeout(() => {
        p.limits.release();
        loop(p);
      }, 1);
    };
    const res = p.limits.acquire((err) => {
      if (err === null) admitted();
    });
    if (res === null) admitted();
  };
  for (const p of parts) for (let k = 0; k < 10; k++) loop(p);
  await new Promise((r) => setTimeout(r, 700)); // shares settle, buckets drain
  const before = parts.map((p) => p.admitted);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, 2000));
  const secs = (performance.now() - t0) / 1000;
  const counts = parts.map((p, i) => p.admitted - (before[i] as number));
  const rate = counts.reduce((x, y) => x + y, 0) / secs;
  t.ok(rate <= RATE * 1.1, `fleet admitted ${rate.toFixed(0)}/s (${counts.join('/')}) <= ${RATE} * 1.1`);
  t.ok(rate >= RATE * 0.75, `the rate is used: ${rate.toFixed(0)}/s`);
  const shares = parts.map((p) => p.global.stats().rate_share);
  t.ok(Math.abs(shares.reduce((x, y) => x + y, 0) - RATE) < 1, `shares ${shares.map((x) => x.toFixed(0)).join('/')} sum to ${RATE}`);
});
