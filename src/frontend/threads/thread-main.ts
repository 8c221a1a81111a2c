/**
 * A front-end thread (node:worker_threads): its own uWS app on the router's host:port (SO_REUSEPORT: the
 * kernel spreads connections over the threads), its own upstream pools, and a data path identical to the
 * main thread's (data-route.ts) over thread-side adapters:
 *   - the worker table attached (in-flight counters, health, breaker state shared for free), through a
 *     ledger so the main thread can take back what this thread held if it dies;
 *   - a registry mirror kept current by the main thread's 'workers' messages;
 *   - stateless policies inline (a copy per thread), stateful ones asked of the main thread (batched);
 *   - events, progress, completion records, feedback, ejections, breaker outcomes and admission counts
 *     handed to the main thread in time-batched reports;
 *   - counters in the shared counter block; admission limits in shared memory.
 * Every other route is forwarded to the main thread's control app.
 *
 * uWS in a worker thread: the thread may end only after app.close() (listen socket AND connections), else
 * Node aborts the process when it tears the thread's loop down; so a crash is caught here, the app closed,
 * and only then does the thread exit (the main thread restarts it).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { WorkerTable } from '../../actors/worker-table.js';
import { WorkerRegistry } from '../../workers/registry.js';
import { createPolicyHost, type PolicyHost } from '../../policies/host.js';
import { Admission } from '../../policies/admission.js';
import { SwitchyardError } from '../../errors.js';
import { createLogger } from '../../util/log.js';
import { closeApp, closeListenSocket, listen, type ListenSocket } from '../http.js';
import { createDataPlaneApp } from '../router-app.js';
import type { DataPlaneContext } from '../context.js';
import { LedgeredTable, SharedCounters } from './shared.js';
import { SharedAdmissionLimits } from './shared-limits.js';
import { ThreadReporter } from './report.js';
import { RemotePolicyHost, ThreadBreakerGate, ThreadProgress } from './adapters.js';
import { CONTROL_BODY_LIMIT, createForwarder } from './forward.js';
import type { ThreadInit, ToMain, ToThread } from './protocol.js';

const init = workerData as ThreadInit;
const port = parentPort!;
const post = (m: ToMain, transfer?: ArrayBuffer[]): void => port.postMessage(m, transfer);

const log = createLogger({ level: init.logLevel, name: 'switchyard', destination: init.logFile }).child({ frontend: init.index });
const table = WorkerTable.attach(init.table);
const registry = WorkerRegistry.mirror(table, { requestTimeoutMs: init.settings.requestTimeoutMs, upstreamClient: init.upstreamClient });
const reporter = new ThreadReporter(post, performance.timeOrigin - init.mainTimeOrigin, init.reportMs);
const counters = new SharedCounters(init.buffers, init.index);
const threadSeed = ((init.policy.options.seed as number | undefined) ?? 0) ^ Math.imul(init.index, 0x9e3779b1);

let remotePolicy: RemotePolicyHost | undefined;
let policy: PolicyHost;
if (init.policy.inline) {
  policy = createPolicyHost(init.policy.name, { ...init.policy.options, seed: threadSeed }, table, log, { placement: 'inline' });
} else {
  remotePolicy = new RemotePolicyHost(init.policy.name, table, post, reporter, threadSeed);
  policy = remotePolicy;
}
let admission: Admission | undefined;
if (init.admission !== undefined) {
  admission = new Admission(table, init.admission);
  admission.addRecorder(reporter.admission);
}
registry.onChange((ws) => {
  policy.setWorkers(ws);
  admission?.setWorkers(ws);
});
registry.sync(init.members);

const ctx: DataPlaneContext & { shuttingDown: boolean } = {
  settings: init.settings,
  registry,
  table: new LedgeredTable(table, init.buffers, init.index),
  monitor: reporter,
  policy,
  admission,
  log,
  sinks: [reporter],
  counters,
  progress: init.hasProgress ? new ThreadProgress(reporter) : undefined,
  events: reporter,
  breakers: init.breakers === undefined ? undefined : new ThreadBreakerGate(table, init.breakers, reporter),
  limits: init.limits === undefined ? undefined : new SharedAdmissionLimits(init.limits.state, init.index, init.limits.options),
  shuttingDown: false,
};

// Barrier requests this thread made (a forwarded trace / stats query waits for every thread's report).
let nextBarrier = 1;
const barriers = new Map<number, () => void>();
const forwarder = createForwarder({
  controlUrl: init.controlUrl,
  maxBodyBytes: CONTROL_BODY_LIMIT,
  timeoutMs: Math.min(init.settings.requestTimeoutMs, 60_000),
  barrier: () =>
    new Promise<void>((resolve) => {
      const id = nextBarrier++;
      barriers.set(id, resolve);
      reporter.flush();
      post({ t: 'barrier-request', id });
    }),
  shuttingDown: () => ctx.shuttingDown,
  onForward: () => counters.forwarded++,
});
const app = createDataPlaneApp(ctx, forwarder.handle);
let socket: ListenSocket | undefined;

let exiting = false;
/** Close everything uWS holds (listen socket and connections), then end the thread. */
function exitThread(code: number): void {
  if (exiting) return;
  exiting = true;
  try {
    reporter.flush();
  } catch {
    // a crash may have left the batch unusable: what it held is lost with the thread's requests
  }
  closeApp(app);
  socket = undefined;
  void remotePolicy?.close();
  setImmediate(() => process.exit(code));
}

process.on('uncaughtException', (err) => {
  log.error({ event: 'frontend.crashed', frontend: init.index, err }, 'front-end thread crashed; closing its connections');
  exitThread(1);
});

async function shutdown(graceMs: number): Promise<void> {
  ctx.shuttingDown = true;
  if (socket !== undefined) closeListenSocket(socket);
  socket = undefined;
  ctx.limits?.drain(new SwitchyardError('shutting_down', 'the router is shutting down'));
  const deadline = Date.now() + graceMs;
  while (counters.active > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const unfinished = counters.active;
  reporter.flush();
  await Promise.allSettled([policy.close(), forwarder.close(), registry.close()]);
  post({ t: 'closed', unfinished });
  exitThread(0);
}

port.on('message', (m: ToThread) => {
  switch (m.t) {
    case 'workers':
      registry.sync(m.members);
      break;
    case 'decided':
      remotePolicy?.answer(m);
      break;
    case 'barrier':
      reporter.flush();
      post({ t: 'barrier-ack', id: m.id });
      break;
    case 'barrier-done': {
      const resolve = barriers.get(m.id);
      barriers.delete(m.id);
      resolve?.();
      break;
    }
    case 'shutdown':
      void shutdown(m.graceMs);
      break;
    case 'crash':
      setImmediate(() => {
        throw new Error('crash injected by a test');
      });
      break;
  }
});

listen(app, init.host, init.port, 'shared').then(
  (r) => {
    socket = r.socket;
    post({ t: 'ready', port: r.port });
  },
  (err: unknown) => {
    post({ t: 'listen-failed', error: (err as Error).message });
    exitThread(2);
  },
);
