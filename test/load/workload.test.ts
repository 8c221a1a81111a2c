import t from 'tap';
import { fileURLToPath } from 'node:url';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDataset, randomText, type RequestSpec } from '../../src/load/datasets.js';
import { ArrivalProcess, parseRequestRate } from '../../src/load/arrivals.js';
import { defaultWorkload, parseSlo } from '../../src/load/options.js';
import { describe as describeValues, percentileSorted, RunningStats } from '../../src/load/stats.js';
import { countTokens } from '../../src/util/tokenizer.js';
import { Rng } from '../../src/util/rng.js';
import { OptionsError } from '../../src/config/options.js';

const FIXTURES = fileURLToPath(new URL('../../../test/load/fixtures/', import.meta.url));

function take(n: number, o: Parameters<typeof defaultWorkload>[0]): RequestSpec[] {
  const ds = createDataset(defaultWorkload(o));
  const it = ds.iterate();
  return Array.from({ length: Math.min(n, ds.size) }, () => it.next());
}

t.test('percentiles interpolate linearly between closest ranks (numpy default)', async (t) => {
  // numpy.percentile([1, 2, 3, 4], [0, 25, 50, 90, 99, 100]) = 1, 1.75, 2.5, 3.7, 3.97, 4
  const xs = Float64Array.from([1, 2, 3, 4]);
  t.equal(percentileSorted(xs, 0), 1);
  t.equal(percentileSorted(xs, 25), 1.75);
  t.equal(percentileSorted(xs, 50), 2.5);
  t.ok(Math.abs(percentileSorted(xs, 90) - 3.7) < 1e-12);
  t.ok(Math.abs(percentileSorted(xs, 99) - 3.97) < 1e-12);
  t.equal(percentileSorted(xs, 100), 4);
  t.equal(percentileSorted([7], 99), 7);
  t.ok(Number.isNaN(percentileSorted([], 50)));
  const d = describeValues([4, 1, 3, 2]);
  t.equal(d.mean, 2.5);
  t.ok(Math.abs(d.std - Math.sqrt(1.25)) < 1e-12, 'population std (ddof 0)');
  const rs = new RunningStats();
  for (const v of [4, 1, 3, 2]) rs.add(v);
  t.ok(Math.abs(rs.std - d.std) < 1e-12 && rs.mean === 2.5 && rs.max === 4 && rs.min === 1, 'running stats agree');
});

t.test('random dataset: SGLang [L*r, L] lengths, exact token counts, deterministic under the seed', async (t) => {
  const a = take(300, { dataset: 'random', randomInputLen: 200, randomOutputLen: 50, randomRangeRatio: 0.5, numPrompts: 300, seed: 7 });
  t.equal(a.length, 300);
  for (const r of a) {
    if (r.promptTokens < 100 || r.promptTokens > 200 || r.outputLen < 25 || r.outputLen > 50) {
      t.fail(`length out of range: ${r.promptTokens}/${r.outputLen}`);
      break;
    }
    if (countTokens(r.prompt!) !== r.promptTokens) {
      t.fail('prompt text does not tokenize to its length');
      break;
    }
  }
  t.ok(a.some((r) => r.promptTokens < 120) && a.some((r) => r.promptTokens > 180), 'lengths spread over the range');
  const b = take(300, { dataset: 'random', randomInputLen: 200, randomOutputLen: 50, randomRangeRatio: 0.5, numPrompts: 300, seed: 7 });
  t.same(b.map((r) => r.prompt), a.map((r) => r.prompt), 'same seed, same prompts');
  const c = take(3, { dataset: 'random', randomInputLen: 200, randomOutputLen: 50, randomRangeRatio: 0.5, numPrompts: 3, seed: 8 });
  t.not(c[0]!.prompt, a[0]!.prompt, 'another seed, other prompts');
  // ratio 0: [1, L]; ratio 1: exactly L
  const full = take(50, { dataset: 'random', randomInputLen: 64, randomOutputLen: 8, randomRangeRatio: 1, numPrompts: 50 });
  t.ok(full.every((r) => r.promptTokens === 64 && r.outputLen === 8));
  t.equal(randomText(new Rng(1), 10).length, 40, '4 characters per token');
});

