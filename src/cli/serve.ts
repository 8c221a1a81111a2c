/** `switchyard serve`: the router. Runs until SIGINT/SIGTERM, then shuts down gracefully. */
import { parseRouterOptions } from '../config/router-options.js';
import { startRouter } from '../router.js';

export async function run(argv: string[]): Promise<number | void> {
  const opts = parseRouterOptions(argv);
  const router = await startRouter(opts);
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      router.ctx.log.info({ event: 'router.stopping', signal }, `received ${signal}, draining`);
      void router.close().then(resolve, resolve);
    };
    const onInt = (): void => stop('SIGINT');
    const onTerm = (): void => stop('SIGTERM');
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
  });
  return 0;
}
