/**
 * A fleet of K simulated SGLang servers on consecutive ports, in this thread (startSimFleet) or in a
 * worker thread of its own (startSimFleetInThread, so the sim never competes with the caller's event
 * loop). Server i reports GPU id baseGpuId + i and uses seed + i.
 */
import { Worker } from 'node:worker_threads';
import { resolveSimOptions, type SimFaults, type SimOptions } from './options.js';
import { SimServer, type SimServerHandle, type SimStats } from './server.js';

export interface SimFleetOptions extends Partial<SimOptions> {
  /** Number of servers (default 1). */
  count?: number;
  /** Listen host (default 127.0.0.1). */
  host?: string;
  /** First port; server i listens on port + i. 0 (the default here) = ephemeral ports. */
  port?: number;
  /** What crash-mode "process" does (default: exit the process with code 1). */
  onCrash?: () => void;
}

export interface SimFleet<S extends SimServerHandle = SimServerHandle> {
  readonly urls: string[];
  readonly ports: number[];
  readonly servers: S[];
  /** Closes every listen socket and connection (and, for a thread fleet, ends the thread). */
  close(): Promise<void>;
}

function splitFleetOptions(opts: SimFleetOptions): { count: number; host: string; port: number; onCrash: (() => void) | undefined; sim: Partial<SimOptions> } {
  const { count = 1, host = '127.0.0.1', port = 0, onCrash, ...sim } = opts;
  if (!Number.isInteger(count) || count < 1) throw new Error(`count must be an integer >= 1, got ${count}`);
  if (!Number.isInteger(port) || port < 0 || port + (port === 0 ? 0 : count - 1) > 65535) throw new Error(`port must be 0 or a port with room for ${count} servers, got ${port}`);
  return { count, host, port, onCrash, sim };
}

/** Starts K servers in this thread. */
export async function startSimFleet(opts: SimFleetOptions = {}): Promise<SimFleet<SimServer>> {
  const { count, host, port, onCrash, sim } = splitFleetOptions(opts);
  const resolved = resolveSimOptions(sim);
  const servers: SimServer[] = [];
  try {
    for (let i = 0; i < count; i++) {
      servers.push(await SimServer.start({ opts: resolved, index: i, host, port: port === 0 ? 0 : port + i, ...(onCrash === undefined ? {} : { onCrash }) }));
    }
  } catch (err) {
    await Promise.all(servers.map((s) => s.close()));
    throw err;
  }
  return {
    urls: servers.map((s) => s.url),
    ports: servers.map((s) => s.port),
    servers,
    close: async () => {
      await Promise.all(servers.map((s) => s.close()));
    },
  };
}

// ------------------------------------------------------------------ thread fleet

/** Messages between the caller and the fleet thread (src/sim/fleet-thread.ts). */
export type ToFleetThread =
  | { type: 'stats'; id: number; server: number }
  | { type: 'setFaults'; id: number; server: number; patch: Partial<SimFaults> }
  | { type: 'close'; id: number };

export type FromFleetThread =
  | { type: 'ready'; urls: string[]; ports: number[]; gpuIds: number[] }
  | { type: 'error'; message: string }
  | { type: 'reply'; id: number; ok: true; value: unknown }
  | { type: 'reply'; id: number; ok: false; message: string }
  | { type: 'crash'; server: number };

class ThreadServerHandle implements SimServerHandle {
  constructor(
    private readonly fleet: ThreadFleetClient,
    private readonly index: number,
    readonly url: string,
    readonly port: number,
    readonly gpuId: number,
  ) {}

  stats(): Promise<SimStats> {
    return this.fleet.call({ type: 'stats', server: this.index }) as Promise<SimStats>;
  }

  setFaults(patch: Partial<SimFaults>): Promise<SimFaults> {
    return this.fleet.call({ type: 'setFaults', server: this.index, patch }) as Promise<SimFaults>;
  }
}

type CallMessage = { type: 'stats'; server: number } | { type: 'setFaults'; server: number; patch: Partial<SimFaults> } | { type: 'close' };

class ThreadFleetClient {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private exited = false;

  constructor(readonly worker: Worker) {
    worker.on('message', (msg: FromFleetThread) => {
      if (msg.type !== 'reply') return;
      const p = this.pending.get(msg.id);
      if (p === undefined) return;
      this.pending.delete(msg.id);
      if (msg.ok) p.resolve(msg.value);
      else p.reject(new Error(msg.message));
    });
    worker.on('exit', () => {
      this.exited = true;
      for (const p of this.pending.values()) p.reject(new Error('the sim fleet thread exited'));
      this.pending.clear();
    });
  }

  call(msg: CallMessage): Promise<unknown> {
    if (this.exited) return Promise.reject(new Error('the sim fleet thread exited'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...msg, id } as ToFleetThread);
    });
  }

  get hasExited(): boolean {
    return this.exited;
  }
}

/**
 * Starts K servers in a dedicated worker thread. close() closes the listen sockets inside the thread
 * before the thread ends (terminating a thread that holds a listen socket aborts the process).
 */
export async function startSimFleetInThread(opts: SimFleetOptions = {}): Promise<SimFleet<SimServerHandle>> {
  const { count, host, port, onCrash, sim } = splitFleetOptions(opts);
  // Validate here so option errors surface in the caller, not as a thread failure.
  const resolved = resolveSimOptions(sim);
  const worker = new Worker(new URL('./fleet-thread.js', import.meta.url), {
    workerData: { count, host, port, ...resolved },
  });
  const client = new ThreadFleetClient(worker);
  const ready = await new Promise<Extract<FromFleetThread, { type: 'ready' }>>((resolve, reject) => {
    const onMessage = (msg: FromFleetThread): void => {
      if (msg.type === 'ready') {
        cleanup();
        resolve(msg);
      } else if (msg.type === 'error') {
        cleanup();
        reject(new Error(msg.message));
      }
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const onExit = (code: number): void => {
      cleanup();
      reject(new Error(`the sim fleet thread exited with code ${code} before it was ready`));
    };
    const cleanup = (): void => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    };
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
  }).catch(async (err: unknown) => {
    await worker.terminate();
    throw err;
  });
  worker.on('message', (msg: FromFleetThread) => {
    if (msg.type !== 'crash') return;
    if (onCrash !== undefined) onCrash();
    else {
      process.stderr.write(`switchyard sim: server ${msg.server} reached crash-after, exiting with code 1\n`);
      process.exit(1);
    }
  });
  const servers = ready.urls.map((url, i) => new ThreadServerHandle(client, i, url, ready.ports[i] as number, ready.gpuIds[i] as number));
  let closing: Promise<void> | undefined;
  return {
    urls: ready.urls,
    ports: ready.ports,
    servers,
    close: () => {
      closing ??= (async () => {
        if (!client.hasExited) {
          await client.call({ type: 'close' }).catch(() => undefined);
          await worker.terminate();
        }
      })();
      return closing;
    },
  };
}
