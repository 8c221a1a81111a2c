/**
 * Bounded waits for start-up: a thread that is slow to come up must not hold the router's start forever.
 */

/** True when `promise` resolved within `ms`, false when the time ran out first (a rejection propagates). */
export async function resolvesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true as const), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}
