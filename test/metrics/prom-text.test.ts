import t from 'tap';
import { escapeHelp, escapeLabelValue, formatValue, isValidLabelName, isValidMetricName, labels, PromWriter } from '../../src/metrics/prom-text.js';
import { FixedHistogram, toMicros } from '../../src/metrics/buckets.js';
import { parsePrometheusText, valueOf } from './prom-parser.js';

t.test('escaping and number formatting', async (t) => {
  t.equal(escapeLabelValue('plain'), 'plain');
  t.equal(escapeLabelValue('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
  t.equal(escapeHelp('line\\one\ntwo "quoted"'), 'line\\\\one\\ntwo "quoted"');
  t.equal(formatValue(Infinity), '+Inf');
  t.equal(formatValue(-Infinity), '-Inf');
  t.equal(formatValue(Number.NaN), 'NaN');
  t.equal(formatValue(0.25), '0.25');
  t.equal(labels(['a', 'x'], ['b', 'y"z']), 'a="x",b="y\\"z"');
  t.ok(isValidMetricName('sgl_router_requests_total'));
  t.notOk(isValidMetricName('9lives'));
  t.ok(isValidLabelName('worker'));
  t.notOk(isValidLabelName('__reserved'));
  t.notOk(isValidLabelName('has-dash'));
});

t.test('writer output round-trips through the strict parser, hostile label values included', async (t) => {
  const w = new PromWriter();
  const hostile = 'http://h:1/"quoted"\\back\nline';
  w.family('x_total', 'counter', 'A counter\nwith two lines and a \\ backslash');
  w.sample('x_total', labels(['worker', hostile]), 3);
  w.sample('x_total', labels(['worker', 'b']), 0);
  w.family('g', 'gauge', 'gauge');
  w.sample('g', '', -1.5);
  const h = new FixedHistogram(toMicros([0.001, 0.01, 0.1]));
  for (const us of [500, 1000, 1001, 50_000, 2_000_000]) h.record(us);
  w.family('lat_seconds', 'histogram', 'latency');
  w.histogram('lat_seconds', labels(['route', '/generate']), h.bounds, h.counts, h.sum, 1e-6);
  const fams = parsePrometheusText(w.text());
  t.equal(fams.get('x_total')?.help, 'A counter\nwith two lines and a \\ backslash');
  t.equal(valueOf(fams, 'x_total', { worker: hostile }), 3);
  t.equal(valueOf(fams, 'g'), -1.5);
  // 500 and 1000 us are <= 1 ms (le is inclusive); 1001 us is in the 10 ms bucket
  t.equal(valueOf(fams, 'lat_seconds_bucket', { route: '/generate', le: '0.001' }), 2);
  t.equal(valueOf(fams, 'lat_seconds_bucket', { route: '/generate', le: '0.01' }), 3);
  t.equal(valueOf(fams, 'lat_seconds_bucket', { route: '/generate', le: '0.1' }), 4);
  t.equal(valueOf(fams, 'lat_seconds_bucket', { route: '/generate', le: '+Inf' }), 5);
  t.equal(valueOf(fams, 'lat_seconds_count', { route: '/generate' }), 5);
  t.ok(Math.abs((valueOf(fams, 'lat_seconds_sum', { route: '/generate' }) ?? 0) - 2.052501) < 1e-9);
});

t.test('the strict parser refuses what a scraper must not accept', async (t) => {
  const bad: [string, RegExp][] = [
    ['x 1', /end with a line feed/],
    ['x 1\n', /no HELP\/TYPE/],
    ['# TYPE x counter\nx{a="1"} 1\nx{a="1"} 2\n', /duplicate series/],
    ['# TYPE x counter\nx{a="\\q"} 1\n', /bad escape/],
    ['# TYPE x counter\nx{a=1} 1\n', /not quoted/],
    ['# TYPE x counter\nx -1\n', /counter x is -1/],
    ['# TYPE x counter\nx 1\n# TYPE y gauge\ny 1\nx 2\n', /appears again/],
    ['# TYPE x gauge\nx 1\n# TYPE x gauge\n', /after its samples/],
    ['# TYPE x gauge\nx one\n', /bad value/],
    ['# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n', /count 1 < 2/],
    ['# TYPE h histogram\nh_bucket{le="2"} 1\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n', /after le=2/],
    ['# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n', /no \+Inf/],
    ['# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 1\n', /!= _count/],
    ['# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_count 1\n', /no _sum/],
    ['# TYPE h histogram\nh 1\n', /bare sample/],
    ['# TYPE x gauge\nx_total 1\n', /no HELP\/TYPE/],
  ];
  for (const [text, re] of bad) t.throws(() => parsePrometheusText(text), re, JSON.stringify(text));
  t.doesNotThrow(() => parsePrometheusText('# a comment\n# HELP x ok\n# TYPE x gauge\nx{a="1",} 1 1700000000000\n'));
});
