/**
 * The send-lag diagnostics (`--lag-diagnostics`): the window arithmetic, and end to end with real sockets
 * that an injected GC and an injected busy-wait on the sending thread are attributed to the right cause.
 * No timing is asserted: on a loaded machine (tap runs two files at once) part of any stall is legitimately
 * the machine's ('descheduled', and 'timer' when the thread woke late), so the tests compare only the
 * causes that blame the thread's own work: gc, generator_work and other_js.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { startSimFleetInThread } from '../../src/sim/fleet.js';
import { runLoad } from '../../src/load/runner.js';
import { LAG_CAUSES, gcOverlap, primaryCause, sortedPauses, splitWindow } from '../../src/load/lag-attribution.js';
import type { LagCausesSection } from '../../src/load/lag-diagnostics.js';
import { parseLoadOptions } from '../../src/cli/load.js';
import { loadOpts, tempDir } from './helpers.js';

t.test('splitWindow clamps in order gc, run delay, generator work, other CPU; the rest is sleep', async (t) => {
  t.same(splitWindow(10, 4, 3, 2, 7), { gc: 4, descheduled: 3, generatorWork: 2, otherJs: 1, timer: 0 });
  t.same(splitWindow(10, 0, 0, 0, 1), { gc: 0, descheduled: 0, generatorWork: 0, otherJs: 1, timer: 9 }, 'mostly asleep: timer');
  t.same(splitWindow(2, 5, 1, 1, 5), { gc: 2, descheduled: 0, generatorWork: 0, otherJs: 0, timer: 0 }, 'a GC longer than the window fills it');
  t.same(splitWindow(4, 0, Number.NaN, 1, Number.NaN), { gc: 0, descheduled: 0, generatorWork: 1, otherJs: 3, timer: 0 }, 'no schedstat: the rest is other_js');
  t.equal(primaryCause(splitWindow(10, 1, 6, 2, 3)), 'descheduled');
  t.equal(primaryCause(splitWindow(10, 0, 0, 6, 8)), 'generator_work');
});

t.test('gcOverlap: the part of each pause inside the window, pauses given in any order', async (t) => {
  // Pauses [10, 20], [0, 30] (long, starts first), [40, 41], [50, 55].
  const p = sortedPauses([40, 10, 50, 0], [1, 10, 5, 30]);
  t.equal(gcOverlap(p, 25, 45), 5 + 1, 'the tail of the long pause and all of [40, 41]');
  t.equal(gcOverlap(p, 12, 14), 2 + 2, 'inside two pauses');
  t.equal(gcOverlap(p, 31, 39), 0, 'between pauses');
  t.equal(gcOverlap(p, 54, 100), 1, 'the end of the last');
  t.equal(gcOverlap(sortedPauses([], []), 0, 10), 0, 'no pauses');
});

t.test('--lag-diagnostics parses; off by default', async (t) => {
  t.equal(parseLoadOptions(['--url', 'http://127.0.0.1:1', '--lag-diagnostics'], {}).lagDiagnostics, true);
  t.equal(parseLoadOptions(['--url', 'http://127.0.0.1:1'], {}).lagDiagnostics, false);
});

/** Runs a load with diagnostics while `inject` disturbs the sending thread every `everyMs`. */
async function runDisturbed(url: string, inject: () => void, everyMs: number, diagnostics = true): Promise<Record<string, unknown>> {
  const dir = tempDir();
  const timer = setInterval(inject, everyMs);
  try {
    await runLoad(loadOpts(url, dir, { numPrompts: 500, requestRate: 250, disableStream: true, seed: 7 }, { target: 'server', lagDiagnostics: diagnostics }), { log: () => undefined });
  } finally {
    clearInterval(timer);
  }
  return JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')) as Record<string, unknown>;
}

/** Of the causes that blame the thread's own work, the one with the most lag (the machine's shares left out). */
function topCauseBesidesMachine(c: LagCausesSection): string {
  let best = '';
  let v = -1;
  for (const k of LAG_CAUSES) {
    if (k === 'descheduled' || k === 'timer') continue;
    if (c.causes[k].lag_ms > v) {
      v = c.causes[k].lag_ms;
      best = k;
    }
  }
  return best;
}

t.test('end to end: an injected busy-wait on the sending thread is other_js; an injected GC is gc; off means no section', async (t) => {
  const fleet = await startSimFleetInThread({ count: 1, timeScale: 0.01, seed: 3 });
  t.teardown(() => fleet.close());
  const url = fleet.urls[0]!;

  const off = await runDisturbed(url, () => undefined, 1000, false);
  t.notOk('send_lag_causes' in off, 'no section without the flag');

  // 20 ms of JS that is not the generator's, every 100 ms: every request due meanwhile goes out late.
  const busy = await runDisturbed(
    url,
    () => {
      const until = performance.now() + 20;
      while (performance.now() < until);
    },
    100,
  );
  const b = busy['send_lag_causes'] as LagCausesSection;
  t.comment(`busy-wait run: ${JSON.stringify(b.causes)}; worst ${JSON.stringify(b.worst[0])}`);
  t.ok(b.late_sends > 0, `late sends: ${b.late_sends}`);
  t.equal(b.sends, 500, 'every send seen');
  t.equal(topCauseBesidesMachine(b), 'other_js', `busy-wait attributed to other_js: ${JSON.stringify(b.causes)}`);
  t.ok(b.worst.length > 0 && b.worst.every((w) => w.lag_ms > b.threshold_ms), 'worst sends listed, all late');

  // Full collections of a large live heap, forced every 100 ms.
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const live: { a: number; b: string }[] = [];
  for (let i = 0; i < 600_000; i++) live.push({ a: i, b: 'x' + (i % 1000) });
  let forced = 0;
  const collected = await runDisturbed(
    url,
    () => {
      forced++;
      gc();
    },
    100,
  );
  t.ok(live.length > 0);
  const g = collected['send_lag_causes'] as LagCausesSection;
  // Some forced GCs fall before the first send (probe, warm-up) or after the last (writing the results).
  const majors = g.gc.by_kind['major']?.count ?? 0;
  t.ok(majors >= 1 && majors >= forced - 3, `the forced GCs observed as major collections (${majors} of ${forced} forced)`);
  t.ok(g.late_sends > 0, `late sends: ${g.late_sends}`);
  t.equal(topCauseBesidesMachine(g), 'gc', `forced GC attributed to gc: ${JSON.stringify(g.causes)}`);
});
