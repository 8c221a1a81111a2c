import t from 'tap';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, httpRequest, liveCount, runToEnd, start, waitForHttp, waitForLine } from '../../bench/lib/processes.js';

const PROCESSES_JS = new URL('../../bench/lib/processes.js', import.meta.url).href;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function gone(pid: number, withinMs = 3000): Promise<boolean> {
  const t0 = Date.now();
  while (Date.now() - t0 < withinMs) {
    if (!alive(pid)) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return !alive(pid);
}

t.test('freePort gives a port that can be bound', async (t) => {
  const port = await freePort();
  t.ok(port > 0 && port < 65536);
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  t.equal((server.address() as AddressInfo).port, port);
  server.close();
});

t.test('stop() kills the whole process group, grandchildren included', async (t) => {
  const before = liveCount();
  const proc = start('shell', '/bin/sh', ['-c', 'sleep 60 & echo "child $!"; wait']);
  t.equal(liveCount(), before + 1);
  const m = await waitForLine(proc, /^child (\d+)$/, 5000);
  const grandchild = Number(m[1]);
  t.ok(alive(grandchild), 'grandchild running');
  await proc.stop(1000);
  t.ok(proc.hasExited());
  t.ok(await gone(grandchild), 'grandchild killed with the group');
  t.equal(liveCount(), before, 'no longer tracked');
  await proc.stop(); // idempotent
});

t.test('stop() escalates to SIGKILL when SIGTERM is ignored', async (t) => {
  const proc = start('stubborn', '/bin/sh', ['-c', "trap '' TERM; echo ready; while :; do sleep 0.1; done"]);
  await waitForLine(proc, /^ready$/, 5000);
  const t0 = Date.now();
  await proc.stop(300);
  t.ok(proc.hasExited());
  t.equal((await proc.exited).signal, 'SIGKILL');
  t.ok(Date.now() - t0 < 5000);
});

t.test('waitForLine fails on exit and on timeout, with the output', async (t) => {
  const quits = start('quitter', '/bin/sh', ['-c', 'echo something else; echo oops >&2; exit 3']);
  await t.rejects(waitForLine(quits, /^ready$/, 5000), /quitter exited \(3\) before it was ready; output: something else\s+oops/);
  const silent = start('silent', '/bin/sh', ['-c', 'sleep 30']);
  await t.rejects(waitForLine(silent, /^ready$/, 100), /silent printed no line matching/);
  await silent.stop();
  await quits.stop();
});

t.test('waitForHttp polls until the expected status', async (t) => {
  let hits = 0;
  const server = createHttpServer((_req, res) => {
    hits++;
    res.writeHead(hits < 3 ? 503 : 200).end('ok');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/liveness`;
  await waitForHttp(url, { timeoutMs: 5000, intervalMs: 10 });
  t.equal(hits, 3);
  const r = await httpRequest(url, { method: 'POST', body: '{"a":1}', headers: { 'content-type': 'application/json' } });
  t.same(r, { status: 200, body: 'ok' });

  const port = await freePort();
  await t.rejects(waitForHttp(`http://127.0.0.1:${port}/`, { timeoutMs: 200, intervalMs: 20 }), /did not answer 200 within 200 ms \(last: .*ECONNREFUSED/);
  const dead = start('dead', '/bin/sh', ['-c', 'echo bye; exit 1']);
  await dead.exited;
  await t.rejects(waitForHttp(`http://127.0.0.1:${port}/`, { timeoutMs: 5000, proc: dead }), /dead exited before .* answered 200; output: bye/);
  await dead.stop();
});

t.test('runToEnd captures output and exit status', async (t) => {
  const r = await runToEnd('echo', '/bin/sh', ['-c', 'echo out; echo err >&2; exit 4']);
  t.same(r, { exit: { code: 4, signal: null }, stdout: 'out\n', stderr: 'err\n' });
  const missing = await runToEnd('missing', '/surely/not/a/command', []);
  t.equal(missing.exit.code, -1);
  t.match(missing.stderr, /spawn error.*ENOENT/);
});

/** Run a small script that uses processes.js in a fresh Node process. */
function script(dir: string, body: string): Promise<{ code: number | null; stdout: string; child: ReturnType<typeof spawn> }> {
  const file = join(dir, `s${Math.random().toString(36).slice(2)}.mjs`);
  writeFileSync(file, `import * as p from ${JSON.stringify(PROCESSES_JS)};\n${body}`);
  const child = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, child })));
}

t.test('on exit and on SIGINT, tracked children die and temp folders go', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'proc-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));

  const scratch = join(dir, 'scratch-exit');
  const exitRun = await script(
    dir,
    `import { mkdirSync } from 'node:fs';
p.installCleanupHandlers();
mkdirSync(${JSON.stringify(scratch)});
p.removeOnExit(${JSON.stringify(scratch)});
const s = p.start('sleeper', '/bin/sh', ['-c', 'sleep 60']);
console.log(s.pid);
setTimeout(() => process.exit(0), 100);`,
  );
  t.equal(exitRun.code, 0);
  t.ok(await gone(Number(exitRun.stdout.trim())), 'child killed on exit');
  t.notOk(existsSync(scratch), 'temp folder removed on exit');

  const file = join(dir, 'sigint.mjs');
  writeFileSync(
    file,
    `import * as p from ${JSON.stringify(PROCESSES_JS)};
p.installCleanupHandlers();
const s = p.start('sleeper', '/bin/sh', ['-c', 'sleep 60']);
console.log(s.pid);
setInterval(() => {}, 1000);`,
  );
  const child = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'inherit'] });
  const pid = await new Promise<number>((resolve) => child.stdout.setEncoding('utf8').once('data', (d: string) => resolve(Number(d.trim()))));
  t.ok(alive(pid));
  const code = await new Promise<number | null>((resolve) => {
    child.on('exit', (c) => resolve(c));
    child.kill('SIGINT');
  });
  t.equal(code, 130);
  t.ok(await gone(pid), 'child killed on SIGINT');
});
