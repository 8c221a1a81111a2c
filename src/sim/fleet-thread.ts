/**
 * Worker-thread entry of startSimFleetInThread: hosts a fleet in this thread's event loop and answers
 * the caller's stats / setFaults / close messages. A crash in "process" mode is reported to the
 * caller (process.exit here would only end this thread, and with open listen sockets that aborts).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { startSimFleet, type FromFleetThread, type SimFleetOptions, type ToFleetThread } from './fleet.js';

const port = parentPort;
if (port === null) throw new Error('fleet-thread.js must run in a worker thread');

function send(msg: FromFleetThread): void {
  port!.postMessage(msg);
}

try {
  const opts = workerData as SimFleetOptions;
  const fleet = await startSimFleet({
    ...opts,
    onCrash: () => send({ type: 'crash', server: -1 }),
  });
  port.on('message', (msg: ToFleetThread) => {
    void (async () => {
      try {
        switch (msg.type) {
          case 'stats': {
            const server = fleet.servers[msg.server];
            if (server === undefined) throw new Error(`no server ${msg.server}`);
            send({ type: 'reply', id: msg.id, ok: true, value: server.stats() });
            break;
          }
          case 'setFaults': {
            const server = fleet.servers[msg.server];
            if (server === undefined) throw new Error(`no server ${msg.server}`);
            send({ type: 'reply', id: msg.id, ok: true, value: server.setFaults(msg.patch) });
            break;
          }
          case 'close':
            await fleet.close();
            send({ type: 'reply', id: msg.id, ok: true, value: null });
            port.close();
            break;
        }
      } catch (err) {
        send({ type: 'reply', id: msg.id, ok: false, message: err instanceof Error ? err.message : String(err) });
      }
    })();
  });
  send({ type: 'ready', urls: fleet.urls, ports: fleet.ports, gpuIds: fleet.servers.map((s) => s.gpuId) });
} catch (err) {
  send({ type: 'error', message: err instanceof Error ? err.message : String(err) });
}
