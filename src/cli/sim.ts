/**
 * `switchyard sim`: K simulated SGLang servers on consecutive ports in one process.
 *
 * stdout carries exactly two JSON lines for scripts: {"event":"sim.ready",...} once every server
 * listens (with the actual URLs, so --port 0 works) and {"event":"sim.stopped",...} on SIGINT/SIGTERM.
 * Logs go to stderr.
 */
import { parseOptions, type OptionSpec } from '../config/options.js';
import { startSimFleet } from '../sim/fleet.js';
import { SIM_OPTION_SPECS, simEnv, simOptionsFromParsed } from '../sim/options.js';
import { createLogger, LOG_LEVELS } from '../util/log.js';

const CLI_SPECS = [
  ...simEnv([
    { name: 'host', type: 'string', default: '127.0.0.1', help: 'listen host', group: 'Servers' },
    { name: 'port', type: 'integer', default: 30001, min: 0, max: 65535, help: 'port of the first server (server i listens on port + i; 0 = ephemeral)', group: 'Servers' },
    { name: 'count', type: 'integer', default: 1, min: 1, max: 1024, help: 'number of servers (server i reports GPU id base-gpu-id + i)', group: 'Servers' },
  ] as const),
  { name: 'log-level', type: 'string', default: 'info', choices: LOG_LEVELS, help: 'log level (logs go to stderr)', group: 'Servers' },
] as const satisfies readonly OptionSpec[];

const SPECS = [...CLI_SPECS, ...SIM_OPTION_SPECS] as const;

export async function run(argv: string[]): Promise<number> {
  const parsed = parseOptions(SPECS, argv, {
    command: 'sim',
    summary: 'Run K simulated SGLang servers (continuous batching, prefix cache, SGLang HTTP API) on consecutive ports.',
  });
  const simOptions = simOptionsFromParsed(parsed as unknown as Record<string, unknown>);
  // A script may stop reading stdout after the ready line (e.g. `| head -1`): that must not kill the servers.
  process.stdout.on('error', () => undefined);
  const log = createLogger({ level: parsed.logLevel, name: 'sim', destination: 2 });
  if (parsed.port !== 0 && parsed.port + parsed.count - 1 > 65535) {
    process.stderr.write(`switchyard sim: --port ${parsed.port} leaves no room for ${parsed.count} servers\n`);
    return 2;
  }
  let fleet;
  try {
    fleet = await startSimFleet({ ...simOptions, count: parsed.count, host: parsed.host, port: parsed.port });
  } catch (err) {
    process.stderr.write(`switchyard sim: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  process.stdout.write(
    JSON.stringify({
      event: 'sim.ready',
      urls: fleet.urls,
      ports: fleet.ports,
      gpu_ids: fleet.servers.map((s) => s.gpuId),
      model: simOptions.servedModelName,
      profile: simOptions.profile,
      time_scale: simOptions.timeScale,
      pid: process.pid,
    }) + '\n',
  );
  log.info({ urls: fleet.urls, profile: simOptions.profile, timeScale: simOptions.timeScale }, 'simulated SGLang servers ready');

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    const onSignal = (sig: NodeJS.Signals): void => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve(sig);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  await fleet.close();
  log.info({ signal }, 'simulated servers stopped');
  process.stdout.write(JSON.stringify({ event: 'sim.stopped', signal }) + '\n');
  // Everything is closed, so the loop drains on its own; the guard only covers a stuck handle.
  setTimeout(() => process.exit(0), 2000).unref();
  return 0;
}
