import { errorMessage } from '../errors.ts';
import { sleep } from '../delivery/backoff.ts';
import type { Logger } from '../telemetry/logger.ts';
import { KubeApiError, type KubeClient } from './client.ts';

/**
 * Leader election on a `coordination.k8s.io/v1` Lease, with client-go's
 * semantics:
 *
 * - A candidate takes the Lease when it is free (no holder, e.g. released)
 *   or when its record has not changed for `leaseDuration`, measured on the
 *   candidate's own clock from when it first saw that record (no clock
 *   comparison between nodes). Writes use the Lease's resourceVersion, so
 *   two candidates racing for it cannot both win.
 * - The leader renews every `retryPeriod`. If no renewal succeeds within
 *   `renewDeadline` of the last good one, it gives up: leadership is lost
 *   before any other candidate can take over (renewDeadline < leaseDuration).
 * - `holds()` is the fence for the leader's writes elsewhere: true only while
 *   the last successful renewal was *sent* less than `renewDeadline` ago.
 * - Each renewal also writes `annotations()` — the leader mirrors state there
 *   for whoever leads next; a new leader receives the Lease as it found it.
 * - Stopping releases the Lease (holder cleared, final annotations written),
 *   so a standby takes over at its next try instead of after leaseDuration.
 *   With `watchForRelease`, a standby also watches the Lease between tries
 *   and tries at once when it sees it released: a handover then costs a
 *   watch notification, not up to 1.5 retry periods.
 */

export interface LeaseObject {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; annotations?: Record<string, string>; [k: string]: unknown };
  spec?: {
    holderIdentity?: string | null;
    leaseDurationSeconds?: number | null;
    acquireTime?: string | null;
    renewTime?: string | null;
    leaseTransitions?: number | null;
    [k: string]: unknown;
  };
}

export interface LeaseElectorOptions {
  client: KubeClient;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  /** Annotations written with every renewal and on release (the leader's mirrored state). */
  annotations?: () => Record<string, string>;
  /** Between tries, watch the Lease and try at once when it is released (needs `watch` on it; falls back to polling). */
  watchForRelease?: boolean;
  log?: Logger;
  random?: () => number;
}

export interface Leadership {
  /** Aborted when leadership is lost or the elector stops. */
  signal: AbortSignal;
  /** The Lease as this leader found it, annotations of the previous leader included. */
  lease: LeaseObject;
}

export class LeaseElector {
  readonly #o: LeaseElectorOptions;
  readonly #random: () => number;
  #lease: LeaseObject | undefined;
  #leading = false;
  #lastRenewSentMs = 0;
  #observedRv: string | undefined;
  #observedMs = 0;
  #writeChain: Promise<unknown> = Promise.resolve();
  #lastError: string | undefined;
  #lastErrorLogMs = 0;

  constructor(opts: LeaseElectorOptions) {
    if (opts.renewDeadlineMs >= opts.leaseDurationMs) throw new Error('renewDeadline must be shorter than leaseDuration');
    if (opts.retryPeriodMs >= opts.renewDeadlineMs) throw new Error('retryPeriod must be shorter than renewDeadline');
    this.#o = opts;
    this.#random = opts.random ?? Math.random;
  }

  get path(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.#o.namespace)}/leases/${encodeURIComponent(this.#o.name)}`;
  }

  get isLeader(): boolean {
    return this.#leading;
  }

  get identity(): string {
    return this.#o.identity;
  }

  /** The last error talking to the API, cleared by the next success. */
  get lastError(): string | undefined {
    return this.#lastError;
  }

  /** Fence: true while this instance may act as leader at `nowMs`. */
  holds(nowMs = Date.now()): boolean {
    return this.#leading && nowMs < this.#lastRenewSentMs + this.#o.renewDeadlineMs;
  }

