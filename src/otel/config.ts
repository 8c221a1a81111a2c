/**
 * Where OpenTelemetry traces go, resolved from flags and the standard OTEL_* environment, WITHOUT
 * importing any OpenTelemetry package: when nothing is configured the SDK is never loaded (tracing.ts is
 * imported dynamically only when this returns a config).
 *
 *   --otlp-endpoint URL (env OTEL_EXPORTER_OTLP_ENDPOINT)   base URL; /v1/traces is appended
 *   OTEL_EXPORTER_OTLP_TRACES_ENDPOINT                      full traces URL, used when no endpoint is set
 *   --otlp-protocol (env OTEL_EXPORTER_OTLP_PROTOCOL)       http/protobuf (default) or http/json
 *   OTEL_SERVICE_NAME                                       service.name (default "switchyard")
 *   OTEL_SDK_DISABLED=true                                  no tracing at all
 * Headers (OTEL_EXPORTER_OTLP_HEADERS) and batching (OTEL_BSP_*) are read by the SDK itself.
 */
export const OTLP_PROTOCOLS = ['http/protobuf', 'http/json'] as const;
export type OtlpProtocol = (typeof OTLP_PROTOCOLS)[number];

export interface OtlpConfig {
  /** Full URL spans are POSTed to. */
  readonly tracesUrl: string;
  readonly protocol: OtlpProtocol;
  readonly serviceName: string;
  /** Longest wait between batch exports (ms); undefined: the SDK's default or OTEL_BSP_SCHEDULE_DELAY. */
  readonly flushMs: number | undefined;
}

export function resolveOtlpConfig(
  flags: { readonly otlpEndpoint?: string | undefined; readonly otlpProtocol?: string | undefined; readonly otlpFlushMs?: number | undefined },
  env: NodeJS.ProcessEnv = process.env,
): OtlpConfig | undefined {
  if ((env['OTEL_SDK_DISABLED'] ?? '').trim().toLowerCase() === 'true') return undefined;
  const base = flags.otlpEndpoint?.trim() ?? '';
  const tracesOnly = env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']?.trim() ?? '';
  let tracesUrl: string;
  if (base !== '') tracesUrl = tracesPath(checkUrl(base, '--otlp-endpoint'));
  else if (tracesOnly !== '') tracesUrl = checkUrl(tracesOnly, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT').href;
  else return undefined;
  const protocol = (flags.otlpProtocol ?? 'http/protobuf').trim();
  if (!(OTLP_PROTOCOLS as readonly string[]).includes(protocol)) {
    throw new Error(`OTLP protocol must be one of ${OTLP_PROTOCOLS.join(', ')} (grpc is not supported), got '${protocol}'`);
  }
  const serviceName = env['OTEL_SERVICE_NAME']?.trim() || 'switchyard';
  return { tracesUrl, protocol: protocol as OtlpProtocol, serviceName, flushMs: flags.otlpFlushMs };
}

function checkUrl(raw: string, what: string): URL {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new Error(`${what}: not a valid URL: '${raw}'`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`${what}: OTLP/HTTP needs an http or https URL, got '${raw}'`);
  return u;
}

/** The base endpoint plus /v1/traces (the OTLP/HTTP convention), unless it already names it. */
function tracesPath(u: URL): string {
  if (u.pathname.endsWith('/v1/traces')) return u.href;
  const path = u.pathname.endsWith('/') ? u.pathname.slice(0, -1) : u.pathname;
  const out = new URL(u.href);
  out.pathname = `${path}/v1/traces`;
  return out.href;
}

/** The endpoint as shown in logs and the debug bundle: no credentials, no query. */
export function displayUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    u.search = '';
    return u.href;
  } catch {
    return '[invalid url]';
  }
}
