/** The actor runtime: messaging, batching, bounds, codecs, close. Supervision is in supervision.test.ts. */
import t from 'tap';
import { ActorClosedError, ActorCrashedError, ActorOverloadedError } from '../../src/actors/actor.js';
import type { EchoMessage } from './fixtures/echo-actor.js';
import { echoActor, sleep } from './helpers.js';

for (const transport of ['port', 'task'] as const) {
  t.test(`${transport} transport: ask, call, tell, ordering, per-message errors`, async (t) => {
    const actor = echoActor({ transport });
    t.teardown(() => actor.close());
    await actor.whenAvailable();
    t.equal(actor.available, true);
    t.equal(await actor.ask({ t: 'add', a: 2, b: 3 }), 5);
    t.same(await actor.ask({ t: 'echo', v: { nested: [1, 'two', null] } }), { nested: [1, 'two', null] });

    // call: static callback plus ctx, answers dispatched in order
    const seen: number[] = [];
    const done = new Promise<void>((resolve) => {
      const cb = (err: Error | null, v: unknown, ctx: number): void => {
        t.equal(err, null);
        t.equal(v, ctx * 10);
        seen.push(ctx);
        if (seen.length === 100) resolve();
      };
      for (let i = 0; i < 100; i++) actor.call({ t: 'echo', v: i * 10 }, cb, i);
    });
    await done;
    t.same(seen, Array.from({ length: 100 }, (_, i) => i), 'callbacks run in call order');

    // one failing message fails alone
    const results = await Promise.allSettled([
      actor.ask({ t: 'add', a: 1, b: 1 }),
      actor.ask({ t: 'fail', message: 'bad input 7' }),
      actor.ask({ t: 'add', a: 2, b: 2 }),
    ]);
    t.same(results[0], { status: 'fulfilled', value: 2 });
    t.equal(results[1]?.status, 'rejected');
    t.match((results[1] as PromiseRejectedResult).reason, { message: 'bad input 7' });
    t.same(results[2], { status: 'fulfilled', value: 4 });

    // an unknown tag (including Object.prototype names) fails that message only
    await t.rejects(actor.ask({ t: 'nope' } as unknown as EchoMessage), /unknown message type "nope"/);
    await t.rejects(actor.ask({ t: 'constructor' } as unknown as EchoMessage), /unknown message type "constructor"/);

    // async replies
    t.equal(await actor.ask({ t: 'slow', ms: 5, v: 42 }), 42);

    // tell is processed in order with calls
    const before = (await actor.ask({ t: 'state' })).handled;
    actor.tell({ t: 'echo', v: 1 });
    actor.tell({ t: 'echo', v: 2 });
    const after = (await actor.ask({ t: 'state' })).handled;
    t.equal(after - before, 2, 'tells were handled before the following ask');

    // tell with a transfer list: the buffer moves (detached here), its numbers arrive intact, and the
    // other messages of the same batch are unaffected
    const moved = new Float64Array([1.5, 2.5, 4]);
    const kept = new Float64Array([10, 20]);
    actor.tell({ t: 'sum', data: kept });
    actor.tell({ t: 'sum', data: moved }, [moved.buffer as ArrayBuffer]);
    const afterSum = await actor.ask({ t: 'state' });
    t.equal(afterSum.lastSum, 8, 'the transferred numbers arrived (and were handled after the cloned ones)');
    t.equal(kept.length, 2, 'a message without a transfer list is cloned: the sender keeps its array');
    t.equal(moved.length, 0, 'the transferred buffer left this thread');
    t.equal(moved.buffer.byteLength, 0);

    // a reply that cannot be cloned fails its call with an error, not a hang. Over a port the thread
    // catches it; under the task transport piscina's own postMessage throws and the thread dies.
    if (transport === 'port') {
      const [fn, sum] = await Promise.allSettled([actor.ask({ t: 'fn' }), actor.ask({ t: 'add', a: 2, b: 5 })]);
      t.match((fn as PromiseRejectedResult).reason, { message: /reply could not be sent/ });
      t.same(sum, { status: 'fulfilled', value: 7 }, 'the other message of the same batch is answered');
    }
    else {
      await t.rejects(actor.ask({ t: 'fn' }), ActorCrashedError);
      await actor.whenAvailable();
    }
    // an argument that cannot be cloned fails on the host
    await t.rejects(actor.ask({ t: 'echo', v: () => 1 }), /could not be cloned/);
    t.equal(await actor.ask({ t: 'add', a: 1, b: 2 }), 3, 'still serving afterwards');
  });
}

