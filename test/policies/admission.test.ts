/** Size-aware admission (seed 002): triggers, reasons, groups, fallbacks, counters, the groups option. */
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Field, WorkerTable } from '../../src/actors/worker-table.js';
import {
  Admission,
  AdmissionTally,
  admissionOptions,
  DEFAULT_KV_BYTES_PER_TOKEN,
  parseWorkerGroups,
  resolveWorkerGroups,
  withGroups,
  type AdmissionRecorder,
} from '../../src/policies/admission.js';
import { SwitchyardError } from '../../src/errors.js';
import type { RequestFeatures, WorkerInfo } from '../../src/policies/types.js';
import { addWorkers } from './conformance.js';

function req(inputTokens: number, maxNewTokens = 128): RequestFeatures {
  return { requestId: 'r', route: 'chat', text: 'x', inputTokens, maxNewTokens, stream: false };
}

function fleet(): { table: WorkerTable; ws: WorkerInfo[]; adm: Admission } {
  const table = WorkerTable.create(8);
  const plain = addWorkers(table, 4);
  const ws = plain.map((w, i) => ({ ...w, group: i === 3 ? 'multi' : 'single' }));
  const adm = new Admission(table);
  adm.setWorkers(ws);
  return { table, ws, adm };
}

t.test('the seed\'s thresholds and reasons', async (t) => {
  const { table, ws, adm } = fleet();
  t.equal(DEFAULT_KV_BYTES_PER_TOKEN, 131072, 'Llama-3.1-8B bf16: 128 KiB of KV per token');
  let v = adm.classify(req(10_000));
  t.same([v.action, v.trigger, v.reason], ['multi', 'large_input', 'large_input: 10000 > 8000 tokens -> multi']);
  v = adm.classify(req(8000));
  t.same([v.action, v.trigger], ['single', 'none'], '8000 is not > 8000');
  t.match(v.reason, /^small: 8000 tokens, kv 1016 MB -> single$/);
  // large KV without a large input: a long generation budget (128 KiB/token: 6000 MB = 48000 tokens)
  v = adm.classify(req(4000, 50_000));
  t.same([v.action, v.trigger, v.reason], ['multi', 'large_kv', 'large_kv: 6750 > 6000 MB -> multi']);
  t.equal(v.predictedKvMb, 6750);
  // memory pressure: every single worker above 85% usage, and a request above 4000 tokens
  for (const w of ws.slice(0, 3)) table.set(w.slot, Field.TokenUsagePermille, 900);
  v = adm.classify(req(5000));
  t.same([v.action, v.trigger], ['multi', 'memory_pressure']);
  t.equal(v.reason, 'memory_pressure: token usage 0.90 > 0.85 and input 5000 > 4000 tokens -> multi');
  t.equal(adm.classify(req(3000)).trigger, 'none', 'small requests stay single under pressure');
  t.equal(adm.classify(req(1000, 24_000)).trigger, 'memory_pressure', 'or a KV estimate above 3000 MB');
  t.match(adm.classify(req(1000, 24_000)).reason, /and kv 3125 > 3000 MB/);
  // one single worker with headroom: no pressure
  table.set(ws[0]!.slot, Field.TokenUsagePermille, 500);
  t.equal(adm.classify(req(5000)).trigger, 'none');
});

