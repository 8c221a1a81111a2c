/**
 * Retry policy of the data path (sgl-router's --retry-* flags): which upstream answers may be retried and
 * how long to wait before each retry (exponential backoff with symmetric jitter).
 */

export interface RetryPolicy {
  /** Retries after the first attempt (0: none). `--disable-retries` sets it to 0. */
  readonly maxRetries: number;
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
  readonly multiplier: number;
  /** 0..1: the delay is scaled by a uniform factor in [1 - jitter, 1 + jitter]. */
  readonly jitter: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { maxRetries: 5, initialBackoffMs: 50, maxBackoffMs: 30_000, multiplier: 1.5, jitter: 0.2 };

/** Upstream statuses sgl-router retries on. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status === 500 || status === 502 || status === 503 || status === 504;
}

/**
 * Delay before retry number `retry` (1 = the first retry): initial * multiplier^(retry-1), capped at the
 * maximum, then jittered (and capped again, so max-backoff is a true ceiling).
 */
export function backoffMs(policy: RetryPolicy, retry: number, random: () => number = Math.random): number {
  const exp = policy.initialBackoffMs * Math.pow(policy.multiplier, Math.max(0, retry - 1));
  const base = Math.min(policy.maxBackoffMs, exp);
  const factor = 1 + policy.jitter * (2 * random() - 1);
  return Math.max(0, Math.min(policy.maxBackoffMs, Math.round(base * factor)));
}
