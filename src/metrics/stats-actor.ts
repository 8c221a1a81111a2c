/**
 * The stats actor thread: one StatsStore in module scope, fed packed sample batches by the front end
 * (stats-host.ts) and asked for snapshots, Prometheus histogram text and checkpoints. Every percentile is
 * computed here, so a /stats request or a scrape never costs the front end more than one message.
 */
import { performance } from 'node:perf_hooks';
import { initWebAssembly } from 'hdr-histogram-js';
import { defineActor } from '../actors/actor-thread.js';
import { StatsStore } from './stats-store.js';
import type { StatsActorInit, StatsActorMessage, StatsActorReplies } from './stats-protocol.js';

let store: StatsStore | null = null;

function state(): StatsStore {
  if (store === null) throw new Error('stats actor is not initialised');
  return store;
}

export default defineActor<StatsActorMessage, StatsActorReplies, StatsActorInit>({
  async init(data) {
    if (data.useWasm) await initWebAssembly();
    const s = new StatsStore({ sliceMs: data.sliceMs, useWasm: data.useWasm, now: () => performance.now(), since: data.since });
    if (data.checkpoint !== null) s.restore(data.checkpoint);
    s.defineWorkers(data.workers);
    store = s;
  },
  handlers: {
    samples(msg) {
      const s = state();
      if (msg.workers !== null) s.defineWorkers(msg.workers);
      s.ingest(msg.data);
      return null;
    },
    snapshot(msg) {
      return state().snapshot(msg.members);
    },
    prometheus(msg) {
      return state().renderPrometheus(msg.members);
    },
    checkpoint() {
      return state().checkpoint();
    },
  },
  close() {
    store?.destroy();
    store = null;
  },
});
