import t from 'tap';
import { checkFigures, figureIndex, fileStamp, formatSpread, formatTable, formatValue, resolveSettings, selectScenarios, type ScenarioOutcome } from '../../bench/lib/report.js';
import type { ScenarioInfo } from '../../bench/lib/protocol.js';
import { summarize } from '../../bench/lib/scenario.js';

const info = (file: string, name: string): ScenarioInfo => ({ file, name, description: '', gate: false, needs: [] });
const ALL = [info('e2e-proxy.js', 'e2e-proxy'), info('micro-radix.js', 'radix-tree'), info('sse.js', 'sse-scan')];

t.test('settings: defaults, --quick, explicit flags win', async (t) => {
  t.same(resolveSettings({ quick: false, runs: undefined, duration: undefined }), { quick: false, runs: 3, durationSec: 10 });
  t.same(resolveSettings({ quick: true, runs: undefined, duration: undefined }), { quick: true, runs: 2, durationSec: 3 });
  t.same(resolveSettings({ quick: true, runs: 5, duration: 1.5 }), { quick: true, runs: 5, durationSec: 1.5 });
});

t.test('--only matches scenario names and file names, keeps discovery order, reports unknowns', async (t) => {
  t.same(selectScenarios(ALL, undefined).selected.map((s) => s.name), ['e2e-proxy', 'radix-tree', 'sse-scan']);
  t.same(selectScenarios(ALL, []).selected.length, 3);
  const r = selectScenarios(ALL, ['sse-scan', 'micro-radix', 'e2e-proxy.js']);
  t.same(r.selected.map((s) => s.name), ['e2e-proxy', 'radix-tree', 'sse-scan']);
  t.same(r.unknown, []);
  const u = selectScenarios(ALL, ['e2e-proxy', 'nope']);
  t.same(u.selected.map((s) => s.name), ['e2e-proxy']);
  t.same(u.unknown, ['nope']);
});

t.test('figures are checked: malformed ones fail, non-finite ones are skipped parts', async (t) => {
  const good = { name: 'a.rps', value: 10, unit: 'req/s', better: 'higher', spread: 0.1, note: 'n' };
  const r = checkFigures([good, { name: 'b.ratio', value: Number.NaN, unit: 'x', better: 'higher' }]);
  t.same(r.figures, [good]);
  t.same(r.skipped, [{ what: 'b.ratio', reason: 'not measured (value NaN)' }]);
  t.same(r.problems, []);

  t.same(checkFigures('nope').problems, ['run() did not return an array of figures']);
  const bad = checkFigures([null, { value: 1 }, { name: 'x', value: '1', unit: 2, better: 'more', spread: '5%', note: 3 }, good, good]);
  t.same(bad.problems, [
    'figure #0 is not an object',
    'figure #1 has no name',
    "x: unit must be a string",
    "x: better must be 'higher' or 'lower'",
    'x: value must be a number',
    'x: spread must be a number',
    'x: note must be a string',
    'a.rps: reported twice',
  ]);
});

t.test('value and spread formatting', async (t) => {
  t.equal(formatValue(47486.85), '47487');
  t.equal(formatValue(851.47), '851');
  t.equal(formatValue(72.32), '72.3');
  t.equal(formatValue(1.2249), '1.22');
  t.equal(formatValue(1), '1.00');
  t.equal(formatValue(0.52), '0.520');
  t.equal(formatValue(0), '0');
  t.equal(formatValue(-3.14159), '-3.14');
  t.equal(formatValue(0.00001234), '0.000012');
  t.equal(formatValue(Number.NaN), 'NaN');
  t.equal(formatSpread(0.052), '±5.2%');
  t.equal(formatSpread(0.25), '±25%');
  t.equal(formatSpread(undefined), '');
  t.equal(formatSpread(Number.NaN), '');
});

t.test('one table with figures, skipped parts and failures', async (t) => {
  const outcomes: ScenarioOutcome[] = [
    {
      name: 'e2e-proxy',
      file: 'e2e-proxy.js',
      description: '',
      status: 'ok',
      elapsedSec: 1,
      figures: [
        { name: 'e2e.nonstream.direct.rps', value: 20000.4, unit: 'req/s', better: 'higher', spread: 0.05, note: 'wrk -t1 -c64' },
        { name: 'e2e.nonstream.direct.p99_ms', value: 3.256, unit: 'ms', better: 'lower' },
      ],
      skipped: [{ what: 'e2e.nonstream.router.*', reason: 'router not built yet' }],
    },
    { name: 'broken', file: 'broken.js', description: '', status: 'failed', reason: 'Error: boom\n  at x', elapsedSec: 0, figures: [], skipped: [] },
    { name: 'empty', file: 'empty.js', description: '', status: 'ok', elapsedSec: 0, figures: [], skipped: [] },
    { name: 'away', file: 'away.js', description: '', status: 'skipped', reason: 'needs wrk', elapsedSec: 0, figures: [], skipped: [] },
  ];
  const lines = formatTable(outcomes).split('\n');
  t.match(lines[0], /^scenario\s+figure\s+value\s+unit\s+spread\s+note$/);
  t.match(lines[1], /^-+  -+/);
  t.match(lines[2], /^e2e-proxy\s+e2e\.nonstream\.direct\.rps\s+20000\s+req\/s\s+±5\.0%\s+wrk -t1 -c64$/);
  t.match(lines[3], /^e2e-proxy\s+e2e\.nonstream\.direct\.p99_ms\s+3\.26\s+ms$/);
  t.match(lines[4], /^e2e-proxy\s+e2e\.nonstream\.router\.\*\s+skipped\s+router not built yet$/);
  t.match(lines[5], /^broken\s+-\s+FAILED\s+Error: boom at x$/);
  t.match(lines[6], /^empty\s+-\s+no figures$/);
  t.match(lines[7], /^away\s+-\s+skipped\s+needs wrk$/);
  t.equal(lines.length, 8);
  t.equal(lines[2]!.indexOf('e2e.'), lines[0]!.indexOf('figure'), 'columns aligned');
  t.equal(lines[2]!.indexOf('req/s'), lines[0]!.indexOf('unit'), 'columns aligned');

  const long = formatTable([{ ...outcomes[3]!, reason: 'x'.repeat(200) }]);
  t.ok(long.split('\n')[2]!.endsWith('…'), 'long notes are clipped in the table');

  const index = figureIndex(outcomes);
  t.same(Object.keys(index), ['e2e.nonstream.direct.rps', 'e2e.nonstream.direct.p99_ms']);
  t.equal(index['e2e.nonstream.direct.rps']?.scenario, 'e2e-proxy');
});

t.test('file stamps and the shared summarize()', async (t) => {
  t.equal(fileStamp('2026-11-23T16:28:26.123Z'), '2026-11-23T16-28-26Z');
  t.same(summarize([3, 1, 2]), { median: 2, spread: 0.5 });
  t.same(summarize([4, 2]), { median: 3, spread: 1 / 3 });
  t.ok(Number.isNaN(summarize([]).median));
});