  /**
   * Campaigns until `signal` aborts; each time the Lease is won, runs `lead`
   * and waits for it to return. `lead` must stop when `leadership.signal`
   * aborts. Resolves after the Lease is released.
   */
  async run(signal: AbortSignal, lead: (leadership: Leadership) => Promise<void>): Promise<void> {
    while (!signal.aborted) {
      const lease = await this.#acquire(signal);
      if (!lease) break;
      const lost = new AbortController();
      const leadSignal = AbortSignal.any([signal, lost.signal]);
      const renewing = this.#renewLoop(leadSignal, lost);
      try {
        await lead({ signal: leadSignal, lease });
      } catch (err) {
        this.#o.log?.error({ lease: this.#o.name, err: errorMessage(err) }, 'leader work failed; releasing the lease');
      }
      lost.abort();
      await renewing;
      if (this.#leading) await this.release();
      this.#leading = false;
      // Whoever stopped leading for a reason other than shutdown lets the others try first.
      if (!signal.aborted) await sleep(this.#jitteredRetryMs(), signal);
    }
  }

  /** Writes the annotations now (also a renewal). False when the write failed or leadership is gone. */
  sync(): Promise<boolean> {
    if (!this.#leading) return Promise.resolve(false);
    return this.#serialized(() => this.#renewOnce('sync'));
  }

  /** Gives the Lease up with the final annotations; standbys take over at their next try. */
  release(): Promise<boolean> {
    if (!this.#leading) return Promise.resolve(false);
    return this.#serialized(async () => {
      try {
        const ok = await this.#write('release');
        if (ok) this.#o.log?.info({ lease: this.#o.name, identity: this.#o.identity }, 'lease released');
        return ok;
      } catch (err) {
        // Not released: the others take over once it expires.
        this.#noteError(err, 'lease release failed');
        return false;
      } finally {
        this.#leading = false;
      }
    });
  }

  async #acquire(signal: AbortSignal): Promise<LeaseObject | undefined> {
    while (!signal.aborted) {
      try {
        const won = await this.#tryAcquire(signal);
        this.#lastError = undefined;
        if (won) {
          this.#o.log?.info({ lease: this.#o.name, identity: this.#o.identity }, 'lease acquired; leading');
          return won;
        }
      } catch (err) {
        this.#noteError(err, 'lease acquire failed');
      }
      await this.#waitForRelease(this.#jitteredRetryMs(), signal);
    }
    return undefined;
  }

  /**
   * Waits `waitMs`, or less when a watch on the Lease shows it released
   * (holder cleared) or deleted. A watch that fails or ends early leaves the
   * rest of the wait as a plain sleep, so this never becomes a tight loop.
   */
  async #waitForRelease(waitMs: number, signal: AbortSignal): Promise<void> {
    if (!this.#o.watchForRelease || signal.aborted) return sleep(waitMs, signal);
    const startMs = Date.now();
    const window = new AbortController();
    const timer = setTimeout(() => window.abort(), waitMs);
    const watchSignal = AbortSignal.any([signal, window.signal]);
    try {
      const stream = this.#o.client.watch({
        path: this.path.replace(/\/[^/]+$/, ''),
        query: {
          watch: 1,
          fieldSelector: `metadata.name=${this.#o.name}`,
          resourceVersion: this.#observedRv,
          timeoutSeconds: Math.max(1, Math.ceil(waitMs / 1000)),
        },
        signal: watchSignal,
        maxLifeMs: waitMs + 5000,
      });
      for await (const chunk of stream) {
        for (const e of chunk.events) {
          if (e.type === 'ERROR') throw new Error(`lease watch: ${JSON.stringify(e.object).slice(0, 200)}`);
          const lease = e.object as unknown as LeaseObject;
          if (e.type === 'DELETED' || (e.type !== 'BOOKMARK' && (lease.spec?.holderIdentity ?? '') === '')) return;
        }
      }
    } catch (err) {
      if (!watchSignal.aborted) this.#noteError(err, 'lease watch failed; polling');
    } finally {
      clearTimeout(timer);
    }
    const leftMs = waitMs - (Date.now() - startMs);
    if (leftMs > 0 && !signal.aborted) await sleep(leftMs, signal);
  }

  async #tryAcquire(signal: AbortSignal): Promise<LeaseObject | undefined> {
    const { client, identity } = this.#o;
    let current: LeaseObject | undefined;
    try {
      current = await client.request<LeaseObject>({ path: this.path, signal });
    } catch (err) {
      if (!(err instanceof KubeApiError) || err.statusCode !== 404) throw err;
    }
    const nowMs = Date.now();
    if (current === undefined) {
      const body: LeaseObject = {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name: this.#o.name, namespace: this.#o.namespace },
        spec: { holderIdentity: identity, leaseDurationSeconds: this.#leaseSeconds(), acquireTime: microTime(nowMs), renewTime: microTime(nowMs), leaseTransitions: 0 },
      };
      try {
        const created = await client.request<LeaseObject>({ method: 'POST', path: this.path.replace(/\/[^/]+$/, ''), body, signal });
        return this.#won(created, nowMs, { metadata: { name: this.#o.name } });
      } catch (err) {
        if (err instanceof KubeApiError && err.statusCode === 409) return undefined; // someone else created it first
        throw err;
      }
    }
    const rv = current.metadata.resourceVersion;
    if (rv !== this.#observedRv) {
      this.#observedRv = rv;
      this.#observedMs = nowMs;
    }
    const holder = current.spec?.holderIdentity ?? '';
    const durationMs = (current.spec?.leaseDurationSeconds ?? this.#leaseSeconds()) * 1000;
    if (holder !== '' && holder !== identity && nowMs < this.#observedMs + durationMs) return undefined;
    const spec = current.spec ?? {};
    const body: LeaseObject = {
      ...current,
      spec: {
        ...spec,
        holderIdentity: identity,
        leaseDurationSeconds: this.#leaseSeconds(),
        acquireTime: microTime(nowMs),
        renewTime: microTime(nowMs),
        leaseTransitions: (spec.leaseTransitions ?? 0) + (holder === identity ? 0 : 1),
      },
    };
    try {
      const updated = await client.request<LeaseObject>({ method: 'PUT', path: this.path, body, signal });
      if (holder !== '' && holder !== identity) {
        this.#o.log?.warn({ lease: this.#o.name, previous: holder, silentForMs: nowMs - this.#observedMs }, 'took over an expired lease');
      }
      return this.#won(updated, nowMs, current);
    } catch (err) {
      if (err instanceof KubeApiError && err.statusCode === 409) return undefined; // lost the race
      throw err;
    }
  }

  #won(updated: LeaseObject, sentMs: number, found: LeaseObject): LeaseObject {
    this.#lease = updated;
    this.#lastRenewSentMs = sentMs;
    this.#leading = true;
    return found;
  }

  async #renewLoop(leadSignal: AbortSignal, lost: AbortController): Promise<void> {
    while (!leadSignal.aborted) {
      // A sync() in between counts as a renewal.
      const dueMs = this.#lastRenewSentMs + this.#o.retryPeriodMs - Date.now();
      if (dueMs > 0) {
        await sleep(dueMs, leadSignal);
        continue;
      }
      const ok = await this.#serialized(() => this.#renewOnce('renew'));
      if (leadSignal.aborted) return;
      if (ok) continue;
      if (!this.#leading || Date.now() >= this.#lastRenewSentMs + this.#o.renewDeadlineMs) {
        this.#leading = false;
        this.#o.log?.warn(
          { lease: this.#o.name, identity: this.#o.identity, err: this.#lastError },
          'lease lost: not renewed within renew_deadline; stopping leader work',
        );
        lost.abort();
        return;
      }
      await sleep(Math.min(this.#o.retryPeriodMs / 2, this.#lastRenewSentMs + this.#o.renewDeadlineMs - Date.now()), leadSignal);
    }
  }

  async #renewOnce(mode: 'renew' | 'sync'): Promise<boolean> {
    if (!this.#leading) return false;
    try {
      return await this.#write(mode);
    } catch (err) {
      this.#noteError(err, `lease ${mode} failed`);
      return false;
    }
  }

  /** PUT the cached Lease with a fresh renewTime and the annotations; refetch once on a conflict. */
  async #write(mode: 'renew' | 'sync' | 'release'): Promise<boolean> {
    const { client, identity } = this.#o;
    for (let attempt = 1; attempt <= 2; attempt++) {
      const base = this.#lease;
      if (!base || (base.spec?.holderIdentity ?? '') !== identity) {
        this.#leading = false;
        return false;
      }
      const sentMs = Date.now();
      const annotations = { ...base.metadata.annotations, ...this.#o.annotations?.() };
      const spec = { ...base.spec, renewTime: microTime(sentMs) };
      if (mode === 'release') {
        spec.holderIdentity = null;
        spec.leaseDurationSeconds = 1;
      }
      const body: LeaseObject = { ...base, metadata: { ...base.metadata, annotations }, spec };
      try {
        const updated = await client.request<LeaseObject>({ method: 'PUT', path: this.path, body, timeoutMs: this.#o.renewDeadlineMs });
        this.#lease = updated;
        if (mode !== 'release') this.#lastRenewSentMs = sentMs;
        this.#lastError = undefined;
        return true;
      } catch (err) {
        if (!(err instanceof KubeApiError) || err.statusCode !== 409 || attempt === 2) throw err;
        // Someone wrote the Lease: still ours (an edited annotation) → retry on the new version; else lost.
        this.#lease = await client.request<LeaseObject>({ path: this.path, timeoutMs: this.#o.renewDeadlineMs });
      }
    }
    return false;
  }

  #serialized<R>(fn: () => Promise<R>): Promise<R> {
    const next = this.#writeChain.then(fn, fn);
    this.#writeChain = next.catch(() => undefined);
    return next;
  }

  #noteError(err: unknown, what: string): void {
    this.#lastError = errorMessage(err);
    const now = Date.now();
    if (now - this.#lastErrorLogMs >= 30_000) {
      this.#lastErrorLogMs = now;
      this.#o.log?.warn({ lease: this.#o.name, err: this.#lastError }, what);
    }
  }

  #leaseSeconds(): number {
    return Math.max(1, Math.ceil(this.#o.leaseDurationMs / 1000));
  }

  #jitteredRetryMs(): number {
    // Between 1x and 1.5x the retry period: candidates do not poll in step, and a dead leader is noticed soon after its lease ends.
    return Math.round(this.#o.retryPeriodMs * (1 + this.#random() * 0.5));
  }
}

/** metav1.MicroTime: RFC 3339 with microseconds. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}
