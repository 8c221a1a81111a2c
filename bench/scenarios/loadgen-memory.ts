/**
 * The load generator's memory over a long run: 1,000,000 requests (--quick: 100,000) as fast as a
 * 128-connection pool allows against the light backend (its own process), non-streaming. Rows stream to
 * requests.csv; the summary keeps typed arrays. Reports peak RSS, peak JS heap + array buffers growth per
 * request, the recorder's own bytes per request, and the generator's request rate.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchContext, Figure, Scenario } from '../lib/scenario.js';
import { start, waitForLine } from '../lib/processes.js';
import { defaultWorkload } from '../../src/load/options.js';
import { runLoad } from '../../src/load/runner.js';

const BACKEND = fileURLToPath(new URL('../fixtures/light-backend.js', import.meta.url));

function heapNow(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

const scenario: Scenario = {
  name: 'loadgen-memory',
  description: 'load generator memory for 1M requests (quick: 100k): peak RSS, heap growth per request, recorder bytes per request',
  async run(ctx: BenchContext): Promise<Figure[]> {
    const n = ctx.quick ? 100_000 : 1_000_000;
    const backend = start('light-backend', process.execPath, [BACKEND, '--host', '127.0.0.1', '--port', '0', '--output-tokens', '16'], { echoStderr: true });
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-loadgen-mem-'));
    try {
      const m = await waitForLine(backend, /^\{"ready":true.*"port":(\d+)/, 30_000);
      const url = `http://127.0.0.1:${m[1]}`;
      global.gc?.();
      const baseHeap = heapNow();
      const baseRss = process.memoryUsage().rss;
      let peakRss = baseRss;
      let peakHeap = baseHeap;
      const sampler = setInterval(() => {
        const u = process.memoryUsage();
        if (u.rss > peakRss) peakRss = u.rss;
        if (u.heapUsed + u.arrayBuffers > peakHeap) peakHeap = u.heapUsed + u.arrayBuffers;
      }, 100);
      const t0 = performance.now();
      let r;
      try {
        r = await runLoad(
          {
            ...defaultWorkload({ dataset: 'random', randomInputLen: 64, randomOutputLen: 16, randomRangeRatio: 1, numPrompts: n, requestRate: Infinity, maxConcurrency: 128, seed: 1, disableStream: true, warmupRequests: 16 }),
            url,
            output: join(dir, 'run'),
            target: 'server',
            gpuFallbackPolicy: 'none',
            numGpus: undefined,
            runId: 'mem',
            quiet: true,
            progress: 'off',
          },
          { log: (l) => ctx.log(l) },
        );
      } finally {
        clearInterval(sampler);
      }
      const seconds = (performance.now() - t0) / 1000;
      const growth = Math.max(0, peakHeap - baseHeap);
      ctx.log(`${n} requests in ${seconds.toFixed(1)} s (${r.summary.failed} failed); peak RSS ${(peakRss / 2 ** 20).toFixed(0)} MiB (base ${(baseRss / 2 ** 20).toFixed(0)}); heap+buffers growth ${(growth / 2 ** 20).toFixed(1)} MiB; recorder ${(r.recorderBytes / 2 ** 20).toFixed(1)} MiB`);
      return [
        { name: 'loadgen.memory.peak_rss_mib', value: peakRss / 2 ** 20, unit: 'MiB', better: 'lower', note: `${n} requests, whole bench process` },
        { name: 'loadgen.memory.heap_growth_bytes_per_request', value: growth / n, unit: 'B/req', better: 'lower', note: 'peak (heapUsed + arrayBuffers) - baseline, over N; includes garbage not yet collected' },
        { name: 'loadgen.memory.recorder_bytes_per_request', value: r.recorderBytes / n, unit: 'B/req', better: 'lower', note: 'typed arrays kept for the summary' },
        { name: 'loadgen.max_rps', value: r.summary.request_throughput, unit: 'req/s', better: 'higher', note: 'rate inf, 128 connections, non-streaming, light backend' },
      ];
    } finally {
      await backend.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  },
};

export default scenario;
