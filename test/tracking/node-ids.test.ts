import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assignNodeIds, parseNodeMap, resolveNodeMapOption } from '../../src/tracking/node-ids.js';
import { parseRouterOptions } from '../../src/config/router-options.js';
import { resolveWorkerNodeIds } from '../../src/tracking/setup.js';

const A = 'http://127.0.0.1:30003';
const B = 'http://127.0.0.1:30001';
const C = 'http://127.0.0.1:30002';

t.test('by port order when nothing is configured (seed 000: lowest port is GPU 0)', async (t) => {
  t.same(assignNodeIds([A, B, C], [], new Map()), [2, 0, 1]);
  t.same(assignNodeIds(['http://b:30001', 'http://a:30001'], [], new Map()), [1, 0], 'same port: by host');
});

t.test('--worker-node-ids wins, then the map, then port order on the ids left', async (t) => {
  t.same(assignNodeIds([A, B, C], ['7', '8', '9'], new Map([[A, 0]])), [7, 8, 9]);
  t.same(assignNodeIds([A, B, C], [], new Map([[A, 0]])), [0, 1, 2], 'A mapped to 0; B and C by port on 1, 2');
  t.same(assignNodeIds([A, B, C], [], new Map([[C, 0], [A, 1]])), [1, 2, 0]);
  t.same(assignNodeIds([A, B], [], new Map([[A, 3], [B, 3]])), [3, 3], 'two servers may share a node on purpose');
  t.throws(() => assignNodeIds([A, B], ['1'], new Map()), /has 1 ids for 2 worker URLs/);
  t.throws(() => assignNodeIds([A], ['x'], new Map()), /not a node id/);
  t.throws(() => assignNodeIds([A], ['-1'], new Map()), /not a node id/);
});

t.test('parseNodeMap: JSON, URL=ID pairs, objects; URLs normalised', async (t) => {
  t.same([...parseNodeMap('{"127.0.0.1:30001": 4, "http://localhost:30002/": 5}')], [
    [B, 4],
    ['http://localhost:30002', 5],
  ]);
  t.same([...parseNodeMap(`${A}=1, ${B}=2 ${C}=3`)], [
    [A, 1],
    [B, 2],
    [C, 3],
  ]);
  t.same([...parseNodeMap({ [A]: '6' })], [[A, 6]]);
  t.same([...parseNodeMap(undefined)], []);
  t.same([...parseNodeMap('  ')], []);
  t.throws(() => parseNodeMap('{bad json'), /not valid JSON/);
  t.throws(() => parseNodeMap('[1,2]'), /not URL=ID/);
  t.throws(() => parseNodeMap('{"a": 1}'.replace('{', '[')), /URL=ID|JSON object/);
  t.throws(() => parseNodeMap('"x"'), /not URL=ID/);
  t.throws(() => parseNodeMap('{"ftp://x:1": 1}'), /http or https/);
  t.throws(() => parseNodeMap(`${A}`), /not URL=ID/);
  t.throws(() => parseNodeMap(`${A}=1.5`), /not a node id/);
  t.throws(() => parseNodeMap(`${A}=1,${A}/=2`), /mapped twice/);
  t.throws(() => parseNodeMap('null'), /not URL=ID/);
  t.same([...parseNodeMap('{}')], []);
});

t.test('a config file may hold worker-node-map as an object', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-nodemap-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'router.json');
  writeFileSync(file, JSON.stringify({ 'worker-urls': [A, B], 'worker-node-map': { [A]: 0, [B]: 5 } }));
  const opts = parseRouterOptions(['--config', file], {});
  t.same(resolveWorkerNodeIds(opts, opts.workerUrls), [0, 5]);
  // the command line still wins over the file
  const cli = parseRouterOptions(['--config', file, '--worker-node-map', `${A}=9`], {});
  t.same(resolveWorkerNodeIds(cli, cli.workerUrls), [9, 0]);
  writeFileSync(file, JSON.stringify({ worker_node_map: { [B]: 2 } }));
  t.same([...resolveNodeMapOption('[object Object]', file)], [[B, 2]], 'snake_case key');
  writeFileSync(file, JSON.stringify({ workerNodeMap: [1] }));
  t.throws(() => resolveNodeMapOption('[object Object]', file), /must be an object/);
  t.throws(() => resolveNodeMapOption('[object Object]', join(dir, 'missing.json')), /cannot read config file/);
  t.same([...resolveNodeMapOption(undefined, undefined)], []);
});
