/**
 * Exponential backoff with full jitter: the n-th retry waits a uniformly
 * random time in [0, min(max, initial * 2^(n-1))]. Full jitter spreads the
 * retries of many agents hitting one recovering sink instead of synchronising
 * them. A server's Retry-After is a floor: never retry sooner than it asks
 * (capped, so that a bogus value cannot park an output for days), and a
 * `Retry-After: 0` does not turn off the backoff.
 */
export const RETRY_AFTER_CAP_MS = 15 * 60_000;

export interface BackoffPolicy {
  initialBackoffMs: number;
  maxBackoffMs: number;
}

export function backoffCeilingMs(policy: BackoffPolicy, retry: number): number {
  const exp = Math.min(retry - 1, 30);
  return Math.min(policy.maxBackoffMs, policy.initialBackoffMs * 2 ** exp);
}

export function retryDelayMs(
  policy: BackoffPolicy,
  retry: number,
  retryAfterMs: number | undefined,
  random: () => number = Math.random,
): number {
  const jitter = Math.floor(random() * backoffCeilingMs(policy, retry));
  if (retryAfterMs !== undefined && retryAfterMs > 0) return Math.max(Math.min(retryAfterMs, RETRY_AFTER_CAP_MS), jitter);
  return jitter;
}

/** Parse an HTTP Retry-After header: delta-seconds or an HTTP date. */
export function parseRetryAfterMs(value: string | string[] | null | undefined, nowMs = Date.now()): number | undefined {
  if (value === null || value === undefined) return undefined;
  const v = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!v) return undefined;
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  if (Number.isNaN(t)) return undefined;
  return Math.max(0, t - nowMs);
}

/**
 * Resolves after `ms`, or early (without rejecting) when the signal aborts.
 * Always goes through a timer (at least 1 ms): a retry loop whose delay
 * computes to 0 must still yield to timers, I/O and signals.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, Math.max(1, ms));
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
