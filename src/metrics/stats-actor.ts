/**
 * The stats actor thread: one StatsStore in module scope, fed packed sample batches by the front end
 * (stats-host.ts) and asked for snapshots, Prometheus histogram text and checkpoints. Every percentile is
 * computed here, so a /stats request or a scrape never costs the front end more than one message.
 *
 * After a restart the store is rebuilt from the host's latest checkpoint plus every batch sent since
 * (replayed at init), so counters never step back. Batches carry a sequence number: one the replay
 * already applied (it was still queued when the previous thread died) is skipped when it arrives.
 */
import { performance } from 'node:perf_hooks';
import { initWebAssembly } from 'hdr-histogram-js';
import { defineActor } from '../actors/actor-thread.js';
import { StatsStore } from './stats-store.js';
import type { StatsActorInit, StatsActorMessage, StatsActorReplies } from './stats-protocol.js';

let store: StatsStore | null = null;
/** The last sample batch applied (SampleBatch.seq). */
let lastSeq = 0;

function state(): StatsStore {
  if (store === null) throw new Error('stats actor is not initialised');
  return store;
}

export default defineActor<StatsActorMessage, StatsActorReplies, StatsActorInit>({
  async init(data) {
    if (data.useWasm) await initWebAssembly();
    const s = new StatsStore({ sliceMs: data.sliceMs, useWasm: data.useWasm, now: () => performance.now(), since: data.since });
    const cp = data.checkpoint;
    if (cp !== null) s.restore(cp, data.replayComplete ? cp.takenAt : Date.now());
    else if (!data.replayComplete) s.startWindowsAt(Date.now());
    s.defineWorkers(data.workers);
    lastSeq = cp?.seq ?? 0;
    for (const b of data.replay) {
      if (b.seq <= lastSeq) continue;
      lastSeq = b.seq;
      try {
        s.ingest(b.data, b.at);
      } catch {
        // A malformed batch failed the same way the first time: what came before it in the batch is kept.
      }
    }
    store = s;
  },
  handlers: {
    samples(msg) {
      const s = state();
      if (msg.workers !== null) s.defineWorkers(msg.workers);
      if (msg.seq <= lastSeq) return null; // applied by the replay at init
      lastSeq = msg.seq;
      s.ingest(msg.data, msg.at); // a batch that waited for a restarting thread still lands in its own slice
      return null;
    },
    snapshot(msg) {
      return state().snapshot(msg.members);
    },
    prometheus(msg) {
      return state().renderPrometheus(msg.members);
    },
    checkpoint() {
      return state().checkpoint(lastSeq);
    },
  },
  close() {
    store?.destroy();
    store = null;
  },
});
