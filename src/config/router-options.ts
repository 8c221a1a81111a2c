/**
 * `switchyard serve` flags: SGLang router's names and defaults (launch_router), plus ours where marked.
 * See ../shared/reference/sgl-router.md. Flags that belong to later features are parsed and validated here
 * so that scripts written for sgl-router keep working; docs/configuration.md says what each one does.
 */
import { parseOptions, type OptionSpec } from './options.js';

const G_SERVER = 'Server';
const G_POLICY = 'Routing policy';
const G_WORKERS = 'Workers and health';
const G_LIMITS = 'Limits and timeouts';
const G_RETRY = 'Retries and circuit breaker';
const G_OBS = 'Observability';
const G_SIM = 'Embedded simulated fleet (when no --worker-urls)';
const G_CLUSTER = 'Replicas sharing state through Redis (docs/deployment.md; off without --redis-url)';
const G_ADMISSION = 'Size-aware admission (seed 002; on when --worker-groups names a group)';

export const POLICY_NAMES = ['random', 'round_robin', 'power_of_two', 'cache_aware', 'shortest_queue', 'marginal_utility'] as const;

export const ROUTER_OPTION_SPECS = [
  // server
  { name: 'host', type: 'string', default: '0.0.0.0', help: 'address to listen on', group: G_SERVER },
  { name: 'port', type: 'integer', default: 30000, min: 0, max: 65535, help: 'port to listen on (0 = ephemeral)', group: G_SERVER },
  { name: 'api-key', type: 'string', help: 'require `Authorization: Bearer KEY` on data routes', group: G_SERVER },
  { name: 'cors-allowed-origins', type: 'list', default: [], help: 'origins allowed by CORS (empty = CORS off)', group: G_SERVER },
  { name: 'frontend-threads', type: 'integer', default: 1, min: 1, max: 64, help: 'front ends serving the port: the main thread plus N-1 worker threads, each its own uWS app on the same host:port (SO_REUSEPORT) (ours; docs/performance.md for when more than 1 helps)', group: G_SERVER, metavar: 'N' },
  { name: 'request-id-headers', type: 'list', default: ['x-request-id', 'x-correlation-id', 'x-trace-id', 'request-id'], help: 'headers read, in order, for the request id', group: G_SERVER },
  // policy
  { name: 'policy', type: 'string', default: 'cache_aware', help: 'routing policy', group: G_POLICY, metavar: 'NAME' },
  { name: 'cache-threshold', type: 'number', default: 0.3, min: 0, max: 1, help: 'cache_aware: min match rate to follow the cache', group: G_POLICY },
  { name: 'balance-abs-threshold', type: 'integer', default: 64, min: 0, help: 'cache_aware: load gap that counts as imbalanced', group: G_POLICY },
  { name: 'balance-rel-threshold', type: 'number', default: 1.5, min: 1, help: 'cache_aware: load ratio that counts as imbalanced', group: G_POLICY },
  { name: 'eviction-interval-secs', type: 'integer', default: 120, min: 1, help: 'cache_aware: tree eviction interval', group: G_POLICY },
  { name: 'max-tree-size', type: 'integer', default: 2 ** 26, min: 1, help: 'cache_aware: characters kept per worker', group: G_POLICY },
  { name: 'policy-shards', type: 'integer', default: 1, min: 1, max: 64, help: 'policy actors sharing the tree by prefix hash (ours)', group: G_POLICY },
  { name: 'policy-module', type: 'string', help: 'load a user policy plugin from this file (ours)', group: G_POLICY, metavar: 'FILE' },
  { name: 'balance-keep-locality', type: 'boolean', default: true, help: 'cache_aware: when imbalanced, keep the longest match among workers within --balance-abs-threshold of the least loaded (ours; --no-balance-keep-locality = SGLang exact)', group: G_POLICY },
  { name: 'cache-tie-tolerance', type: 'number', default: 0.01, min: 0, max: 0.99, help: 'cache_aware: matches within this fraction of the text of the longest one are ties, the least loaded wins (ours; 0 = equal lengths only)', group: G_POLICY },
  { name: 'hot-prefix-factor', type: 'number', default: 1.1, min: 0, help: 'cache_aware: replicate a prefix to the least-loaded worker when its share of recent requests x workers > its holders x this (ours; 0 = off, SGLang exact; else >= 1)', group: G_POLICY },
  { name: 'load-report-max-age-secs', type: 'number', default: 10, min: 0, help: 'shortest_queue/power_of_two: ignore /get_load reports older than this (ours)', group: G_POLICY },
  { name: 'mu-window-size', type: 'integer', default: 20, min: 2, max: 10000, help: 'marginal_utility: finished requests kept per worker', group: G_POLICY },
  { name: 'mu-min-history', type: 'integer', default: 10, min: 2, help: 'marginal_utility: samples needed for a trend', group: G_POLICY },
  { name: 'mu-load-guard', type: 'integer', default: 2, min: -1, help: 'marginal_utility: in-flight requests above the minimum a worker may have and still compete on score (-1 = off, seed exact) (ours)', group: G_POLICY },
  { name: 'decisions-csv', type: 'string', help: 'marginal_utility: write every decision and completion to this CSV (seed 003 columns)', group: G_POLICY, metavar: 'PATH' },
  { name: 'seed', type: 'integer', help: 'seed for randomised policies (default: random)', group: G_POLICY },
  { name: 'dp-aware', type: 'boolean', default: false, help: 'route to data-parallel ranks of each worker', group: G_POLICY },
  // workers
  { name: 'worker-urls', type: 'list', default: [], help: 'worker base URLs (none: start an embedded simulated fleet)', group: G_WORKERS, metavar: 'URL...' },
  { name: 'worker-node-ids', type: 'list', default: [], help: 'node/GPU id per worker URL, in order (default: by port order)', group: G_WORKERS },
  { name: 'worker-node-map', type: 'string', help: 'node/GPU id by worker URL: JSON {"http://host:port": id} or URL=ID pairs (config file: an object)', group: G_WORKERS, metavar: 'MAP' },
  { name: 'worker-startup-timeout-secs', type: 'integer', default: 600, min: 0, help: 'how long to wait for workers at start', group: G_WORKERS },
  { name: 'health-failure-threshold', type: 'integer', default: 3, min: 1, help: 'consecutive failed checks before a worker is unhealthy', group: G_WORKERS },
  { name: 'health-success-threshold', type: 'integer', default: 2, min: 1, help: 'consecutive good checks before it is healthy again', group: G_WORKERS },
  { name: 'health-check-timeout-secs', type: 'number', default: 5, min: 0.01, help: 'timeout of one health check', group: G_WORKERS },
  { name: 'health-check-interval-secs', type: 'number', default: 60, min: 0.01, help: 'interval between health checks', group: G_WORKERS },
  { name: 'health-check-endpoint', type: 'string', default: '/health', help: 'worker path probed by health checks', group: G_WORKERS },
  { name: 'load-poll-interval-secs', type: 'number', default: 1, min: 0, help: 'interval of /get_load polling (0 = off) (ours)', group: G_WORKERS },
  { name: 'upstream-client', type: 'string', default: 'fast', choices: ['fast', 'undici'], help: 'HTTP/1.1 client for proxied requests: fast (ours, src/proxy/upstream; https workers use undici) or undici (ours)', group: G_WORKERS, metavar: 'NAME' },
  { name: 'allowed-worker-hosts', type: 'list', default: ['127.0.0.1', 'localhost', '::1'], help: 'hosts /add_worker may add (ours; * = any)', group: G_WORKERS },
  // limits
  { name: 'max-payload-size', type: 'integer', default: 512 * 1024 * 1024, min: 1, help: 'largest request body in bytes', group: G_LIMITS },
  { name: 'request-body-timeout-secs', type: 'number', default: 10, min: 0.001, help: 'a request body must arrive within this plus its length at --request-body-min-rate (408 after) (ours)', group: G_LIMITS },
  { name: 'request-body-min-rate', type: 'integer', default: 16384, min: 1, help: 'slowest accepted body upload in bytes per second (slowloris guard) (ours)', group: G_LIMITS },
  { name: 'max-request-headers', type: 'integer', default: 40, min: 1, help: 'most request headers on data routes (431 beyond; uWS itself never passes on more than 48) (ours)', group: G_LIMITS },
  { name: 'max-request-header-bytes', type: 'integer', default: 32768, min: 256, help: 'largest total size of request headers on data routes (431 beyond) (ours)', group: G_LIMITS },
  { name: 'request-timeout-secs', type: 'number', default: 1800, min: 0.001, help: 'upstream request timeout', group: G_LIMITS },
  { name: 'max-concurrent-requests', type: 'integer', default: -1, min: -1, help: 'concurrency limit (-1 = off)', group: G_LIMITS },
  { name: 'queue-size', type: 'integer', default: 100, min: 0, help: 'requests waiting for a slot or a rate token beyond the limits (429 when full; 0 = refuse at once)', group: G_LIMITS },
  { name: 'queue-timeout-secs', type: 'number', default: 60, min: 0, help: 'longest wait in the queue (408 after)', group: G_LIMITS },
  { name: 'rate-limit-tokens-per-second', type: 'integer', help: 'request rate limit: a token bucket of one token per request, refilled at this rate, capacity --max-concurrent-requests (else one second); requests over it wait in the queue', group: G_LIMITS },
  { name: 'shutdown-grace-period-secs', type: 'number', default: 180, min: 0, help: 'time in-flight requests get on SIGTERM', group: G_LIMITS },
  // retries / breaker
  { name: 'retry-max-retries', type: 'integer', default: 5, min: 0, help: 'retries per request', group: G_RETRY },
  { name: 'retry-initial-backoff-ms', type: 'integer', default: 50, min: 0, help: 'first backoff', group: G_RETRY },
  { name: 'retry-max-backoff-ms', type: 'integer', default: 30000, min: 0, help: 'largest backoff', group: G_RETRY },
  { name: 'retry-backoff-multiplier', type: 'number', default: 1.5, min: 1, help: 'backoff growth', group: G_RETRY },
  { name: 'retry-jitter-factor', type: 'number', default: 0.2, min: 0, max: 1, help: 'backoff jitter', group: G_RETRY },
  { name: 'disable-retries', type: 'boolean', default: false, help: 'never retry', group: G_RETRY },
  { name: 'cb-failure-threshold', type: 'integer', default: 10, min: 1, help: 'failures that open a breaker', group: G_RETRY },
  { name: 'cb-success-threshold', type: 'integer', default: 3, min: 1, help: 'successes that close it', group: G_RETRY },
  { name: 'cb-timeout-duration-secs', type: 'number', default: 60, min: 0, help: 'time a breaker stays open', group: G_RETRY },
  { name: 'disable-circuit-breaker', type: 'boolean', default: false, help: 'no circuit breakers', group: G_RETRY },
  // observability
  { name: 'prometheus-host', type: 'string', default: '127.0.0.1', help: 'metrics listen address', group: G_OBS },
  { name: 'prometheus-port', type: 'integer', default: 29000, min: 0, max: 65535, help: 'metrics port (0 = ephemeral)', group: G_OBS },
  { name: 'disable-stats', type: 'boolean', default: false, help: 'no stats actor: /stats windows and latency histograms off (ours)', group: G_OBS },
  { name: 'otlp-endpoint', type: 'string', env: 'OTEL_EXPORTER_OTLP_ENDPOINT', help: 'export OpenTelemetry traces to this OTLP/HTTP endpoint (ours; docs/observability.md)', group: G_OBS, metavar: 'URL' },
  { name: 'otlp-protocol', type: 'string', default: 'http/protobuf', env: 'OTEL_EXPORTER_OTLP_PROTOCOL', help: 'OTLP encoding: http/protobuf or http/json (ours)', group: G_OBS },
  { name: 'log-level', type: 'string', default: 'info', choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], help: 'log level', group: G_OBS },
  { name: 'log-dir', type: 'string', help: 'write logs to a file in this directory instead of stdout', group: G_OBS },
  // request tracking (docs/tracing.md)
  { name: 'enable-request-tracking', type: 'boolean', default: true, help: 'keep a trace per request, served at /v1/traces (--no-enable-request-tracking: off, zero cost)', group: G_OBS },
  { name: 'max-trace-entries', type: 'integer', default: 100_000, min: 1, max: 10_000_000, help: 'traces kept in memory (least recently updated dropped first)', group: G_OBS },
  { name: 'trace-ttl-seconds', type: 'number', default: 3600, min: 0.001, help: 'a trace is dropped this long after its last update', group: G_OBS },
  { name: 'trace-log-dir', type: 'string', help: 'append finished traces to a msgpack log in this folder (default: no log)', group: G_OBS, metavar: 'DIR' },
  { name: 'trace-log-max-bytes', type: 'integer', default: 64 * 1024 * 1024, min: 4096, help: 'rotate the trace log at this file size', group: G_OBS },
  { name: 'trace-log-max-files', type: 'integer', default: 8, min: 1, max: 100_000, help: 'trace log files kept (oldest removed)', group: G_OBS },
  { name: 'trace-flush-ms', type: 'integer', default: 100, min: 1, max: 60_000, help: 'trace log write interval (the most a crash can lose)', group: G_OBS },
  // size-aware admission (docs/policies.md)
  { name: 'worker-groups', type: 'string', help: 'worker group by URL: URL=multi,URL=single pairs or JSON (config file: an object); unnamed workers are single', group: G_ADMISSION, metavar: 'MAP' },
  { name: 'large-input-tokens', type: 'integer', default: 8000, min: 1, help: 'input tokens above which a request goes to the multi group', group: G_ADMISSION },
  { name: 'large-kv-mb', type: 'number', default: 6000, min: 0.001, help: 'predicted KV cache (MB) above which a request goes to the multi group', group: G_ADMISSION },
  { name: 'memory-pressure-threshold', type: 'number', default: 0.85, min: 0.001, max: 1, help: 'reported KV token usage of the single workers counted as memory pressure', group: G_ADMISSION },
  { name: 'pressure-input-tokens', type: 'integer', default: 4000, min: 1, help: 'under memory pressure: input tokens above which a request goes to the multi group', group: G_ADMISSION },
  { name: 'pressure-kv-mb', type: 'number', default: 3000, min: 0.001, help: 'under memory pressure: predicted KV (MB) above which a request goes to the multi group', group: G_ADMISSION },
  { name: 'kv-bytes-per-token', type: 'integer', default: 131072, min: 1, help: 'KV cache bytes per token for the KV estimate (default: Llama-3.1-8B bf16, 128 KiB)', group: G_ADMISSION },
  // replicas (docs/deployment.md)
  { name: 'redis-url', type: 'string', help: 'share traces, admission limits, worker health/breakers (and cache affinity) with other replicas through this Redis, e.g. redis://127.0.0.1:6379 (ours; default: single process, no Redis)', group: G_CLUSTER, metavar: 'URL' },
  { name: 'redis-key-prefix', type: 'string', default: 'switchyard:', help: 'prefix of every Redis key and channel (replicas of one deployment share it) (ours)', group: G_CLUSTER },
  { name: 'replica-id', type: 'string', help: 'this replica\'s id in shared state and logs (ours; default: host-pid-random)', group: G_CLUSTER },
  { name: 'cluster-replicas', type: 'integer', default: 0, min: 0, max: 10000, help: 'with --redis-url: replicas assumed when no admission lease tells how many there are (Redis down at start); the global limits are split by the larger of this and the replicas last seen (ours; 0: only those seen)', group: G_CLUSTER },
  { name: 'affinity-sharing', type: 'boolean', default: true, help: 'cache_aware with --redis-url: publish insert decisions (worker + prefix hash chain) to the other replicas and route on theirs too (ours; --no-affinity-sharing: each replica keeps its own tree only)', group: G_CLUSTER },
  { name: 'affinity-block-chars', type: 'integer', default: 128, min: 16, max: 65536, help: 'affinity sharing: characters per hashed block of the request text, a multiple of 8; every replica must use the same (ours)', group: G_CLUSTER },
  { name: 'affinity-max-entries', type: 'integer', default: 1048576, min: 1, max: 268435456, help: 'affinity sharing: blocks learnt from other replicas kept per policy shard (<= 42 bytes each; least recently used dropped first) (ours)', group: G_CLUSTER },
  { name: 'affinity-ttl-secs', type: 'number', default: 600, min: 1, help: 'affinity sharing: a block learnt from another replica is forgotten after this long unused (ours)', group: G_CLUSTER },
  // embedded fleet
  { name: 'sim-workers', type: 'integer', default: 4, min: 1, max: 256, help: 'simulated workers started when no --worker-urls', group: G_SIM },
  { name: 'sim-base-port', type: 'integer', default: 30001, min: 0, max: 65535, help: 'first port of the embedded fleet (0 = ephemeral)', group: G_SIM },
  { name: 'sim-time-scale', type: 'number', default: 1, min: 0.0001, help: 'time scale of the embedded fleet', group: G_SIM },
  { name: 'model-path', type: 'string', default: 'switchyard/sim-8b', help: 'model name the embedded fleet reports', group: G_SIM },
] as const satisfies readonly OptionSpec[];

export type RouterOptions = ReturnType<typeof parseRouterOptions>;

export function parseRouterOptions(argv: readonly string[], env?: NodeJS.ProcessEnv) {
  return parseOptions(ROUTER_OPTION_SPECS, argv, {
    command: 'serve',
    summary:
      'Run the Switchyard router: a drop-in for SGLang\'s router (same flags, endpoints and metrics).\n' +
      'With no --worker-urls it starts an embedded fleet of simulated SGLang workers.',
    ...(env === undefined ? {} : { env }),
  });
}
