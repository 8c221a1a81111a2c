/**
 * `switchyard compare`: the same seeded workload against a fresh simulated fleet + router per policy;
 * compare.json, compare.md, plots (PNG + SVG) and report.html. See docs/load-testing.md.
 */
import { OptionsError, parseOptions, type OptionSpec } from '../config/options.js';
import { prefixedSimSpecs, simOptionsFromParsed } from '../sim/options.js';
import { runCompare, type CompareOptions } from '../load/compare.js';
import { WORKLOAD_SPECS, defaultOutputDir, withEnvPrefix, workloadFromParsed } from '../load/options.js';
import { LoadError } from '../load/runner.js';

const OWN_SPECS = [
  { name: 'policies', type: 'list', default: [], help: 'policies to compare, e.g. round_robin,cache_aware (names the policy registry knows)', group: 'Comparison', metavar: 'NAME,...' },
  { name: 'sim-workers', type: 'integer', default: 8, min: 1, max: 256, help: 'simulated workers (GPUs) behind each router', group: 'Comparison' },
  { name: 'router-args', type: 'string', default: '', help: 'extra `switchyard serve` flags for every router, as one string (e.g. "--cache-threshold 0.5")', group: 'Comparison', metavar: 'ARGS' },
  { name: 'output', type: 'string', help: 'results folder (default ./compare-results/<time>)', group: 'Output', metavar: 'DIR' },
  { name: 'quiet', type: 'boolean', default: false, help: 'no table on stdout', group: 'Output' },
  { name: 'progress', type: 'string', default: 'auto', choices: ['auto', 'on', 'off'], help: 'progress bars on stderr (auto: only on a TTY)', group: 'Output' },
] as const satisfies readonly OptionSpec[];

const SPECS = [...withEnvPrefix(OWN_SPECS, 'compare'), ...withEnvPrefix(prefixedSimSpecs('sim-'), 'compare'), ...withEnvPrefix(WORKLOAD_SPECS, 'compare')];

export function parseCompareOptions(argv: readonly string[], env?: NodeJS.ProcessEnv): CompareOptions {
  const p = parseOptions(SPECS, argv, {
    command: 'compare',
    summary:
      'Compare routing policies: for each one a fresh simulated fleet (worker thread) and a fresh `switchyard serve` (child process) take the same seeded workload. Writes compare.json, compare.md, plots and report.html.',
    ...(env === undefined ? {} : { env }),
  }) as unknown as Record<string, unknown>;
  const policies = (p['policies'] as string[]) ?? [];
  if (policies.length === 0) throw new OptionsError('--policies is required (e.g. --policies round_robin,cache_aware)');
  const routerArgs = String(p['routerArgs'] ?? '')
    .split(/\s+/)
    .filter((s) => s.length > 0);
  return {
    policies,
    simWorkers: p['simWorkers'] as number,
    sim: simOptionsFromParsed(p, 'sim-'),
    workload: workloadFromParsed(p),
    output: (p['output'] as string | undefined) ?? defaultOutputDir('compare-results'),
    routerArgs,
    quiet: p['quiet'] as boolean,
    progress: p['progress'] as CompareOptions['progress'],
  };
}

export async function run(argv: string[]): Promise<number> {
  const opts = parseCompareOptions(argv);
  try {
    const r = await runCompare(opts);
    if (r.pngUnavailable !== undefined) process.stderr.write(`note: ${r.pngUnavailable}\n`);
    process.stderr.write(`wrote ${r.files.compareJson}, ${r.files.markdown}, ${r.files.html} and ${r.files.svgs.length} plots\n`);
    return 0;
  } catch (err) {
    if (err instanceof LoadError) {
      process.stderr.write(`switchyard compare: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
