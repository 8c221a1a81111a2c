/**
 * What the benchmark needs to know about the machine: where executables are, which Debian packages are
 * missing (and installing them through scripts/install-system-deps.sh), the machine's description and
 * the versions of everything measured, for the JSON result.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { cpus, totalmem, platform, release, arch, loadavg } from 'node:os';
import { delimiter, join } from 'node:path';

/** sbin folders are searched too: nginx lives in /usr/sbin, which a non-root PATH often lacks. */
const EXTRA_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/** Absolute path of an executable on PATH (or an sbin folder), or undefined. */
export function findExecutable(name: string, pathEnv = process.env['PATH'] ?? ''): string | undefined {
  if (name.includes('/')) return isExecutable(name) ? name : undefined;
  const dirs = [...pathEnv.split(delimiter).filter((d) => d !== ''), ...EXTRA_DIRS];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The command a Debian package provides, where a package is recognised by its command (nginx-full also satisfies nginx-light). */
export const PACKAGE_COMMANDS: Readonly<Record<string, string>> = {
  'nginx-light': 'nginx',
  'nginx-full': 'nginx',
  'nginx-extras': 'nginx',
  nginx: 'nginx',
  wrk: 'wrk',
  haproxy: 'haproxy',
  'redis-server': 'redis-server',
  prometheus: 'prometheus',
  chromium: 'chromium',
  'chromium-driver': 'chromedriver',
};

function dpkgInstalled(pkg: string): boolean {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' });
  return r.status === 0 && /install ok installed/.test(r.stdout);
}

/** The packages of `needs` not present: neither their command is found nor dpkg lists them installed. */
export function missingPackages(needs: readonly string[], probe: { hasCommand?: (c: string) => boolean; installed?: (p: string) => boolean } = {}): string[] {
  const hasCommand = probe.hasCommand ?? ((c: string) => findExecutable(c) !== undefined);
  const installed = probe.installed ?? dpkgInstalled;
  return needs.filter((pkg) => {
    const command = PACKAGE_COMMANDS[pkg];
    if (command !== undefined && hasCommand(command)) return false;
    return !installed(pkg);
  });
}

/** Packages scripts/install-system-deps.sh installs for `--for bench`; others are passed with --also. */
const SCRIPT_BENCH_SET = new Set(['nginx-light', 'wrk']);

export function installArgs(scriptPath: string, packages: readonly string[]): string[] {
  const args = [scriptPath, '--for', 'bench'];
  for (const p of packages) if (!SCRIPT_BENCH_SET.has(p)) args.push('--also', p);
  return args;
}

/** Run the install script for `packages`; returns its combined output tail on failure. */
export function installPackages(scriptPath: string, packages: readonly string[]): { ok: boolean; output: string } {
  const r = spawnSync('bash', installArgs(scriptPath, packages), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 15 * 60_000 });
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}${r.error === undefined ? '' : r.error.message}`.trim();
  return { ok: r.status === 0, output: output.slice(-2000) };
}

export interface MachineInfo {
  readonly cpus: { readonly model: string; readonly count: number };
  readonly memoryBytes: number;
  readonly os: string;
  readonly platform: string;
  readonly arch: string;
  readonly kernel: string;
  /** 1/5/15-minute load averages when the run started: a busy machine explains noisy figures. */
  readonly loadavg: readonly number[];
}

export function machineInfo(): MachineInfo {
  const list = cpus();
  return {
    cpus: { model: list[0]?.model.trim() ?? 'unknown', count: list.length },
    memoryBytes: totalmem(),
    os: osName(),
    platform: platform(),
    arch: arch(),
    kernel: release(),
    loadavg: loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

function osName(): string {
  try {
    const m = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readFileSync('/etc/os-release', 'utf8'));
    if (m !== null) return m[1] as string;
  } catch {
    /* not Linux, or no os-release */
  }
  return `${platform()} ${release()}`;
}

/** "nginx version: nginx/1.22.1" -> "1.22.1". */
export function parseNginxVersion(text: string): string | undefined {
  return /nginx\/(\S+)/.exec(text)?.[1];
}

/** "wrk debian/4.1.0-3+b2 [epoll] Copyright ..." or "wrk 4.2.0 [epoll] ..." -> "debian/4.1.0-3+b2" / "4.2.0". */
export function parseWrkVersion(text: string): string | undefined {
  return /^wrk\s+(\S+)/m.exec(text)?.[1];
}

function commandOutput(command: string | undefined, args: string[]): string {
  if (command === undefined) return '';
  const r = spawnSync(command, args, { encoding: 'utf8', timeout: 10_000 });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`;
}

function packageVersion(root: string, name: string): string | null {
  try {
    const pkg = JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')) as { name?: string; version?: string };
    if (pkg.version === undefined) return null;
    // uWebSockets.js is an npm alias: say which package really sits behind the name.
    return pkg.name !== undefined && pkg.name !== name ? `${pkg.name}@${pkg.version}` : pkg.version;
  } catch {
    return null;
  }
}

export type Versions = Record<string, string | null>;

export function collectVersions(root: string): Versions {
  let switchyard: string | null = null;
  try {
    switchyard = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version?: string }).version ?? null;
  } catch {
    /* no package.json */
  }
  return {
    node: process.version,
    switchyard,
    uWS: packageVersion(root, 'uWebSockets.js'),
    undici: packageVersion(root, 'undici'),
    piscina: packageVersion(root, 'piscina'),
    nginx: parseNginxVersion(commandOutput(findExecutable('nginx'), ['-v'])) ?? null,
    wrk: parseWrkVersion(commandOutput(findExecutable('wrk'), ['-v'])) ?? null,
  };
}

export function gitCommit(root: string): { commit: string | null; dirty: boolean | null } {
  const head = spawnSync('git', ['rev-parse', 'HEAD'], { cwd: root, encoding: 'utf8' });
  if (head.status !== 0) return { commit: null, dirty: null };
  const status = spawnSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: root, encoding: 'utf8' });
  return { commit: head.stdout.trim(), dirty: status.status === 0 ? status.stdout.trim() !== '' : null };
}