t.test('an unavailable group: the other one, said in the reason; counters record where requests went', async (t) => {
  const { table, ws, adm } = fleet();
  const seen: [string, string][] = [];
  const recorder: AdmissionRecorder = { record: (a, tr) => seen.push([a, tr]) };
  adm.addRecorder(recorder);
  table.setHealthy(ws[3]!.slot, false);
  let f = adm.admit(req(9000));
  t.equal(f.group, 'single');
  t.equal(f.admission, 'admission: large_input: 9000 > 8000 tokens; no multi-GPU worker available -> single');
  for (const w of ws) table.setHealthy(w.slot, w.group === 'multi');
  f = adm.admit(req(10));
  t.equal(f.group, 'multi');
  t.match(f.admission, /; no single-GPU worker available -> multi$/);
  table.setHealthy(ws[0]!.slot, true);
  f = adm.admit(req(20_000));
  t.equal(f.group, 'multi');
  t.equal(f.requestId, 'r', 'the rest of the features are kept');
  t.same(seen, [
    ['single', 'large_input'],
    ['multi', 'none'],
    ['multi', 'large_input'],
  ]);
  const snap = adm.snapshot();
  t.equal(snap.counts.total, 3);
  t.same(snap.counts.actions, { single: 1, multi: 2 });
  t.same(snap.counts.triggers, { none: 1, large_input: 2, large_kv: 0, memory_pressure: 0 });
  t.equal(snap.counts.by_action['multi']?.['large_input'], 1);
  t.same(snap.workers, { single: 3, multi: 1 });
  t.equal(adm.tally.count('multi'), 2);
  t.equal(adm.tally.count('single', 'large_input'), 1);
  const tally = new AdmissionTally();
  tally.record('bogus', 'none');
  t.equal(tally.snapshot().total, 0, 'unknown names are not counted');
});

t.test('options and the --worker-groups map', async (t) => {
  t.same(admissionOptions(), { largeInputTokens: 8000, largeKvMb: 6000, memoryPressureUsage: 0.85, pressureInputTokens: 4000, pressureKvMb: 3000, kvBytesPerToken: 131072 });
  for (const bad of [{ largeInputTokens: 0 }, { memoryPressureUsage: 2 }, { kvBytesPerToken: Number.NaN }]) {
    t.throws(() => admissionOptions(bad), SwitchyardError, JSON.stringify(bad));
  }
  const m = parseWorkerGroups('http://127.0.0.1:30001=multi, 127.0.0.1:30002=single http://h:1=route4');
  t.same([...m], [
    ['http://127.0.0.1:30001', 'multi'],
    ['http://127.0.0.1:30002', 'single'],
    ['http://h:1', 'multi'],
  ]);
  t.same([...parseWorkerGroups('{"http://a:1/": "multi"}')], [['http://a:1', 'multi']]);
  t.equal(parseWorkerGroups('').size, 0);
  t.equal(parseWorkerGroups(undefined).size, 0);
  for (const bad of ['http://a:1=big', 'nonsense', '{bad json', '["x"]', 'http://a:1=multi,http://a:1=single', 'ftp://a:1=multi']) {
    const err = t.throws(() => parseWorkerGroups(bad)) as SwitchyardError;
    t.equal(err.code, 'invalid_request', bad);
  }
  const dir = mkdtempSync(join(tmpdir(), 'groups-'));
  const cfg = join(dir, 'c.json');
  writeFileSync(cfg, JSON.stringify({ 'worker-groups': { 'http://x:1': 'multi' } }));
  t.same([...resolveWorkerGroups('[object Object]', cfg)], [['http://x:1', 'multi']], 'an object in the config file');
  t.same([...resolveWorkerGroups(undefined, cfg)], [['http://x:1', 'multi']]);
  writeFileSync(cfg, JSON.stringify({ worker_groups: 'http://y:2=multi' }));
  t.same([...resolveWorkerGroups(undefined, cfg)], [['http://y:2', 'multi']]);
  writeFileSync(cfg, JSON.stringify({ workerGroups: 5 }));
  t.throws(() => resolveWorkerGroups(undefined, cfg), /must be an object/);
  writeFileSync(cfg, JSON.stringify({}));
  t.equal(resolveWorkerGroups(undefined, cfg).size, 0);
  t.equal(resolveWorkerGroups(undefined, undefined).size, 0);
  t.throws(() => resolveWorkerGroups(undefined, join(dir, 'missing.json')), /cannot read config file/);
  const ws = withGroups([{ slot: 0, generation: 1, url: 'http://x:1', nodeId: 0 }, { slot: 1, generation: 1, url: 'http://z:1', nodeId: 1 }], new Map([['http://x:1', 'multi' as const]]));
  t.same(ws.map((w) => w.group), ['multi', 'single'], 'workers not named are single');
});
