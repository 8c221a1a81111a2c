/**
 * One registry of stable error codes -> HTTP status and OpenAI-style error type.
 * Every JSON error Switchyard (router or simulated worker) writes comes from here,
 * so clients can switch on `error.code` and the status never drifts per call site.
 */
export const ERROR_REGISTRY = {
  // client errors
  invalid_json: { status: 400, type: 'invalid_request_error' },
  invalid_request: { status: 400, type: 'invalid_request_error' },
  missing_prompt: { status: 400, type: 'invalid_request_error' },
  invalid_request_id: { status: 400, type: 'invalid_request_error' },
  invalid_worker_url: { status: 400, type: 'invalid_request_error' },
  unsupported_media_type: { status: 415, type: 'invalid_request_error' },
  unauthorized: { status: 401, type: 'authentication_error' },
  forbidden: { status: 403, type: 'permission_error' },
  not_found: { status: 404, type: 'not_found_error' },
  trace_not_found: { status: 404, type: 'not_found_error' },
  tracking_disabled: { status: 404, type: 'not_found_error' },
  worker_not_found: { status: 404, type: 'not_found_error' },
  method_not_allowed: { status: 405, type: 'invalid_request_error' },
  queue_timeout: { status: 408, type: 'timeout_error' },
  request_body_timeout: { status: 408, type: 'timeout_error' },
  worker_exists: { status: 409, type: 'invalid_request_error' },
  payload_too_large: { status: 413, type: 'invalid_request_error' },
  headers_too_large: { status: 431, type: 'invalid_request_error' },
  rate_limited: { status: 429, type: 'rate_limit_error' },
  queue_full: { status: 429, type: 'rate_limit_error' },
  client_closed: { status: 499, type: 'client_error' },
  // server / upstream errors
  internal_error: { status: 500, type: 'server_error' },
  injected_failure: { status: 500, type: 'server_error' },
  upstream_error: { status: 502, type: 'upstream_error' },
  upstream_connect_failed: { status: 502, type: 'upstream_error' },
  upstream_invalid_response: { status: 502, type: 'upstream_error' },
  no_healthy_workers: { status: 503, type: 'service_unavailable' },
  service_unavailable: { status: 503, type: 'service_unavailable' },
  shutting_down: { status: 503, type: 'service_unavailable' },
  upstream_timeout: { status: 504, type: 'timeout_error' },
  request_timeout: { status: 504, type: 'timeout_error' },
} as const satisfies Record<string, { status: number; type: string }>;

export type ErrorCode = keyof typeof ERROR_REGISTRY;

export function statusOf(code: ErrorCode): number {
  return ERROR_REGISTRY[code].status;
}

/** An error with a stable code; its HTTP status comes from the registry unless overridden. */
export class SwitchyardError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options?: { status?: number; details?: Record<string, unknown>; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SwitchyardError';
    this.code = code;
    this.status = options?.status ?? ERROR_REGISTRY[code].status;
    this.details = options?.details;
  }

  /** The JSON body every error response carries (OpenAI/SGLang error shape plus a stable code). */
  toJSON(): ErrorBody {
    const body: ErrorBody = { error: { message: this.message, type: ERROR_REGISTRY[this.code].type, code: this.code } };
    if (this.details !== undefined) body.error.details = this.details;
    return body;
  }
}

export interface ErrorBody {
  error: { message: string; type: string; code: ErrorCode; details?: Record<string, unknown> };
}

/** Normalises anything thrown into a SwitchyardError (unknown errors become internal_error). */
export function toSwitchyardError(err: unknown): SwitchyardError {
  if (err instanceof SwitchyardError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new SwitchyardError('internal_error', message, { cause: err });
}

export function errorBody(code: ErrorCode, message: string, details?: Record<string, unknown>): string {
  return JSON.stringify(new SwitchyardError(code, message, details === undefined ? undefined : { details }).toJSON());
}

/**
 * A router or simulator could not start for a reason its operator must fix (a port in use, a folder that
 * is not writable). Not an HTTP error: the CLI prints its message on one line, without a stack, and exits 1.
 */
export class StartupError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'StartupError';
  }
}
