import t from 'tap';
import { Worker } from 'node:worker_threads';
import { WorkerTable, Field, BreakerState } from '../../src/actors/worker-table.js';

t.test('allocate, count, release with generations', async (t) => {
  const table = WorkerTable.create(4);
  const a = table.allocate();
  const b = table.allocate({ healthy: false, nodeId: 1 });
  t.equal(a.slot, 0);
  t.equal(b.slot, 1);
  t.ok(table.isAvailable(0));
  t.notOk(table.isAvailable(1), 'unhealthy is not available');
  t.equal(table.get(1, Field.NodeId), 1);
  t.ok(table.acquire(a, 100));
  t.ok(table.acquire(a, 50));
  t.equal(table.inFlight(0), 2);
  t.equal(table.inFlightTokens(0), 150);
  table.releaseLoad(a, 100, true);
  t.equal(table.inFlight(0), 1);
  t.equal(table.get(0, Field.Processed), 1);
  // remove and reuse the slot: the stale ref must not touch the new worker's counters
  table.release(0);
  t.notOk(table.acquire(a, 1), 'stale ref refused');
  const c = table.allocate();
  t.equal(c.slot, 0);
  t.not(c.generation, a.generation);
  t.equal(table.inFlight(0), 0, 'counters reset on reuse');
  table.releaseLoad(a, 50, true);
  t.equal(table.inFlight(0), 0, 'stale release is a no-op');
  t.same(table.activeSlots(), [0, 1]);
  table.set(0, Field.Breaker, BreakerState.Open);
  t.notOk(table.isAvailable(0), 'open breaker is not available');
  table.allocate();
  table.allocate();
  t.throws(() => table.allocate(), /full/);
});

t.test('load takes the larger of own and reported', async (t) => {
  const table = WorkerTable.create(2);
  const a = table.allocate();
  table.acquire(a, 10);
  t.equal(table.load(0), 1);
  table.setReported(0, { queue: 3, running: 2, tokens: 500, tokenUsage: 0.5 }, 100);
  t.equal(table.load(0), 5);
  t.equal(table.get(0, Field.TokenUsagePermille), 500);
});

t.test('counters are shared with another thread', async (t) => {
  const table = WorkerTable.create(2);
  const ref = table.allocate();
  const url = new URL('../../src/actors/worker-table.js', import.meta.url).href;
  const w = new Worker(
    `import { WorkerTable } from ${JSON.stringify(url)};
     import { workerData, parentPort } from 'node:worker_threads';
     const t = WorkerTable.attach(workerData.buffer);
     for (let i = 0; i < 10000; i++) t.acquire(workerData.ref, 1);
     parentPort.postMessage('done');`,
    { eval: true, workerData: { buffer: table.buffer, ref } },
  );
  for (let i = 0; i < 10000; i++) table.acquire(ref, 1);
  await new Promise((resolve) => w.once('message', resolve));
  await w.terminate();
  t.equal(table.inFlight(0), 20000);
  t.equal(table.inFlightTokens(0), 20000);
});
