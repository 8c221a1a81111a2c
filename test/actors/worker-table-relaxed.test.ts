/** The relaxed readers added to WorkerTable for policies' hot paths: same answers as the Atomics ones. */
import t from 'tap';
import { Worker } from 'node:worker_threads';
import { BreakerState, Field, SlotState, WorkerTable } from '../../src/actors/worker-table.js';

t.test('peek, isCandidate and peekLoad agree with get, isAvailable and load', async (t) => {
  const table = WorkerTable.create(8);
  const a = table.allocate();
  const b = table.allocate({ healthy: false });
  const c = table.allocate();
  for (const f of [Field.Generation, Field.State, Field.Healthy, Field.NodeId]) {
    for (const s of [a.slot, b.slot, c.slot, 5]) t.equal(table.peek(s, f), table.get(s, f));
  }
  t.ok(table.isCandidate(a.slot, a.generation));
  t.notOk(table.isCandidate(a.slot, a.generation + 1), 'another generation is not a candidate');
  t.notOk(table.isCandidate(b.slot, b.generation), 'unhealthy');
  table.set(c.slot, Field.Breaker, BreakerState.Open);
  t.notOk(table.isCandidate(c.slot, c.generation), 'breaker open');
  table.set(c.slot, Field.Breaker, BreakerState.HalfOpen);
  t.ok(table.isCandidate(c.slot, c.generation), 'half-open lets requests through');
  table.set(c.slot, Field.State, SlotState.Draining);
  t.notOk(table.isCandidate(c.slot, c.generation), 'draining');
  table.release(a.slot);
  t.notOk(table.isCandidate(a.slot, a.generation), 'released');
  const a2 = table.allocate();
  t.equal(a2.slot, a.slot);
  t.notOk(table.isCandidate(a.slot, a.generation), 'reused slot, old generation');
  t.ok(table.isCandidate(a2.slot, a2.generation));
  for (let s = 0; s < 8; s++) t.equal(table.isCandidate(s, table.get(s, Field.Generation)), table.isAvailable(s), `slot ${s}`);

  t.ok(table.acquire(a2, 5));
  t.ok(table.acquire(a2, 5));
  t.equal(table.peekLoad(a2.slot), 2);
  table.setReported(a2.slot, { queue: 3, running: 4, tokens: 0 }, 0);
  t.equal(table.peekLoad(a2.slot), 7, 'reported queue+running when larger');
  t.equal(table.peekLoad(a2.slot), table.load(a2.slot));
});

t.test('relaxed reads see writes made by another thread', async (t) => {
  const table = WorkerTable.create(4);
  const ref = table.allocate();
  const done = new SharedArrayBuffer(4);
  const worker = new Worker(
    `const { workerData } = require('node:worker_threads');
     const a = new Int32Array(workerData.table);
     const base = 4 + workerData.slot * 16;
     Atomics.store(a, base + 2, 0);   // Healthy = 0
     Atomics.add(a, base + 3, 9);     // InFlightRequests += 9
     const d = new Int32Array(workerData.done); Atomics.store(d, 0, 1); Atomics.notify(d, 0);`,
    { eval: true, workerData: { table: table.buffer, slot: ref.slot, done } },
  );
  await new Promise((resolve) => worker.once('exit', resolve));
  t.equal(Atomics.load(new Int32Array(done), 0), 1);
  t.notOk(table.isCandidate(ref.slot, ref.generation), 'health change seen');
  t.equal(table.peekLoad(ref.slot), 9, 'counter change seen');
});
