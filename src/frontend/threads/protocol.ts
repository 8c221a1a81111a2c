/**
 * Messages between the main thread (the hub) and a front-end thread, over the worker's own port (FIFO in
 * each direction: a thread's report posted before its barrier acknowledgement is handled before it).
 */
import type { MirroredWorker } from '../../workers/registry.js';
import type { UpstreamClientKind } from '../../proxy/upstream/types.js';
import type { EncodedReport } from './report-codec.js';
import type { Decision, RequestFeatures, RouteKind } from '../../policies/types.js';
import type { RouterSettings } from '../context.js';
import type { SharedFrontendBuffers } from './shared.js';
import type { SharedLimitsState } from './shared-limits.js';
import type { AdmissionLimitOptions } from '../admission.js';
import type { AdmissionOptions } from '../../policies/admission.js';
import type { BreakerOptions } from '../../workers/breaker.js';
import type { PolicyFactoryOptions } from '../../policies/types.js';

/** What a front-end thread starts from (workerData). */
export interface ThreadInit {
  /** 1..N-1 (0 is the main thread). */
  readonly index: number;
  readonly host: string;
  readonly port: number;
  /** The main thread's control app on loopback: where non-data routes are forwarded. */
  readonly controlUrl: string;
  readonly settings: RouterSettings;
  /** --upstream-client: the data path's HTTP client for each worker. */
  readonly upstreamClient: UpstreamClientKind;
  readonly table: SharedArrayBuffer;
  readonly buffers: SharedFrontendBuffers;
  readonly members: readonly MirroredWorker[];
  /** Inline: the thread runs its own copy of this stateless policy; else decisions go to the main thread. */
  readonly policy: { readonly name: string; readonly inline: boolean; readonly options: PolicyFactoryOptions };
  readonly admission: AdmissionOptions | undefined;
  readonly breakers: BreakerOptions | undefined;
  readonly limits: { readonly state: SharedLimitsState; readonly options: AdmissionLimitOptions } | undefined;
  readonly logLevel: string;
  readonly logFile: string | undefined;
  /** performance.timeOrigin of the main thread: stamps are shifted to the main thread's clock before they cross. */
  readonly mainTimeOrigin: number;
  /** Events are handed over at most this often (ms). */
  readonly reportMs: number;
  /** The main thread has a progress hook (the request tracker): the thread reports first bytes. */
  readonly hasProgress: boolean;
}

/** A decided attempt as the hub's hooks need it (request text left out: no hook reads it). */
export interface DecidedView {
  readonly requestId: string;
  readonly route: RouteKind;
  readonly features: RequestFeatures;
  readonly traceparent: string;
  readonly timestamp: number;
  readonly arrivedAt: number;
  readonly decidedAt: number;
  readonly attempts: number;
  readonly decision: Decision | undefined;
  readonly worker: { readonly slot: number; readonly generation: number; readonly url: string; readonly nodeId: number } | undefined;
}

/** Everything a thread's data path reported in one hand-over (report-codec.ts). */
export type ThreadReport = { readonly t: 'report' } & EncodedReport;

export type ToMain =
  | { readonly t: 'ready'; readonly port: number }
  | { readonly t: 'listen-failed'; readonly error: string }
  | ThreadReport
  | { readonly t: 'decide'; readonly requests: { id: number; req: RequestFeatures }[] }
  | { readonly t: 'barrier-ack'; readonly id: number }
  | { readonly t: 'barrier-request'; readonly id: number }
  | { readonly t: 'closed'; readonly unfinished: number };

export type ToThread =
  | { readonly t: 'workers'; readonly members: readonly MirroredWorker[] }
  | { readonly t: 'decided'; readonly replies: (number | Decision | null)[] }
  | { readonly t: 'barrier'; readonly id: number }
  | { readonly t: 'barrier-done'; readonly id: number }
  | { readonly t: 'shutdown'; readonly graceMs: number }
  /** Tests: throw from the thread's event loop (a crash). */
  | { readonly t: 'crash' };
