/** Actor supervision: crashes, exits, failed starts, hung threads. Each test crashes a real actor thread. */
import t from 'tap';
import { ActorCrashedError } from '../../src/actors/actor.js';
import { echoActor, sleep, until } from './helpers.js';

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
      const pending = [actor.ask({ t: 'slow', ms: 60_000, v: 1 }), actor.ask({ t: 'slow', ms: 60_000, v: 2 })];
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
      // (generous: the machine is shared; what matters is not waiting for the 60 s replies)
      t.ok(waited < 30_000, `failed long before the 60 s replies were due (${waited} ms)`);

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

for (const transport of ['port', 'task'] as const) {
  t.test(`${transport}: killThread() is a crash on demand: what was owed fails, a new thread takes over`, async (t) => {
    const actor = echoActor({ transport, concurrentTasksPerWorker: 4 });
    await actor.whenAvailable();
    const firstThread = actor.threadId;
    const pending = actor.ask({ t: 'slow', ms: 60_000, v: 1 });
    await sleep(20);
    t.equal(await actor.killThread(), true);
    await t.rejects(pending, ActorCrashedError);
    await actor.whenAvailable();
    t.equal(actor.restarts, 1);
    t.not(actor.threadId, firstThread, 'a fresh thread');
    t.equal(await actor.ask({ t: 'add', a: 2, b: 2 }), 4);
    await actor.close();
    t.equal(await actor.killThread(), false, 'nothing to kill once closed');
  });
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
