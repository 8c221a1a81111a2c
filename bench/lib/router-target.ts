/**
 * Which router the end-to-end comparison starts: Switchyard's own `serve` by default, or any command
 * given in SWITCHYARD_BENCH_ROUTER_CMD (run through /bin/sh) so the same benchmark can measure another
 * router. Placeholders in the command: {host}, {port}, {backend} (the backend's URL).
 *
 *   SWITCHYARD_BENCH_ROUTER_CMD          command template (default: node bin/switchyard.js serve ...)
 *   SWITCHYARD_BENCH_ROUTER_READY_PATH   path polled until it answers 200 (default /liveness)
 *   SWITCHYARD_BENCH_ROUTER_LABEL        name used in notes (default "switchyard", or "custom" for a command)
 *   SWITCHYARD_BENCH_FRONTEND_THREADS    Switchyard's --frontend-threads (default: the router's default, 1)
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export interface RouterCommand {
  readonly label: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly readyPath: string;
  /** The command as one line, for logs and notes. */
  readonly display: string;
}

export type RouterChoice = { readonly ok: true; readonly router: RouterCommand } | { readonly ok: false; readonly reason: string };

/** Replace {name} placeholders; unknown placeholders are an error (a typo would start the wrong thing). */
export function expandTemplate(template: string, vars: Readonly<Record<string, string>>): string {
  return template.replace(/\{([a-z_]+)\}/g, (whole, key: string) => {
    const v = vars[key];
    if (v === undefined) throw new Error(`unknown placeholder ${whole} in SWITCHYARD_BENCH_ROUTER_CMD (known: ${Object.keys(vars).map((k) => `{${k}}`).join(', ')})`);
    return v;
  });
}

export function chooseRouter(options: { env: NodeJS.ProcessEnv; root: string; host: string; port: number; backendUrl: string; nodePath?: string }): RouterChoice {
  const readyPath = options.env['SWITCHYARD_BENCH_ROUTER_READY_PATH'] || '/liveness';
  const template = options.env['SWITCHYARD_BENCH_ROUTER_CMD'];
  if (template !== undefined && template.trim() !== '') {
    let line: string;
    try {
      line = expandTemplate(template, { host: options.host, port: String(options.port), backend: options.backendUrl });
    } catch (err) {
      return { ok: false, reason: (err as Error).message };
    }
    return { ok: true, router: { label: options.env['SWITCHYARD_BENCH_ROUTER_LABEL'] || 'custom', command: '/bin/sh', args: ['-c', line], readyPath, display: line } };
  }
  const serve = join(options.root, 'dist', 'src', 'cli', 'serve.js');
  if (!existsSync(serve)) {
    return { ok: false, reason: 'router not built yet (dist/src/cli/serve.js is missing); set SWITCHYARD_BENCH_ROUTER_CMD to measure another router' };
  }
  const threads = options.env['SWITCHYARD_BENCH_FRONTEND_THREADS'];
  if (threads !== undefined && threads !== '' && !/^[1-9][0-9]?$/.test(threads)) {
    return { ok: false, reason: `SWITCHYARD_BENCH_FRONTEND_THREADS must be an integer from 1 to 64, got '${threads}'` };
  }
  const args = [
    join(options.root, 'bin', 'switchyard.js'),
    'serve',
    '--host', options.host,
    '--port', String(options.port),
    '--worker-urls', options.backendUrl,
    '--policy', 'round_robin',
    '--log-level', 'warn',
    ...(threads !== undefined && threads !== '' ? ['--frontend-threads', threads] : []),
  ];
  return {
    ok: true,
    router: {
      label: options.env['SWITCHYARD_BENCH_ROUTER_LABEL'] || 'switchyard',
      command: options.nodePath ?? process.execPath,
      args,
      readyPath,
      display: `node bin/switchyard.js ${args.slice(1).join(' ')}`,
    },
  };
}
