import { parseRouterOptions } from '../../src/config/router-options.js';
import { startRouter, type StartedRouter, type StartRouterDeps } from '../../src/router.js';
import { silentLogger } from '../../src/util/log.js';

/** A router on an ephemeral loopback port, quiet, with fast health checks unless told otherwise. */
export async function startTestRouter(args: string[], deps: StartRouterDeps = {}): Promise<StartedRouter> {
  const opts = parseRouterOptions(
    ['--host', '127.0.0.1', '--port', '0', '--health-check-interval-secs', '0.2', '--health-check-timeout-secs', '1', '--load-poll-interval-secs', '0', '--prometheus-port', '0', ...args],
    {},
  );
  return startRouter(opts, { logger: silentLogger(), ...deps });
}
