/**
 * A router does not share its port with another process. uSockets sets SO_REUSEPORT by default, which let a
 * second router (or an old one never stopped) bind the same port and silently take a share of the
 * connections; now the second one fails to start, with a message that says why. The front-end threads of
 * one router still share their port with each other (they check first that no one else holds it).
 */
import t from 'tap';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startFixtureBackend } from '../helpers/fixture-backend.js';
import { startTestRouter } from '../helpers/router.js';
import { post } from '../helpers/client.js';

t.test('a second router on a port in use fails to start; single and threaded front ends alike', async (t) => {
  const backend = await startFixtureBackend(0, 'a');
  t.teardown(() => backend.close());
  for (const firstThreads of ['1', '2']) {
    // A fixed port, as in production: uSockets sets SO_REUSEADDR only then, so the port can be bound again
    // while connections of the closed router linger in TIME_WAIT (a port-0 listener's cannot).
    const port = String(await freeTcpPort());
    const first = await startTestRouter(['--worker-urls', backend.url, '--port', port, '--frontend-threads', firstThreads]);
    for (const secondThreads of ['1', '2']) {
      await t.rejects(
        startTestRouter(['--worker-urls', backend.url, '--port', port, '--frontend-threads', secondThreads]),
        /cannot listen on 127\.0\.0\.1:\d+: the port is in use/,
        `a router with ${secondThreads} front-end thread(s) next to one with ${firstThreads}`,
      );
    }
    // The first router still has its port to itself and serves.
    for (let i = 0; i < 4; i++) t.equal((await post(`${first.url}/generate`, { text: `still here ${i}` })).status, 200);
    await first.close(0);
    // Once it is gone the port is free again: the refusals above were about the port, nothing else.
    const again = await startTestRouter(['--worker-urls', backend.url, '--port', port, '--frontend-threads', firstThreads]);
    t.equal(again.port, first.port, 'the port is taken again after the first router closed');
    await again.close(0);
  }
});

t.test('the CLI says so in one line and exits 1 (no stack trace)', async (t) => {
  const backend = await startFixtureBackend(0, 'a');
  t.teardown(() => backend.close());
  const port = String(await freeTcpPort());
  const first = await startTestRouter(['--worker-urls', backend.url, '--port', port]);
  t.teardown(() => first.close(0));
  const bin = fileURLToPath(new URL('../../../bin/switchyard.js', import.meta.url));
  const proc = spawn(process.execPath, [bin, 'serve', '--host', '127.0.0.1', '--port', port, '--worker-urls', backend.url, '--prometheus-port', '0', '--log-level', 'error'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => proc.on('exit', resolve));
  t.equal(code, 1);
  t.equal(stderr, `switchyard serve: cannot listen on 127.0.0.1:${port}: the port is in use (another router or server on it?) or the address is not on this machine\n`);
});

/** A port nothing listens on right now (bound on 0 by a plain socket, never connected, closed). */
function freeTcpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
