import t from 'tap';
import { BaselineError, baselineScenarios, checkFigure, fmt, formatChecks, limitOf, median, needsRetry, parseBaseline, relativeSpread, updateBaseline, type BaselineFigure } from '../../bench/lib/gate-baseline.js';
import { lowQuartile, slowdownFactor } from '../../bench/lib/gate-calibration.js';
import { openFileLimit, streamCount } from '../../bench/scenarios/open-streams.js';
import { whyMissing } from '../../bench/lib/gate-runner.js';
import type { BenchResult } from '../../bench/lib/report.js';

const RATIO: BaselineFigure = { value: 0.55, tolerance: 0.2, better: 'higher', unit: 'x', scenario: 'e2e-proxy' };
const CAL: BaselineFigure = { value: 10, tolerance: 0.35, better: 'lower', unit: 'ref', scenario: 'calibrated', why: 'spread 12% over 6 runs' };

function doc(figures: Record<string, unknown>, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ schema: 1, figures, ...extra });
}

t.test('a valid baseline parses; its scenarios are listed once each', async (t) => {
  const b = parseBaseline(doc({ 'e2e.nonstream.router_vs_direct.rps_ratio': RATIO, 'policy.x.calibrated': CAL, 'policy.y.calibrated': { ...CAL, value: null } }));
  t.equal(Object.keys(b.figures).length, 3);
  t.same(baselineScenarios(b), ['e2e-proxy', 'calibrated']);
});

t.test('a bad baseline is refused with every problem named', async (t) => {
  t.throws(() => parseBaseline('{nope', 'b.json'), { name: 'BaselineError', message: /^b\.json: not JSON/ });
  t.throws(() => parseBaseline('[]'), /must be a JSON object/);
  t.throws(() => parseBaseline(JSON.stringify({ schema: 2, figures: {} })), /schema must be 1, got 2; figures is empty/);
  t.throws(() => parseBaseline(JSON.stringify({ schema: 1 })), /figures must be an object keyed by figure name/);
  let err: unknown;
  try {
    parseBaseline(
      doc({
        a: { value: -1, tolerance: 0, better: 'up', unit: 3, scenario: '' },
        b: { ...RATIO, tolerance: 1.5 },
        c: 'x',
        d: { ...CAL, why: 5, observedSpread: -1 },
      }),
    );
  } catch (e) {
    err = e;
  }
  t.ok(err instanceof BaselineError);
  const m = (err as Error).message;
  for (const want of [
    'a: value must be a positive number or null (not measured yet), got -1',
    'a: tolerance must be a number in (0, 10) (0.25 = 25%), got 0',
    'a: better must be "higher" or "lower", got "up"',
    'a: unit must be a string',
    'a: scenario must name the scenario that reports it',
    'b: tolerance 1.5 >= 1 with better "higher" could never fail',
    'c: must be an object',
    'd: why must be a string',
    'd: observedSpread must be a non-negative number',
  ]) {
    t.ok(m.includes(want), want);
  }
});

t.test('higher-is-better: the per-metric message of a regression', async (t) => {
  t.equal(limitOf(RATIO, 0.55), 0.55 * 0.8);
  const c = checkFigure('e2e.nonstream.router_vs_direct.rps_ratio', RATIO, [0.41]);
  t.equal(c.verdict, 'regressed');
  t.equal(c.message, 'e2e.nonstream.router_vs_direct.rps_ratio 0.41 < baseline 0.55 - 20% tolerance (limit 0.44)');
  t.ok(needsRetry(c));
  // at the limit passes (0.55 x 0.8 is 0.44000000000000006 in floating point); just below fails
  t.equal(checkFigure('r', RATIO, [0.4401]).verdict, 'ok');
  t.equal(checkFigure('r', RATIO, [0.4399]).verdict, 'regressed');
  t.equal(checkFigure('r', RATIO, [0.6]).verdict, 'ok');
  const better = checkFigure('r', RATIO, [0.7]);
  t.equal(better.verdict, 'improved');
  t.match(better.message, /better than baseline 0\.55 by more than 20%: consider --update-baseline/);
  t.notOk(needsRetry(better));
});

t.test('lower-is-better: the limit is above the baseline', async (t) => {
  const c = checkFigure('policy.cache_aware.select.w8.calibrated', CAL, [14, 13.4, 20]);
  t.equal(c.verdict, 'regressed');
  t.equal(c.measured, 14);
  t.equal(c.message, 'policy.cache_aware.select.w8.calibrated 14 > baseline 10 + 35% tolerance (limit 13.5) (median of 3 runs: 14, 13.4, 20)');
  t.equal(checkFigure('x', CAL, [13.5]).verdict, 'ok');
  t.equal(checkFigure('x', CAL, [6]).verdict, 'improved');
  t.equal(checkFigure('x', CAL, [8]).verdict, 'ok');
  t.equal(Math.round(checkFigure('x', CAL, [12]).change * 100), 20);
});

t.test('the verdict is the median of the attempts that measured the figure', async (t) => {
  // One bad run among three is outvoted; two are not.
  t.equal(checkFigure('r', RATIO, [0.3, 0.56, 0.54]).verdict, 'ok');
  t.equal(checkFigure('r', RATIO, [0.3, 0.35, 0.54]).verdict, 'regressed');
  // An attempt that did not measure it does not count.
  t.equal(checkFigure('r', RATIO, [Number.NaN, 0.55]).verdict, 'ok');
  const none = checkFigure('r', RATIO, [Number.NaN], 'scenario e2e-proxy failed: boom');
  t.equal(none.verdict, 'not_measured');
  t.equal(none.message, 'r: not measured (scenario e2e-proxy failed: boom)');
  t.ok(needsRetry(none));
  const empty = checkFigure('r', { ...RATIO, value: null }, [0.5]);
  t.equal(empty.verdict, 'no_baseline');
  t.match(empty.message, /--update-baseline/);
});

