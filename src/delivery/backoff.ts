/**
 * Backoff, the one module for every retry loop in ktrail: output sends (the
 * delivery runner) and the Kubernetes reconnect loops (watches, lists).
 *
 * Both wait an exponentially growing, jittered time: the ceiling of the n-th
 * retry is `min(max, initial * 2^(n-1))`, and the jitter (`jitterDelayMs`)
 * is one policy with two spreads:
 * - `full`, for output sends: uniformly in [0, ceiling]. It spreads the
 *   retries of many agents hitting one recovering sink instead of
 *   synchronising them. A server's Retry-After is a floor: never retry sooner
 *   than it asks (capped, so that a bogus value cannot park an output for
 *   days), and a `Retry-After: 0` does not turn off the backoff.
 * - `equal`, for reconnect loops: in [ceiling/2, ceiling], never zero, so a
 *   server that closes every watch at once cannot turn the client into a
 *   tight loop, and collectors restarted together do not come back in step.
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

export type JitterSpread = 'full' | 'equal';

/** A jittered delay below `ceilingMs`: the whole range (`full`) or its upper half (`equal`, never zero). */
export function jitterDelayMs(ceilingMs: number, spread: JitterSpread, random: () => number = Math.random): number {
  return spread === 'full' ? Math.floor(random() * ceilingMs) : Math.round(ceilingMs / 2 + random() * (ceilingMs / 2));
}

/** The delay before the `retry`-th resend of an output request (full jitter, Retry-After as a floor). */
export function retryDelayMs(
  policy: BackoffPolicy,
  retry: number,
  retryAfterMs: number | undefined,
  random: () => number = Math.random,
): number {
  const jitter = jitterDelayMs(backoffCeilingMs(policy, retry), 'full', random);
  if (retryAfterMs !== undefined && retryAfterMs > 0) return Math.max(Math.min(retryAfterMs, RETRY_AFTER_CAP_MS), jitter);
  return jitter;
}

export interface ReconnectBackoffOptions {
  initialMs: number;
  maxMs: number;
  random?: () => number;
}

/** Backoff of a reconnect loop (a watch, a list): counts consecutive failures, equal jitter. */
export class ReconnectBackoff {
  readonly #policy: BackoffPolicy;
  readonly #random: () => number;
  #failures = 0;

  constructor(opts: ReconnectBackoffOptions) {
    const initialBackoffMs = Math.max(1, opts.initialMs);
    this.#policy = { initialBackoffMs, maxBackoffMs: Math.max(initialBackoffMs, opts.maxMs) };
    this.#random = opts.random ?? Math.random;
  }

  /** Consecutive failures so far. */
  get failures(): number {
    return this.#failures;
  }

  /** Delay before the next attempt after a failure. */
  nextDelayMs(): number {
    this.#failures += 1;
    return jitterDelayMs(backoffCeilingMs(this.#policy, this.#failures), 'equal', this.#random);
  }

  /** Delay before reconnecting after a healthy stream ended (server timeout): short, never zero. */
  calmDelayMs(): number {
    return jitterDelayMs(this.#policy.initialBackoffMs, 'equal', this.#random);
  }

  reset(): void {
    this.#failures = 0;
  }
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
