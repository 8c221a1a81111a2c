/**
 * `switchyard sweep`: node-level test (seed 004): one simulated server per --max-running-requests value,
 * the same seeded workload against each; sweep.json, sweep.md, plots and report.html.
 */
import { OptionsError, parseOptions, type OptionSpec } from '../config/options.js';
import { prefixedSimSpecs, simOptionsFromParsed } from '../sim/options.js';
import { runSweep, type SweepOptions } from '../load/sweep.js';
import { WORKLOAD_SPECS, defaultOutputDir, withEnvPrefix, workloadFromParsed } from '../load/options.js';
import { LoadError } from '../load/runner.js';

const OWN_SPECS = [
  { name: 'max-running-requests', type: 'list', default: ['32', '64', '128', '256', '512'], help: 'values to sweep (SGLang --max-running-requests of the one server)', group: 'Sweep', metavar: 'N,...' },
  { name: 'output', type: 'string', help: 'results folder (default ./sweep-results/<time>)', group: 'Output', metavar: 'DIR' },
  { name: 'quiet', type: 'boolean', default: false, help: 'no table on stdout', group: 'Output' },
  { name: 'progress', type: 'string', default: 'auto', choices: ['auto', 'on', 'off'], help: 'progress bars on stderr (auto: only on a TTY)', group: 'Output' },
] as const satisfies readonly OptionSpec[];

// The swept flag is ours; the sim's own --sim-max-running-requests would be overridden anyway.
const SIM_SPECS = prefixedSimSpecs('sim-').filter((s) => s.name !== 'sim-max-running-requests');

const SPECS = [...withEnvPrefix(OWN_SPECS, 'sweep'), ...withEnvPrefix(SIM_SPECS, 'sweep'), ...withEnvPrefix(WORKLOAD_SPECS, 'sweep')];

export function parseSweepOptions(argv: readonly string[], env?: NodeJS.ProcessEnv): SweepOptions {
  const p = parseOptions(SPECS, argv, {
    command: 'sweep',
    summary:
      'Node-level sweep: one simulated SGLang server, restarted for each --max-running-requests value, takes the same seeded workload; throughput and latency per value (sweep.json, sweep.md, plots, report.html).',
    ...(env === undefined ? {} : { env }),
  }) as unknown as Record<string, unknown>;
  const values = (p['maxRunningRequests'] as string[]).map((v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new OptionsError(`--max-running-requests values must be integers >= 1, got '${v}'`);
    return n;
  });
  return {
    maxRunningRequests: values,
    sim: simOptionsFromParsed(p, 'sim-'),
    workload: workloadFromParsed(p),
    output: (p['output'] as string | undefined) ?? defaultOutputDir('sweep-results'),
    quiet: p['quiet'] as boolean,
    progress: p['progress'] as SweepOptions['progress'],
  };
}

export async function run(argv: string[]): Promise<number> {
  const opts = parseSweepOptions(argv);
  try {
    const r = await runSweep(opts);
    if (r.pngUnavailable !== undefined) process.stderr.write(`note: ${r.pngUnavailable}\n`);
    process.stderr.write(`wrote ${r.files.sweepJson}, ${r.files.markdown}, ${r.files.html} and ${r.files.svgs.length} plots\n`);
    return 0;
  } catch (err) {
    if (err instanceof LoadError) {
      process.stderr.write(`switchyard sweep: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
