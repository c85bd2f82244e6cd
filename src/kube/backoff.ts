/**
 * Backoff for reconnect loops (watches, lease retries): the n-th consecutive
 * failure waits between half and all of `min(max, initial * 2^(n-1))`.
 * Never zero — a server that closes every watch at once cannot turn the
 * client into a tight loop — and jittered, so many collectors restarting
 * after one apiserver restart do not come back in step.
 */
export interface KubeBackoffOptions {
  initialMs: number;
  maxMs: number;
  random?: () => number;
}

export class Backoff {
  readonly #initialMs: number;
  readonly #maxMs: number;
  readonly #random: () => number;
  #failures = 0;

  constructor(opts: KubeBackoffOptions) {
    this.#initialMs = Math.max(1, opts.initialMs);
    this.#maxMs = Math.max(this.#initialMs, opts.maxMs);
    this.#random = opts.random ?? Math.random;
  }

  /** Consecutive failures so far. */
  get failures(): number {
    return this.#failures;
  }

  /** Delay before the next attempt after a failure. */
  nextDelayMs(): number {
    this.#failures += 1;
    return jittered(Math.min(this.#maxMs, this.#initialMs * 2 ** Math.min(this.#failures - 1, 30)), this.#random);
  }

  /** Delay before reconnecting after a healthy stream ended (server timeout): short, never zero. */
  calmDelayMs(): number {
    return jittered(this.#initialMs, this.#random);
  }

  reset(): void {
    this.#failures = 0;
  }
}

export function jittered(ceilingMs: number, random: () => number = Math.random): number {
  return Math.round(ceilingMs / 2 + random() * (ceilingMs / 2));
}