t.test('generated-shared-prefix: 64 x 16 by default; prompts of a group share the system prompt exactly', async (t) => {
  const ds = createDataset(defaultWorkload({ dataset: 'generated-shared-prefix' }));
  t.equal(ds.size, 1024, '64 groups x 16 prompts');
  const small = defaultWorkload({ dataset: 'generated-shared-prefix', gspNumGroups: 4, gspPromptsPerGroup: 5, gspSystemPromptLen: 100, gspQuestionLen: 20, gspOutputLen: 9, seed: 3 });
  const specs = take(20, small);
  t.equal(specs.length, 20);
  const byGroup = new Map<number, RequestSpec[]>();
  for (const s of specs) {
    if (!byGroup.has(s.group)) byGroup.set(s.group, []);
    byGroup.get(s.group)!.push(s);
  }
  t.equal(byGroup.size, 4);
  const systems = new Set<string>();
  for (const [, list] of byGroup) {
    t.equal(list.length, 5, 'each group has its prompts');
    const sys = list[0]!.prompt!.slice(0, 400);
    systems.add(sys);
    t.ok(list.every((s) => s.prompt!.slice(0, 400) === sys), 'identical 100-token system prompt');
    t.equal(new Set(list.map((s) => s.prompt)).size, 5, 'distinct questions');
    t.ok(list.every((s) => s.outputLen === 9 && countTokens(s.prompt!) === s.promptTokens));
  }
  t.equal(systems.size, 4, 'groups have different system prompts');
  t.not(specs.map((s) => s.group).join(','), [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3].join(','), 'order shuffled');
  t.same(take(20, small).map((s) => s.prompt), specs.map((s) => s.prompt), 'deterministic');
});

t.test('sharegpt from a local file: filtered, shuffled with the seed, cycled', async (t) => {
  const path = join(FIXTURES, 'sharegpt-sample.json');
  const specs = take(6, { dataset: 'sharegpt', datasetPath: path, numPrompts: 6, seed: 1 });
  t.equal(specs.length, 6);
  t.ok(specs.every((s) => s.promptTokens >= 2 && s.outputLen >= 2), 'short and single-turn entries pruned');
  t.notOk(specs.some((s) => s.prompt === 'hi'));
  t.equal(new Set(specs.map((s) => s.prompt)).size, 6, 'the 6 usable conversations');
  const cyc = createDataset(defaultWorkload({ dataset: 'sharegpt', datasetPath: path, numPrompts: 14, sharegptOutputLen: 5 }));
  t.equal(cyc.size, 14);
  t.match(cyc.note, /cycled/);
  const it = cyc.iterate();
  const all = Array.from({ length: 14 }, () => it.next());
  t.ok(all.every((s) => s.outputLen === 5), '--sharegpt-output-len fixes the output');
  t.throws(() => createDataset(defaultWorkload({ dataset: 'sharegpt', datasetPath: join(FIXTURES, 'nope.json') })), OptionsError);
  const dir = mkdtempSync(join(tmpdir(), 'sy-ds-'));
  writeFileSync(join(dir, 'bad.json'), '{"not": "a list"}');
  t.throws(() => createDataset(defaultWorkload({ dataset: 'sharegpt', datasetPath: join(dir, 'bad.json') })), /expected a JSON list/);
});

t.test('custom JSONL: prompt, text or messages; output_len or the default', async (t) => {
  const path = join(FIXTURES, 'custom-sample.jsonl');
  const specs = take(3, { dataset: 'custom', datasetPath: path, customOutputLen: 33 });
  t.equal(specs[0]!.prompt, 'Tell me a story about a train yard.');
  t.equal(specs[0]!.outputLen, 12);
  t.equal(specs[1]!.outputLen, 33, 'default output length');
  t.equal(specs[2]!.messages?.length, 2);
  t.equal(specs[2]!.outputLen, 4);
  const dir = mkdtempSync(join(tmpdir(), 'sy-ds-'));
  writeFileSync(join(dir, 'bad.jsonl'), '{"prompt": "ok"}\n{"output_len": 3}\n');
  t.throws(() => createDataset(defaultWorkload({ dataset: 'custom', datasetPath: join(dir, 'bad.jsonl') })), /line 2/);
  writeFileSync(join(dir, 'bad2.jsonl'), '{"prompt": "ok", "output_len": -1}\n');
  t.throws(() => createDataset(defaultWorkload({ dataset: 'custom', datasetPath: join(dir, 'bad2.jsonl') })), /output_len/);
  writeFileSync(join(dir, 'bad3.jsonl'), 'not json\n');
  t.throws(() => createDataset(defaultWorkload({ dataset: 'custom', datasetPath: join(dir, 'bad3.jsonl') })), /not valid JSON/);
});

