import t from 'tap';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseOptions, OptionsError, HelpRequested, type OptionSpec } from '../../src/config/options.js';

const SPECS = [
  { name: 'host', type: 'string', default: '0.0.0.0', help: 'host' },
  { name: 'port', type: 'integer', default: 30000, min: 0, max: 65535, help: 'port' },
  { name: 'worker-urls', type: 'list', default: [], help: 'workers' },
  { name: 'policy', type: 'string', default: 'cache_aware', choices: ['random', 'round_robin', 'cache_aware'], help: 'policy' },
  { name: 'cache-threshold', type: 'number', default: 0.3, help: 'threshold' },
  { name: 'dp-aware', type: 'boolean', default: false, help: 'dp' },
  { name: 'api-key', type: 'string', help: 'key' },
] as const satisfies readonly OptionSpec[];

const ctx = { command: 'serve', summary: 'test', env: {} };

t.test('defaults', async (t) => {
  const o = parseOptions(SPECS, [], ctx);
  t.equal(o.host, '0.0.0.0');
  t.equal(o.port, 30000);
  t.same(o.workerUrls, []);
  t.equal(o.dpAware, false);
  t.equal(o.apiKey, undefined);
});

t.test('argparse-style lists, repeats and commas', async (t) => {
  const o = parseOptions(SPECS, ['--worker-urls', 'http://a:1', 'http://b:2', '--port', '1', '--worker-urls=http://c:3,http://d:4'], ctx);
  t.same(o.workerUrls, ['http://a:1', 'http://b:2', 'http://c:3', 'http://d:4']);
  t.equal(o.port, 1);
});

t.test('booleans: bare, negated, explicit', async (t) => {
  t.equal(parseOptions(SPECS, ['--dp-aware'], ctx).dpAware, true);
  t.equal(parseOptions(SPECS, ['--dp-aware', 'false'], ctx).dpAware, false);
  t.equal(parseOptions(SPECS, ['--dp-aware=true', '--no-dp-aware'], ctx).dpAware, false);
  t.equal(parseOptions(SPECS, ['--dp_aware'], ctx).dpAware, true, 'snake case accepted');
});

t.test('validation errors are clear', async (t) => {
  t.throws(() => parseOptions(SPECS, ['--port', 'abc'], ctx), OptionsError);
  t.throws(() => parseOptions(SPECS, ['--port', '70000'], ctx), /<= 65535/);
  t.throws(() => parseOptions(SPECS, ['--port', '1.5'], ctx), /integer/);
  t.throws(() => parseOptions(SPECS, ['--policy', 'nope'], ctx), /one of random, round_robin, cache_aware/);
  t.throws(() => parseOptions(SPECS, ['--polcy', 'random'], ctx), /did you mean --policy/);
  t.throws(() => parseOptions(SPECS, ['--worker-urls'], ctx), /at least one value/);
  t.throws(() => parseOptions(SPECS, ['--host'], ctx), /needs a value/);
  t.throws(() => parseOptions(SPECS, ['stray'], ctx), /unexpected argument/);
});

t.test('precedence: cli > env > file > default', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sy-opt-'));
  const file = join(dir, 'c.json');
  writeFileSync(file, JSON.stringify({ port: 1111, cache_threshold: 0.5, policy: 'random', workerUrls: ['http://x:1'] }));
  const env = { SWITCHYARD_PORT: '2222', SWITCHYARD_CONFIG: file };
  const o = parseOptions(SPECS, ['--policy', 'round_robin'], { ...ctx, env });
  t.equal(o.port, 2222, 'env beats file');
  t.equal(o.cacheThreshold, 0.5, 'file beats default');
  t.equal(o.policy, 'round_robin', 'cli beats file');
  t.same(o.workerUrls, ['http://x:1']);
  writeFileSync(file, JSON.stringify({ bogus: 1 }));
  t.throws(() => parseOptions(SPECS, ['--config', file], ctx), /unknown key 'bogus'/);
  writeFileSync(file, '{not json');
  t.throws(() => parseOptions(SPECS, ['--config', file], ctx), /cannot read config file/);
  t.throws(() => parseOptions(SPECS, [], { ...ctx, env: { SWITCHYARD_PORT: 'x' } }), /\$SWITCHYARD_PORT expects a number/);
});

t.test('help lists every flag with default and env', async (t) => {
  try {
    parseOptions(SPECS, ['--help'], ctx);
    t.fail('expected help');
  } catch (err) {
    t.ok(err instanceof HelpRequested);
    const text = (err as HelpRequested).text;
    for (const s of SPECS) t.match(text, `--${s.name}`);
    t.match(text, 'default: 30000');
    t.match(text, 'env: SWITCHYARD_CACHE_THRESHOLD');
  }
});
