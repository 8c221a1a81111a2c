import t from 'tap';
import { fileURLToPath } from 'node:url';
import { Actor, ActorClosedError, ActorCrashedError, ActorOverloadedError, type ActorTuning } from '../../src/actors/actor.js';
import type { EchoInit, EchoMessage, EchoReplies } from './fixtures/echo-actor.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/echo-actor.js', import.meta.url));

type EchoActor = Actor<EchoMessage, EchoReplies, EchoInit>;

function echoActor(tuning: ActorTuning = {}, init: () => EchoInit = () => ({ tag: 'a' })): EchoActor {
  // execArgv: threads would otherwise inherit tap's --import loaders and start several times slower
  return new Actor<EchoMessage, EchoReplies, EchoInit>({ name: 'echo', filename: FIXTURE, init, execArgv: ['--enable-source-maps'], ...tuning });
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function until(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

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

    // a reply that cannot be cloned fails its call with an error, not a hang. Over a port the thread
    // catches it; under the task transport piscina's own postMessage throws and the thread dies.
    if (transport === 'port') await t.rejects(actor.ask({ t: 'fn' }), /could not be/);
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
  await sleep(60);
  const second = await actor.ask({ t: 'ticks' });
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

for (const transport of ['port', 'task'] as const) {
  for (const how of ['crash', 'exit'] as const) {
    t.test(`${transport}: a thread that dies by ${how} fails pending calls promptly, restarts and re-initialises`, async (t) => {
      let generation = 0;
      // (the task transport needs room for a second task, or the crash would queue behind the slow ones)
      const actor = echoActor({ transport, concurrentTasksPerWorker: 4 }, () => ({ tag: `state-${++generation}` }));
      t.teardown(() => actor.close());
      await actor.whenAvailable();
      const first = await actor.ask({ t: 'state' });
      t.equal(first.tag, 'state-1');
      t.equal(actor.restarts, 0);
      const firstThread = actor.threadId;

      // slow calls in flight when the thread dies
      const pending = [actor.ask({ t: 'slow', ms: 5000, v: 1 }), actor.ask({ t: 'slow', ms: 5000, v: 2 })];
      await sleep(20); // let them reach the thread
      const started = Date.now();
      if (how === 'crash') actor.tell({ t: 'crash' });
      else void actor.ask({ t: 'exit', code: 3 }).catch(() => undefined);
      const outcomes = await Promise.allSettled(pending);
      const waited = Date.now() - started;
      for (const o of outcomes) {
        t.equal(o.status, 'rejected');
        t.type((o as PromiseRejectedResult).reason, ActorCrashedError);
      }
      const reason = (outcomes[0] as PromiseRejectedResult).reason as Error;
      t.match(reason.message, how === 'crash' ? /deliberate crash/ : /exited with code 3/);
      t.ok(waited < 4000, `failed long before the 5 s replies were due (${waited} ms)`);

      await actor.whenAvailable();
      t.equal(actor.available, true);
      t.equal(actor.restarts, 1);
      t.not(actor.threadId, firstThread, 'a fresh thread');
      const after = await actor.ask({ t: 'state' });
      t.equal(after.tag, 'state-2', 'init state supplied again by the host');
      t.equal(after.handled, 0, 'module state is fresh');
      t.equal(after.threadId, actor.threadId);
      t.equal(await actor.ask({ t: 'add', a: 1, b: 1 }), 2);
    });
  }
}

t.test('calls made while restarting wait for the new thread', async (t) => {
  const actor = echoActor();
  t.teardown(() => actor.close());
  await actor.whenAvailable();
  actor.tell({ t: 'crash' });
  await until('the actor to notice the crash', () => !actor.available);
  const p = actor.ask({ t: 'add', a: 20, b: 1 });
  t.equal(await p, 21);
  t.equal(actor.restarts, 1);
});

t.test('a thread that fails to initialise fails the queued calls, then backs off and retries', async (t) => {
  let refuse = true;
  let inits = 0;
  const actor = echoActor({ restartDelayMs: 10, maxRestartDelayMs: 40 }, () => {
    inits++;
    return { tag: 'b', failInit: refuse };
  });
  t.teardown(() => actor.close());
  t.equal(actor.available, false);
  await t.rejects(actor.ask({ t: 'echo', v: 1 }), ActorCrashedError, 'queued call fails with the failed start');
  await until('a few retries', () => inits >= 3);
  t.equal(actor.available, false);
  refuse = false;
  await actor.whenAvailable();
  t.equal(await actor.ask({ t: 'echo', v: 2 }), 2);
  t.ok(actor.restarts >= 2);
});

t.test('an init function that throws on the host counts as a failed start', async (t) => {
  let calls = 0;
  const actor = echoActor({ restartDelayMs: 5 }, () => {
    if (++calls < 3) throw new Error('no state yet');
    return { tag: 'c' };
  });
  t.teardown(() => actor.close());
  await actor.whenAvailable();
  t.equal((await actor.ask({ t: 'state' })).tag, 'c');
  t.equal(calls, 3);
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

t.test('the watchdog terminates a hung thread, fails its calls and restarts it', async (t) => {
  const actor = echoActor({ watchdogMs: 150 });
  t.teardown(() => actor.close());
  await actor.whenAvailable();
  t.equal(await actor.ask({ t: 'spin', ms: 10 }), 10, 'a short handler is fine');
  const started = Date.now();
  await t.rejects(actor.ask({ t: 'spin', ms: 60_000 }), { name: 'ActorCrashedError', message: /watchdog 150 ms/ });
  t.ok(Date.now() - started < 30_000, 'failed long before the handler would have returned');
  await actor.whenAvailable();
  t.equal(actor.restarts, 1);
  t.equal(await actor.ask({ t: 'add', a: 1, b: 2 }), 3);
});
