/**
 * `switchyard <command>`: dispatches to one module per command, loaded lazily so that e.g. `sim`
 * does not pay for the router's imports.
 */
import { HelpRequested, OptionsError } from '../config/options.js';
import { StartupError } from '../errors.js';

interface CommandModule {
  run(argv: string[]): Promise<number | void>;
}

const COMMANDS: Record<string, { summary: string; load: () => Promise<CommandModule> }> = {
  // Each command registers here: name -> summary and a lazy import of src/cli/<name>.ts.
  sim: { summary: 'run K simulated SGLang servers on consecutive ports', load: () => import('./sim.js') },
  serve: { summary: 'run the router (embedded simulated fleet when no --worker-urls)', load: () => import('./serve.js') },
  traces: { summary: 'export the trace log (serve --trace-log-dir) as CSV or JSON lines', load: () => import('./traces.js') },
  load: { summary: 'send a seeded workload to a router or server; requests.csv + summary.json', load: () => import('./load.js') },
  compare: { summary: 'compare routing policies on fresh simulated fleets; tables, plots, report.html', load: () => import('./compare.js') },
  sweep: { summary: 'node-level sweep of --max-running-requests on one simulated server', load: () => import('./sweep.js') },
};

function usage(): string {
  const lines = ['Usage: switchyard <command> [options]', '', 'Commands:'];
  for (const [name, c] of Object.entries(COMMANDS)) lines.push(`  ${name.padEnd(10)}${c.summary}`);
  lines.push('', 'Run `switchyard <command> --help` for its options.');
  return lines.join('\n');
}

export async function runCli(argv: string[]): Promise<void> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n');
    process.exitCode = name === undefined ? 2 : 0;
    return;
  }
  if (name === '--version' || name === 'version') {
    const { readFileSync } = await import('node:fs');
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
    process.stdout.write(`switchyard ${pkg.version}\n`);
    return;
  }
  const command = COMMANDS[name];
  if (command === undefined) {
    process.stderr.write(`switchyard: unknown command '${name}'\n\n${usage()}\n`);
    process.exitCode = 2;
    return;
  }
  try {
    const mod = await command.load();
    const code = await mod.run(rest);
    if (typeof code === 'number') process.exitCode = code;
  } catch (err) {
    if (err instanceof HelpRequested) {
      process.stdout.write(err.text + '\n');
      return;
    }
    if (err instanceof OptionsError) {
      process.stderr.write(`switchyard ${name}: ${err.message}\n`);
      process.exitCode = 2;
      return;
    }
    if (err instanceof StartupError) {
      process.stderr.write(`switchyard ${name}: ${err.message}\n`);
      process.exitCode = 1;
      return;
    }
    throw err;
  }
}
