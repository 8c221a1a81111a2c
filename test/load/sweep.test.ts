import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseSweepOptions } from '../../src/cli/sweep.js';
import { runSweep } from '../../src/load/sweep.js';
import { pngRenderer } from '../../src/load/charts/png.js';
import { tempDir } from './helpers.js';

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function isPng(path: string): boolean {
  const b = readFileSync(path);
  return PNG_MAGIC.every((v, i) => b[i] === v) && b.length > 2000;
}

t.test('sweep: one fresh server per --max-running-requests value; table, JSON, plots', async (t) => {
  const dir = tempDir('sy-sweep-');
  t.throws(() => parseSweepOptions(['--max-running-requests', '4,zero'], {}), /integers >= 1/);
  const opts = parseSweepOptions(['--max-running-requests', '1,8', '--dataset', 'random', '--random-input-len', '40', '--random-output-len', '10', '--num-prompts', '16', '--request-rate', 'inf', '--sim-time-scale', '0.05', '--output', dir, '--quiet', '--progress', 'off'], {});
  const r = await runSweep(opts, () => undefined);
  t.same(r.points.map((p) => p.maxRunningRequests), [1, 8]);
  const json = JSON.parse(readFileSync(join(dir, 'sweep.json'), 'utf8')) as { results: { max_running_requests: number; completed: number; request_throughput: number; median_queue_ms: number; target: string }[] };
  t.ok(json.results.every((x) => x.completed === 16 && x.target === 'server'));
  t.ok(existsSync(join(dir, 'mrr-1', 'requests.csv')) && existsSync(join(dir, 'mrr-8', 'summary.json')));
  t.match(readFileSync(join(dir, 'sweep.md'), 'utf8'), /\| 8 \|/);
  t.equal((readFileSync(r.files.html, 'utf8').match(/<svg /g) ?? []).length, 2);
  if (pngRenderer().renderer !== undefined) for (const p of r.files.pngs) t.ok(isPng(p), `${p} is a PNG`);
  else t.comment(`PNG assertions skipped: ${pngRenderer().reason}`);
});
