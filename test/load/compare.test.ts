import t from 'tap';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseCompareOptions } from '../../src/cli/compare.js';
import { runCompare, validatePolicies } from '../../src/load/compare.js';
import { pngRenderer } from '../../src/load/charts/png.js';
import { OptionsError } from '../../src/config/options.js';
import { readCsv, tempDir } from './helpers.js';

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function isPng(path: string): boolean {
  const b = readFileSync(path);
  return PNG_MAGIC.every((v, i) => b[i] === v) && b.length > 2000;
}

const TINY = ['--dataset', 'generated-shared-prefix', '--gsp-num-groups', '3', '--gsp-prompts-per-group', '4', '--gsp-system-prompt-len', '200', '--gsp-question-len', '20', '--gsp-output-len', '8', '--request-rate', '200', '--sim-time-scale', '0.02', '--quiet', '--progress', 'off'];

t.test('compare: unknown policies are a clear error naming the valid ones', async (t) => {
  t.throws(() => validatePolicies(['round_robin', 'teleport']), { message: /unknown policy "teleport"; valid policies: .*round_robin/ });
  t.throws(() => validatePolicies(['random', 'random']), /twice/);
  t.throws(() => parseCompareOptions(['--sim-workers', '2'], {}), /--policies is required/);
  const o = parseCompareOptions(['--policies', 'round_robin,random', '--sim-workers', '3', '--router-args', '--cache-threshold 0.5', ...TINY], {});
  t.same(o.policies, ['round_robin', 'random']);
  t.equal(o.simWorkers, 3);
  t.equal(o.sim.timeScale, 0.02);
  t.same(o.routerArgs, ['--cache-threshold', '0.5']);
  t.equal(o.workload.dataset, 'generated-shared-prefix');
  await t.rejects(runCompare({ ...o, policies: ['nope'] }), OptionsError);
});

t.test('compare: 2 policies on a tiny workload -> compare.json, markdown, PNG + SVG plots, one HTML report', async (t) => {
  const dir = tempDir('sy-compare-');
  const opts = parseCompareOptions(['--policies', 'round_robin,random', '--sim-workers', '2', '--output', dir, ...TINY], {});
  const r = await runCompare(opts, () => undefined);
  const json = JSON.parse(readFileSync(join(dir, 'compare.json'), 'utf8')) as { results: { policy: string; completed: number; gpu_share: number[]; cache_hit_rate: number }[]; definitions: unknown };
  t.same(json.results.map((x) => x.policy), ['round_robin', 'random']);
  for (const res of json.results) {
    t.equal(res.completed, 12, `${res.policy}: every request completed`);
    t.equal(res.gpu_share.length, 2);
    t.ok(Math.abs(res.gpu_share[0]! + res.gpu_share[1]! - 1) < 1e-9, 'shares add up to 1');
    const rows = readCsv(join(dir, res.policy, 'requests.csv'));
    t.ok(rows.length === 12 && rows.every((x) => x['gpu_id'] === '0' || x['gpu_id'] === '1'), `${res.policy}: every gpu_id filled`);
    t.ok(existsSync(join(dir, res.policy, 'router.log')));
  }
  t.same(json.results[0]!.gpu_share, [0.5, 0.5], 'round_robin splits evenly');
  t.ok(json.results[0]!.cache_hit_rate > 0, 'shared prefixes hit the cache');
  t.ok(json.definitions !== undefined);
  const md = readFileSync(join(dir, 'compare.md'), 'utf8');
  t.match(md, /\| round_robin \|/);
  t.match(md, /Per-GPU request share/);
  const html = readFileSync(r.files.html, 'utf8');
  t.equal((html.match(/<svg /g) ?? []).length, 4, 'four charts inlined');
  t.notMatch(html, /(src|href)="http/, 'self-contained');
  t.match(html, /round_robin/);
  for (const name of ['ttft_cdf', 'gpu_share', 'output_throughput', 'cache_hit_rate']) t.ok(existsSync(join(dir, 'plots', `${name}.svg`)), `${name}.svg`);
  if (pngRenderer().renderer === undefined) {
    t.comment(`PNG assertions skipped: ${pngRenderer().reason}`);
    t.equal(r.pngUnavailable, pngRenderer().reason);
    return;
  }
  t.equal(r.files.pngs.length, 4);
  for (const p of r.files.pngs) t.ok(isPng(p) && statSync(p).size < 2_000_000, `${p} is a PNG`);
});
