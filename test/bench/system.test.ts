import t from 'tap';
import { mkdtempSync, mkdirSync, writeFileSync, chmodSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { collectVersions, findExecutable, installArgs, machineInfo, missingPackages, parseNginxVersion, parseWrkVersion } from '../../bench/lib/system.js';
import { chooseRouter, expandTemplate } from '../../bench/lib/router-target.js';
import { nginxConfig } from '../../bench/lib/nginx.js';

t.test('findExecutable searches PATH and sbin folders', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sys-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const tool = join(dir, 'my-tool');
  writeFileSync(tool, '#!/bin/sh\n');
  chmodSync(tool, 0o755);
  writeFileSync(join(dir, 'not-exec'), '');
  t.equal(findExecutable('my-tool', `/nonexistent:${dir}`), tool);
  t.equal(findExecutable('not-exec', dir), undefined, 'must be executable');
  t.equal(findExecutable('surely-no-such-command-xyz', dir), undefined);
  t.equal(findExecutable(tool, ''), tool, 'a path is taken as is');
  t.equal(findExecutable(join(dir, 'not-exec'), ''), undefined);
  t.ok(findExecutable('sh', '') !== undefined || findExecutable('sh') !== undefined);
});

t.test('missingPackages: by command, else by dpkg', async (t) => {
  const commands = new Set(['nginx']);
  const installed = new Set(['redis-tools']);
  const probe = { hasCommand: (c: string) => commands.has(c), installed: (p: string) => installed.has(p) };
  t.same(missingPackages(['nginx-light', 'wrk', 'redis-tools', 'haproxy'], probe), ['wrk', 'haproxy']);
  t.same(missingPackages([], probe), []);
  t.same(missingPackages(['surely-not-a-debian-package-xyz']), ['surely-not-a-debian-package-xyz'], 'real dpkg probe');
});

t.test('install script arguments: the bench set plus --also for the rest', async (t) => {
  t.same(installArgs('/s.sh', ['nginx-light', 'wrk']), ['/s.sh', '--for', 'bench']);
  t.same(installArgs('/s.sh', ['wrk', 'haproxy', 'redis-server']), ['/s.sh', '--for', 'bench', '--also', 'haproxy', '--also', 'redis-server']);
});

t.test('version strings', async (t) => {
  t.equal(parseNginxVersion('nginx version: nginx/1.22.1\n'), '1.22.1');
  t.equal(parseNginxVersion(''), undefined);
  t.equal(parseWrkVersion('wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer\nUsage: ...'), 'debian/4.1.0-3+b2');
  t.equal(parseWrkVersion('wrk 4.2.0 [epoll] Copyright'), '4.2.0');
  t.equal(parseWrkVersion('command not found'), undefined);
});

t.test('machine and versions are described', async (t) => {
  const m = machineInfo();
  t.ok(m.cpus.count >= 1);
  t.type(m.cpus.model, 'string');
  t.ok(m.memoryBytes > 0);
  t.type(m.kernel, 'string');
  t.equal(m.loadavg.length, 3);
  const root = mkdtempSync(join(tmpdir(), 'sys-root-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  writeFileSync(join(root, 'package.json'), JSON.stringify({ version: '9.9.9' }));
  mkdirSync(join(root, 'node_modules', 'uWebSockets.js'), { recursive: true });
  writeFileSync(join(root, 'node_modules', 'uWebSockets.js', 'package.json'), JSON.stringify({ name: '@x/uws-fork', version: '1.2.3' }));
  mkdirSync(join(root, 'node_modules', 'undici'), { recursive: true });
  writeFileSync(join(root, 'node_modules', 'undici', 'package.json'), JSON.stringify({ name: 'undici', version: '7.0.0' }));
  const v = collectVersions(root);
  t.equal(v['node'], process.version);
  t.equal(v['switchyard'], '9.9.9');
  t.equal(v['uWS'], '@x/uws-fork@1.2.3', 'an npm alias names the real package');
  t.equal(v['undici'], '7.0.0');
  t.equal(v['piscina'], null, 'absent package');
});

t.test('router command: default serve, env template, placeholders', async (t) => {
  t.equal(expandTemplate('r --port {port} --w {backend}', { port: '1', backend: 'http://b:2' }), 'r --port 1 --w http://b:2');
  t.throws(() => expandTemplate('r --port {prot}', { port: '1' }), /unknown placeholder \{prot\}/);

  const root = mkdtempSync(join(tmpdir(), 'router-root-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const base = { root, host: '127.0.0.1', port: 4000, backendUrl: 'http://127.0.0.1:5000' };

  const missing = chooseRouter({ ...base, env: {} });
  t.equal(missing.ok, false);
  t.match(!missing.ok && missing.reason, /router not built yet \(dist\/src\/cli\/serve\.js is missing\)/);

  mkdirSync(join(root, 'dist', 'src', 'cli'), { recursive: true });
  writeFileSync(join(root, 'dist', 'src', 'cli', 'serve.js'), '');
  const def = chooseRouter({ ...base, env: {}, nodePath: '/usr/bin/node' });
  t.ok(def.ok);
  if (def.ok) {
    t.equal(def.router.command, '/usr/bin/node');
    t.same(def.router.args, [join(root, 'bin', 'switchyard.js'), 'serve', '--host', '127.0.0.1', '--port', '4000', '--worker-urls', 'http://127.0.0.1:5000', '--policy', 'round_robin', '--log-level', 'warn']);
    t.equal(def.router.readyPath, '/liveness');
    t.equal(def.router.label, 'switchyard');
  }

  const custom = chooseRouter({ ...base, env: { SWITCHYARD_BENCH_ROUTER_CMD: 'other-router --port {port} --host {host} --worker {backend}', SWITCHYARD_BENCH_ROUTER_READY_PATH: '/health', SWITCHYARD_BENCH_ROUTER_LABEL: 'other' } });
  t.ok(custom.ok);
  if (custom.ok) {
    t.equal(custom.router.command, '/bin/sh');
    t.same(custom.router.args, ['-c', 'other-router --port 4000 --host 127.0.0.1 --worker http://127.0.0.1:5000']);
    t.equal(custom.router.readyPath, '/health');
    t.equal(custom.router.label, 'other');
  }
  const typo = chooseRouter({ ...base, env: { SWITCHYARD_BENCH_ROUTER_CMD: 'r {prot}' } });
  t.equal(typo.ok, false);
});

t.test('nginx config holds the documented settings', async (t) => {
  const c = nginxConfig({ dir: '/tmp/x', listenPort: 8081, upstreamPort: 9001 });
  for (const needle of [
    'worker_processes 1;',
    'daemon off;',
    'pid /tmp/x/nginx.pid;',
    'error_log /tmp/x/error.log warn;',
    'access_log off;',
    'least_conn;',
    'server 127.0.0.1:9001;',
    'keepalive 64;',
    'listen 127.0.0.1:8081;',
    'proxy_pass http://backend;',
    'proxy_http_version 1.1;',
    'proxy_set_header Connection "";',
    'proxy_buffering off;',
    'keepalive_requests 1000000;',
  ]) {
    t.ok(c.includes(needle), needle);
  }
  t.match(nginxConfig({ dir: '/d', listenPort: 1, upstreamPort: 2, workerProcesses: 2, keepalive: 8 }), /worker_processes 2;[\s\S]*keepalive 8;/);
});