t.test('calls made in one event-loop turn share one crossing; batch size is bounded', async (t) => {
  const actor = echoActor({ maxBatch: 512 });
  t.teardown(() => actor.close());
  await actor.whenAvailable();
  const before = actor.stats().batchesSent;
  const ps: Promise<unknown>[] = [];
  for (let i = 0; i < 1000; i++) ps.push(actor.ask({ t: 'echo', v: i }));
  const values = await Promise.all(ps);
  t.same(values, Array.from({ length: 1000 }, (_, i) => i));
  t.equal(actor.stats().batchesSent - before, 2, '1000 calls -> 2 crossings of at most 512');

  const b2 = actor.stats().batchesSent;
  await Promise.all([actor.ask({ t: 'echo', v: 1 }), actor.ask({ t: 'echo', v: 2 }), actor.ask({ t: 'echo', v: 3 })]);
  t.equal(actor.stats().batchesSent - b2, 1, 'three calls in one turn -> one crossing');

  const b3 = actor.stats().batchesSent;
  await actor.ask({ t: 'echo', v: 1 });
  await actor.ask({ t: 'echo', v: 2 });
  t.equal(actor.stats().batchesSent - b3, 2, 'calls in different turns -> separate crossings');
});

t.test('batches in flight are bounded; the rest wait on the host', async (t) => {
  const actor = echoActor({ maxBatch: 4, maxBatchesInFlight: 2 });
  t.teardown(() => actor.close());
  await actor.whenAvailable();
  let maxInFlight = 0;
  const timer = setInterval(() => {
    maxInFlight = Math.max(maxInFlight, actor.stats().inFlightBatches);
  }, 1);
  const ps: Promise<number>[] = [];
  for (let i = 0; i < 40; i++) ps.push(actor.ask({ t: 'slow', ms: 3, v: i }));
  t.ok(actor.stats().inFlightBatches <= 2);
  t.ok(actor.stats().queuedCalls >= 32, 'calls beyond two batches queue on the host');
  t.same(await Promise.all(ps), Array.from({ length: 40 }, (_, i) => i));
  clearInterval(timer);
  t.ok(maxInFlight <= 2, `never more than 2 batches in flight (saw ${maxInFlight})`);
  t.equal(actor.stats().batchesSent >= 10, true);
});

t.test('calls beyond maxQueuedCalls fail fast with ActorOverloadedError; tells are dropped and counted', async (t) => {
  const actor = echoActor({ maxBatch: 2, maxBatchesInFlight: 1, maxQueuedCalls: 2 });
  t.teardown(() => actor.close());
  await actor.whenAvailable();
  const ps = [1, 2, 3, 4].map((v) => actor.ask({ t: 'slow', ms: 5, v }));
  const over = actor.ask({ t: 'echo', v: 5 });
  actor.tell({ t: 'echo', v: 6 });
  await t.rejects(over, ActorOverloadedError);
  t.equal(actor.stats().droppedTells, 1);
  t.same(await Promise.all(ps), [1, 2, 3, 4]);
  t.equal(await actor.ask({ t: 'echo', v: 7 }), 7, 'accepts again once drained');
});

t.test('timers fire inside the actor thread (atomics disabled)', async (t) => {
  const actor = echoActor();
  t.teardown(() => actor.close());
  await actor.whenAvailable();
  const first = await actor.ask({ t: 'ticks' });
  let second = first;
  const deadline = Date.now() + 60_000; // the thread may be starved for a while on a loaded machine
  while (second <= first && Date.now() < deadline) {
    await sleep(30);
    second = await actor.ask({ t: 'ticks' });
  }
  t.ok(second > first, `the thread's interval kept running (${first} -> ${second})`);
});