t.test('arrivals: Poisson mean rate; gamma burstiness changes the spread, not the rate', async (t) => {
  const n = 40_000;
  const gaps = (rate: number, burstiness: number, seed = 5): number[] => {
    const a = new ArrivalProcess({ requestRate: rate, burstiness, seed });
    const times = Array.from({ length: n + 1 }, () => a.next());
    return times.slice(1).map((x, i) => x - times[i]!);
  };
  const cv = (g: number[]): { mean: number; cv: number } => {
    const d = describeValues(g);
    return { mean: d.mean, cv: d.std / d.mean };
  };
  const poisson = cv(gaps(100, 1));
  t.ok(Math.abs(poisson.mean - 10) / 10 < 0.03, `Poisson mean gap ${poisson.mean} ~ 10 ms at 100 req/s`);
  t.ok(Math.abs(poisson.cv - 1) < 0.05, `exponential gaps: CV ${poisson.cv} ~ 1`);
  const bursty = cv(gaps(100, 0.25));
  t.ok(Math.abs(bursty.mean - 10) / 10 < 0.05, `gamma(0.25) keeps the mean gap (${bursty.mean})`);
  t.ok(Math.abs(bursty.cv - 2) < 0.15, `burstiness 0.25: CV ${bursty.cv} ~ 1/sqrt(0.25) = 2`);
  const smooth = cv(gaps(100, 4));
  t.ok(Math.abs(smooth.cv - 0.5) < 0.05, `burstiness 4: CV ${smooth.cv} ~ 0.5`);
  t.same(gaps(50, 1, 9).slice(0, 5), gaps(50, 1, 9).slice(0, 5), 'deterministic under the seed');
  const inf = new ArrivalProcess({ requestRate: Infinity, burstiness: 1, seed: 1 });
  t.same([inf.next(), inf.next(), inf.next()], [0, 0, 0], 'inf: all at once');
  t.equal(parseRequestRate('inf'), Infinity);
  t.equal(parseRequestRate('12.5'), 12.5);
  t.throws(() => parseRequestRate('0'));
  t.throws(() => parseRequestRate('fast'));
});

t.test('--slo parsing', async (t) => {
  t.same(parseSlo('ttft=200,tpot=20,e2e=5000'), { ttftMs: 200, tpotMs: 20, e2eMs: 5000 });
  t.same(parseSlo('ttft=50'), { ttftMs: 50, tpotMs: undefined, e2eMs: undefined });
  t.equal(parseSlo(undefined), undefined);
  t.throws(() => parseSlo('ttft=abc'), OptionsError);
  t.throws(() => parseSlo('latency=5'), /unknown key/);
});

t.test('Rng: the published mulberry32 sequence (unsigned state), draw for draw', async (t) => {
  // The reference keeps its state unsigned; Rng keeps the same bits signed (no heap number per draw).
  const reference = (seed: number): (() => number) => {
    let a = seed >>> 0 || 0x6d2b79f5;
    return () => {
      let x = (a = (a + 0x6d2b79f5) >>> 0);
      x = Math.imul(x ^ (x >>> 15), x | 1);
      x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
      return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
    };
  };
  for (const seed of [0, 1, 42, 0x7fffffff, 0x80000000, 0xfffffff0]) {
    const want = reference(seed);
    const rng = new Rng(seed);
    let mismatches = 0;
    for (let i = 0; i < 100_000; i++) if (rng.next() !== want()) mismatches++;
    t.equal(mismatches, 0, `seed ${seed}`);
  }
  t.equal(new Rng(1).next(), 0.6270739405881613, 'mulberry32(1) first draw');
});
