import { parseRouterOptions } from '../../src/config/router-options.js';
import { startRouter, type StartedRouter, type StartRouterDeps } from '../../src/router.js';
import { silentLogger } from '../../src/util/log.js';

/**
 * SWITCHYARD_TEST_UPSTREAM_CLIENT=fast|undici runs every test router with that upstream client (the
 * router's own environment is not read by tests: options are parsed with an empty env).
 */
const UPSTREAM_CLIENT = process.env['SWITCHYARD_TEST_UPSTREAM_CLIENT'];
/**
 * SWITCHYARD_TEST_FRONTEND_THREADS=N runs every test router with --frontend-threads N (unless the test sets
 * it): the same integration tests then exercise the data path in front-end threads.
 */
const FRONTEND_THREADS = process.env['SWITCHYARD_TEST_FRONTEND_THREADS'];

/** A router on an ephemeral loopback port, quiet, with fast health checks unless told otherwise. */
export async function startTestRouter(args: string[], deps: StartRouterDeps = {}): Promise<StartedRouter> {
  const base = ['--host', '127.0.0.1', '--port', '0', '--health-check-interval-secs', '0.2', '--health-check-timeout-secs', '1', '--load-poll-interval-secs', '0', '--prometheus-port', '0'];
  if (UPSTREAM_CLIENT !== undefined && UPSTREAM_CLIENT !== '') base.push('--upstream-client', UPSTREAM_CLIENT);
  if (FRONTEND_THREADS !== undefined && FRONTEND_THREADS !== '' && !args.includes('--frontend-threads')) base.push('--frontend-threads', FRONTEND_THREADS);
  const opts = parseRouterOptions([...base, ...args], {});
  return startRouter(opts, { logger: silentLogger(), ...deps });
}
