/**
 * RedisLink against a real redis-server: publish/subscribe between two links (never to oneself), batches,
 * get/mget, Lua scripts, metrics; then Redis killed with SIGKILL: calls fail fast with undefined/false,
 * one log line per transition, errors counted, and on restart the link is up again, resubscribed, and
 * every resync hook ran.
 */
import t from 'tap';
import { RedisLink } from '../../src/cluster/redis-link.js';
import { findRedisServer, RedisServer, REDIS_SKIP_MESSAGE } from './redis-server.js';
import { captureLog } from './log-capture.js';

const bin = findRedisServer();

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

t.test('RedisLink', { skip: bin === undefined ? REDIS_SKIP_MESSAGE : false }, async (t) => {
  const redis = await RedisServer.start(bin!);
  t.teardown(() => redis.stop());
  const logA = captureLog();
  const a = new RedisLink({ url: redis.url, keyPrefix: 'test:', replicaId: 'a', logger: logA.logger });
  const b = new RedisLink({ url: redis.url, keyPrefix: 'test:', replicaId: 'b', logger: captureLog().logger });
  t.teardown(() => Promise.all([a.close(), b.close()]));
  let resyncsA = 0;
  a.onResync('count', () => {
    resyncsA++;
  });
  const gotB: { d: unknown; o: string }[] = [];
  const gotA: unknown[] = [];
  b.subscribe('chan', (d, o) => gotB.push({ d, o }));
  a.subscribe('chan', (d) => gotA.push(d));
  await Promise.all([a.start(), b.start()]);
  t.ok(a.up && b.up, 'both links up');
  t.equal(resyncsA, 1, 'the resync hooks run once at the first connection');
  t.equal(a.resyncs, 0, 'the first connection is not counted as a resync');
  t.equal(logA.count('redis.up'), 1, 'one log line for the first connection');

  t.test('publish reaches the other replica, never oneself', async (t) => {
    a.publish('chan', { worker: 'http://w:1', state: 1, at: 123.5, bytes: new Uint8Array([1, 2]) });
    await until('message at b', () => gotB.length === 1);
    t.same(gotB[0]!.d, { worker: 'http://w:1', state: 1, at: 123.5, bytes: new Uint8Array([1, 2]) });
    t.equal(gotB[0]!.o, 'a', 'origin replica id');
    await new Promise((r) => setTimeout(r, 50));
    t.equal(gotA.length, 0, 'a does not hear itself');
  });

  t.test('typed arrays and Buffers arrive with their type and bytes', async (t) => {
    const backing = new Uint32Array([7, 0xffffffff, 3, 4]);
    const sent = {
      u32: new Uint32Array([1, 0xdeadbeef, 0, 0xffffffff]),
      view: backing.subarray(1, 3), // a view at an offset into a larger buffer: only its own elements travel
      i32: new Int32Array([-1, 2 ** 31 - 1, -(2 ** 31)]),
      f64: new Float64Array([0.5, -1e300, Number.NaN]),
      u8: new Uint8Array([0, 255]),
      buf: Buffer.from('héllo, bytes'),
      empty: new Uint32Array(0),
    };
    const before = gotB.length;
    a.publish('chan', sent);
    await until('message at b', () => gotB.length === before + 1);
    const got = gotB.at(-1)!.d as Record<string, unknown>;
    for (const [k, v] of Object.entries(sent)) {
      const g = got[k] as ArrayBufferView;
      const want = v.constructor === Buffer ? Buffer : v.constructor;
      t.ok(g instanceof (want as typeof Uint8Array), `${k}: a ${v.constructor.name} arrives as one (got ${g?.constructor?.name})`);
      t.same(Buffer.from(g.buffer, g.byteOffset, g.byteLength), Buffer.from(v.buffer, v.byteOffset, v.byteLength), `${k}: same bytes`);
      t.equal((g as unknown as { length: number }).length, v.length, `${k}: same length`);
    }
    t.same(Array.from(got['view'] as Uint32Array), [0xffffffff, 3]);
    t.equal((got['buf'] as Buffer).toString('utf8'), 'héllo, bytes');
  });

  t.test('batch, get, mget, scripts, run', async (t) => {
    const ok = await a.batch('write', (p) => {
      p.set(a.key('k1'), Buffer.from('one'), 'PX', 60_000);
      p.set(a.key('k2'), 'two');
    });
    t.equal(ok, true);
    t.same((await b.get(b.key('k1')))?.toString(), 'one', 'b reads what a wrote');
    t.equal(await b.get(b.key('missing')), null, 'absent key: null');
    const m = await b.mget([b.key('k1'), b.key('missing'), b.key('k2')]);
    t.same(m?.map((x) => x?.toString() ?? null), ['one', null, 'two']);
    const incr = a.script('incr-to', "local v = redis.call('INCRBY', KEYS[1], ARGV[1]); return v", 1);
    t.equal(await incr([a.key('n')], [5]), 5);
    t.equal(await incr([a.key('n')], [2]), 7);
    const bad = await a.batch('bad', (p) => p.incr(a.key('k1')));
    t.equal(bad, false, 'a failing command makes the batch false');
    t.ok((a.errors.get('bad') ?? 0) >= 1, 'and is counted under its op');
    t.equal(await a.run('ttl', (r) => r.pttl(a.key('k2'))), -1);
    const text = a.metricsText();
    t.match(text, /switchyard_redis_up 1/);
    t.match(text, /switchyard_redis_errors_total\{op="bad"\} 1/);
    t.match(text, /switchyard_redis_resyncs_total 0/);
  });

  t.test('Redis killed: fail fast, one log line, counted; back: resync and resubscribed', async (t) => {
    const incr = a.script('incr2', "return redis.call('INCR', KEYS[1])", 1);
    await redis.kill9();
    await until('a down', () => !a.up);
    t.equal(logA.count('redis.down'), 1, 'one log line for the transition');
    for (let i = 0; i < 50; i++) {
      t.equal(await a.get(a.key('k1')), undefined);
      t.equal(await a.batch('write', (p) => p.set(a.key('x'), '1')), false);
      t.equal(await incr([a.key('n')], []), undefined);
      a.publish('chan', { i });
    }
    await new Promise((r) => setTimeout(r, 1500)); // several reconnect attempts
    t.equal(logA.count('redis.down'), 1, 'still one log line after many failed calls and reconnect attempts');
    t.ok((a.errors.get('connection') ?? 0) >= 1, 'failed reconnects are counted');
    t.match(a.metricsText(), /switchyard_redis_up 0/);

    await redis.restart();
    await until('a and b up again', () => a.up && b.up);
    await until('resync ran', () => resyncsA === 2);
    t.equal(a.resyncs, 1, 'switchyard_redis_resyncs_total counts the return');
    t.equal(logA.count('redis.up'), 2, 'one log line for the return');
    t.equal(await incr([a.key('fresh')], []), 1, 'scripts work on the restarted Redis (EVALSHA falls back to EVAL)');
    const before = gotB.length;
    // The subscriber reconnects on its own schedule; publish until b hears it.
    await until('b resubscribed', () => {
      a.publish('chan', { back: true });
      return gotB.length > before;
    });
    t.same(gotB.at(-1)!.d, { back: true });
  });
});