t.test('median, spread and number formatting', async (t) => {
  t.equal(median([3, 1, 2]), 2);
  t.equal(median([4, 1, 2, 3]), 2.5);
  t.ok(Number.isNaN(median([Number.NaN])));
  t.equal(relativeSpread([1]), 0);
  t.ok(Math.abs(relativeSpread([0.9, 1, 1.1]) - 0.1) < 1e-12);
  t.equal(fmt(0.41), '0.41');
  t.equal(fmt(13.456), '13.5');
  t.equal(fmt(12345.6), '12346');
});

t.test('updating keeps tolerances, directions and notes; unmeasured figures keep their value', async (t) => {
  const b = parseBaseline(doc({ a: RATIO, b: CAL, c: { ...CAL, value: null } }, { about: 'kept' }));
  const { baseline, updated, kept } = updateBaseline(b, new Map([['a', [0.5, 0.6, 0.7]], ['c', [4, 5, 6]], ['b', [Number.NaN]]]), { timestamp: 't' });
  t.same(updated, ['a', 'c']);
  t.same(kept, ['b']);
  t.same(baseline.figures['a'], { ...RATIO, value: 0.6, observedSpread: 0.167 });
  t.same(baseline.figures['b'], CAL);
  t.same(baseline.figures['c'], { ...CAL, value: 5, observedSpread: 0.2 });
  t.equal(baseline.about, 'kept');
  t.same(baseline.measured, { timestamp: 't' });
  // the result is itself a valid baseline
  t.doesNotThrow(() => parseBaseline(JSON.stringify(baseline)));
});

t.test('the verdict table has one row per figure', async (t) => {
  const table = formatChecks([checkFigure('e2e.x.rps_ratio', RATIO, [0.41]), checkFigure('cal.y', CAL, [9.5]), checkFigure('gone', CAL, [Number.NaN], 'skipped')]);
  const lines = table.split('\n');
  t.equal(lines.length, 5);
  t.match(lines[0], /^figure\s+measured\s+baseline\s+tolerance\s+limit\s+change\s+runs\s+verdict$/);
  t.match(lines[2], /^e2e\.x\.rps_ratio\s+0\.41 x\s+0\.55\s+-20%\s+>= 0\.44\s+-25\.5%\s+1\s+REGRESSED$/);
  t.match(lines[3], /^cal\.y\s+9\.5 ref\s+10\s+\+35%\s+<= 13\.5\s+-5\.0%\s+1\s+ok$/);
  t.match(lines[4], /^gone\s+-\s+10\s+\+35%\s+<= 13\.5\s+-\s+0\s+NOT MEASURED$/);
});

t.test('why a figure is missing from a run', async (t) => {
  const result = {
    scenarios: [
      { name: 'e2e-proxy', status: 'ok', skipped: [{ what: 'e2e.stream.router.*', reason: 'router not built yet' }] },
      { name: 'calibrated', status: 'failed', reason: 'Error: boom', skipped: [] },
    ],
  } as unknown as BenchResult;
  t.equal(whyMissing(undefined, 'x', 'y'), 'the bench runner wrote no result');
  t.equal(whyMissing(result, 'e2e-proxy', 'e2e.stream.router.rps'), 'skipped: router not built yet');
  t.equal(whyMissing(result, 'e2e-proxy', 'e2e.nonstream.router.rps'), 'scenario e2e-proxy did not report it');
  t.equal(whyMissing(result, 'calibrated', 'a'), 'scenario calibrated failed: Error: boom');
  t.equal(whyMissing(result, 'other', 'a'), 'scenario other did not run');
});

t.test('calibration helpers: slowdown factor from the environment, low quartile', async (t) => {
  t.equal(slowdownFactor({}), 1);
  t.equal(slowdownFactor({ SWITCHYARD_BENCH_SLOWDOWN: ' ' }), 1);
  t.equal(slowdownFactor({ SWITCHYARD_BENCH_SLOWDOWN: '2.5' }), 2.5);
  for (const bad of ['0.5', 'fast', '-1', '1e9']) {
    t.throws(() => slowdownFactor({ SWITCHYARD_BENCH_SLOWDOWN: bad }), /SWITCHYARD_BENCH_SLOWDOWN must be a number from 1 to 1000/);
  }
  t.equal(lowQuartile([5]), 5);
  t.equal(lowQuartile([4, 1, 3, 2, 5]), 2);
  t.equal(lowQuartile([1, 2, 3, 4]), 1.75);
  t.ok(Number.isNaN(lowQuartile([])));
});

t.test('open-streams: the stream count fits the open-file limit', async (t) => {
  t.equal(openFileLimit('Limit                     Soft Limit           Hard Limit           Units     \nMax open files            20000                20000                files     \n'), 20000);
  t.equal(openFileLimit('Max open files            unlimited            unlimited            files\n'), Number.POSITIVE_INFINITY);
  t.equal(streamCount(10_000, 20_000), 9_800);
  t.equal(streamCount(10_000, 65_536), 10_000);
  t.equal(streamCount(10_000, Number.POSITIVE_INFINITY), 10_000);
  t.equal(streamCount(10_000, 300), 0);
});
