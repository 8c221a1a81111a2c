/**
 * `switchyard load`: the load generator (SGLang bench_serving's flags where they overlap). Writes
 * DIR/requests.csv and DIR/summary.json and prints the result table; see docs/load-testing.md.
 */
import { OptionsError, parseOptions } from '../config/options.js';
import { LOAD_ONLY_SPECS, WORKLOAD_SPECS, defaultOutputDir, withEnvPrefix, workloadFromParsed, type LoadOptions } from '../load/options.js';
import { LoadError, runLoad } from '../load/runner.js';

const SPECS = [...withEnvPrefix(LOAD_ONLY_SPECS, 'load'), ...withEnvPrefix(WORKLOAD_SPECS, 'load')] as const;

export function parseLoadOptions(argv: readonly string[], env?: NodeJS.ProcessEnv): LoadOptions {
  const p = parseOptions(SPECS, argv, {
    command: 'load',
    summary:
      'Send a seeded workload (random, sharegpt, generated-shared-prefix or custom prompts; Poisson or gamma arrivals) to a router or a single SGLang-compatible server, and record every request: requests.csv, summary.json (bench_serving field names), per-GPU metrics.',
    ...(env === undefined ? {} : { env }),
  });
  const raw = p as unknown as Record<string, unknown>;
  if (typeof raw['url'] !== 'string' || raw['url'] === '') throw new OptionsError('--url is required (e.g. --url http://127.0.0.1:30000)');
  return {
    ...workloadFromParsed(raw),
    url: raw['url'] as string,
    output: (raw['output'] as string | undefined) ?? defaultOutputDir(),
    target: raw['target'] as LoadOptions['target'],
    gpuFallbackPolicy: raw['gpuFallbackPolicy'] as LoadOptions['gpuFallbackPolicy'],
    numGpus: raw['numGpus'] as number | undefined,
    runId: raw['runId'] as string | undefined,
    quiet: raw['quiet'] as boolean,
    progress: raw['progress'] as LoadOptions['progress'],
    lagDiagnostics: raw['lagDiagnostics'] as boolean,
    helperNice: raw['helperNice'] as number,
  };
}

export async function run(argv: string[]): Promise<number> {
  const opts = parseLoadOptions(argv);
  // Ctrl-C once: stop sending and write what was measured; twice: quit at once.
  const controller = new AbortController();
  const onSigint = (): void => {
    if (controller.signal.aborted) process.exit(130);
    controller.abort();
  };
  process.on('SIGINT', onSigint);
  try {
    const result = await runLoad(opts, { signal: controller.signal });
    process.stderr.write(`wrote ${result.csvPath} and ${result.summaryPath}${result.summary['interrupted'] === true ? ' (interrupted)' : ''}\n`);
    return result.summary['interrupted'] === true ? 130 : 0;
  } catch (err) {
    if (err instanceof LoadError) {
      process.stderr.write(`switchyard load: ${err.message}\n`);
      return 1;
    }
    throw err;
  } finally {
    process.off('SIGINT', onSigint);
  }
}
