/**
 * Where the load generator's young-generation collections run.
 *
 * V8 scavenges in parallel on its platform threads by default. On a small machine shared with the
 * server under test (2 cores here), those helper threads wake on the core the sending thread needs and
 * the OS preempts it: `--lag-diagnostics` counted fewer late sends, less time descheduled and less
 * scavenge time with scavenges on the main thread alone (2,000 req/s, 1024-token prompts, 5 pairs of
 * fresh processes alternately: send-lag p99 median 1.78 -> 1.00 ms; docs/load-testing.md). A machine with
 * cores to spare may prefer helpers: --parallel-scavenge.
 */
import { setFlagsFromString } from 'node:v8';

let applied: boolean | undefined;

/** Set once per process (a V8 flag is process-wide); the first call wins. Returns the setting in force. */
export function useParallelScavenge(parallel: boolean): boolean {
  if (applied !== undefined) return applied;
  // Read by V8 at every scavenge to pick its task count: safe to change while running (measured).
  if (!parallel) setFlagsFromString('--no-parallel-scavenge');
  applied = parallel;
  return applied;
}