t.test('the port transport refuses atomics sync (it would never read its mailbox)', async (t) => {
  t.throws(() => echoActor({ transport: 'port', atomics: 'sync' }), /atomics/);
  t.throws(() => echoActor({ maxBatch: 0 }), /maxBatch/);
});

t.test('msgpack codec carries the same messages', async (t) => {
  for (const transport of ['port', 'task'] as const) {
    const actor = echoActor({ codec: 'msgpack', transport });
    await actor.whenAvailable();
    const record = { requestId: 'r1', tokens: [1, 2, 3], nested: { ok: true, score: 0.5 } };
    const ps = [];
    for (let i = 0; i < 50; i++) ps.push(actor.ask({ t: 'echo', v: { ...record, i } }));
    const values = (await Promise.all(ps)) as { i: number }[];
    t.same(values[49], { ...record, i: 49 }, `${transport}: round trip through msgpackr`);
    t.equal(await actor.ask({ t: 'add', a: 20, b: 22 }), 42);
    await actor.close();
  }
});

t.test('packed replies (replyCodec msgpack): same values, errors still per message, batches of many', async (t) => {
  const actor = echoActor({ replyCodec: 'msgpack' });
  t.teardown(() => actor.close());
  await actor.whenAvailable();
  const record = { requestId: 'r1', tokens: [1, 2, 3], nested: { ok: true, score: 0.5 }, none: null, url: 'http://127.0.0.1:30001' };
  const ps: Promise<unknown>[] = [];
  for (let i = 0; i < 600; i++) ps.push(actor.ask({ t: 'echo', v: { ...record, i } }));
  const failed = actor.ask({ t: 'fail', message: 'bad input 9' });
  const sum = actor.ask({ t: 'add', a: 20, b: 22 });
  const values = (await Promise.all(ps)) as { i: number }[];
  t.same(values[599], { ...record, i: 599 }, 'round trip through msgpackr');
  t.ok(values.every((v, i) => v.i === i), 'every reply to its own call, across crossings');
  await t.rejects(failed, { message: 'bad input 9' });
  t.equal(await sum, 42, 'the other messages of a batch with an error are answered');
  t.ok(actor.stats().batchesSent >= 2, 'more than one crossing (maxBatch 512)');
});

t.test('close drains accepted calls, runs the close hook, then refuses calls', async (t) => {
  const flag = new SharedArrayBuffer(4);
  const actor = echoActor({}, () => ({ tag: 'd', closeFlag: flag }));
  await actor.whenAvailable();
  const accepted = [actor.ask({ t: 'slow', ms: 30, v: 1 }), actor.ask({ t: 'echo', v: 2 })];
  const closing = actor.close();
  t.equal(actor.close(), closing, 'close is idempotent');
  t.same(await Promise.all(accepted), [1, 2], 'calls accepted before close are answered');
  await closing;
  t.equal(Atomics.load(new Int32Array(flag), 0), 1, 'the thread ran its close hook');
  t.equal(actor.available, false);
  await t.rejects(actor.ask({ t: 'echo', v: 3 }), ActorClosedError);
  await t.rejects(actor.whenAvailable(), ActorClosedError);
  actor.tell({ t: 'echo', v: 4 });
  t.equal(actor.stats().droppedTells, 1);
});

t.test('close while the thread is still starting fails queued calls and does not hang', async (t) => {
  const actor = echoActor({ transport: 'task' });
  const checks = [t.rejects(actor.ask({ t: 'echo', v: 1 }), ActorClosedError), t.rejects(actor.whenAvailable(), ActorClosedError)];
  await actor.close();
  await Promise.all(checks);
});

t.test('a callback that throws does not break the other callbacks of its batch', async (t) => {
  const actor = echoActor();
  t.teardown(() => actor.close());
  await actor.whenAvailable();
  const got: number[] = [];
  await new Promise<void>((resolve) => {
    actor.call({ t: 'echo', v: 1 }, () => {
      throw new Error('careless caller');
    });
    actor.call({ t: 'echo', v: 2 }, (_err, v) => {
      got.push(v as number);
      resolve();
    });
  });
  t.same(got, [2]);
  t.equal(actor.stats().callbackErrors, 1);
});
