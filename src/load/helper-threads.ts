/**
 * Keeping the load generator's own helper threads off its sending thread's core.
 *
 * The generator sends from one thread; V8's platform threads (garbage collection, background compilation)
 * and libuv's thread pool (file writes) are its helpers. On a small machine shared with the server under
 * test (2 cores here) a helper that wakes on the sender's core preempts it, and `--lag-diagnostics`
 * counts that as `descheduled`. Two settings, both measured (docs/load-testing.md):
 *   - young-generation collections on the sending thread alone (V8's --no-parallel-scavenge): 5 pairs of
 *     fresh CLI runs, send-lag p99 median 1.78 -> 1.00 ms;
 *   - the helpers at a lower scheduling priority (nice +10; lowering a thread's priority needs no
 *     privilege): the sender wins the core when both are runnable.
 */
import { readdirSync } from 'node:fs';
import { setPriority } from 'node:os';
import { setFlagsFromString } from 'node:v8';

let parallelScavenge: boolean | undefined;

/** Set once per process (a V8 flag is process-wide); the first call wins. Returns the setting in force. */
export function useParallelScavenge(parallel: boolean): boolean {
  if (parallelScavenge !== undefined) return parallelScavenge;
  // Read by V8 at every scavenge to pick its task count: safe to change while running (measured).
  if (!parallel) setFlagsFromString('--no-parallel-scavenge');
  parallelScavenge = parallel;
  return parallelScavenge;
}

/**
 * Give every thread of this process but the main one the nice value `nice` (Linux: setpriority on a
 * thread id applies to that thread alone). Only for a process whose other threads are all helpers: a
 * worker thread doing real work (an in-process simulated fleet) would be slowed too. Threads created
 * later keep the default; call again once they exist. Returns how many threads were changed (0 where
 * /proc is not there).
 */
export function lowerHelperThreads(nice: number): number {
  let tids: string[];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return 0;
  }
  let changed = 0;
  for (const t of tids) {
    const tid = Number(t);
    if (tid === process.pid) continue;
    try {
      setPriority(tid, nice);
      changed++;
    } catch {
      // gone already, or not allowed (a nice value below the current one needs privilege)
    }
  }
  return changed;
}
