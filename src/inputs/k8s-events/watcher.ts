import { errorMessage } from '../../errors.ts';
import { sleep } from '../../delivery/backoff.ts';
import type { InputContext } from '../../plugin.ts';
import type { KubeClient } from '../../kube/client.ts';
import { KubeApiError } from '../../kube/client.ts';
import { ListWatch, type ListPage, type ListReason, type WatchBatch } from '../../kube/list-watch.ts';
import type { Committer } from './committer.ts';
import { compareRv, eventTimeMs, isNumericRv, type EventApi, type EventObject } from './convert.ts';
import { ALL_NAMESPACES, type EventsState } from './state.ts';
import { k8sEventsEvent, k8sEventsMetrics } from './telemetry.ts';

/**
 * One scope (all namespaces, or one namespace) of the events input: list +
 * watch (mode `watch`) or a paginated list every `interval` (mode `poll`),
 * every page and watch read handed to the committer.
 *
 * Resuming: with a stored cursor the watch restarts from it (a restart, a
 * server timeout, a reset). When the cursor is too old (`410 Gone`), the
 * relist is deduplicated against the seen-set and the cursor; and when every
 * event now listed is newer than the cursor, versions written in between may
 * have expired unseen: that is reported as a possible gap.
 */

export interface ScopeWatcherOptions {
  ctx: InputContext;
  client: KubeClient;
  committer: Committer;
  state: EventsState;
  api: EventApi;
  /** A namespace, or ALL_NAMESPACES. */
  scope: string;
  mode: 'watch' | 'poll';
  fieldSelector: string | undefined;
  pageSize: number;
  pollIntervalMs: number;
  watchTimeoutMs: number;
  backoff: { initialMs: number; maxMs: number };
  /** Health bookkeeping. */
  onContact: () => void;
  onFailure: (err: unknown) => void;
}

export function collectionPath(api: EventApi, scope: string): string {
  const base = api === 'core/v1' ? '/api/v1' : '/apis/events.k8s.io/v1';
  return scope === ALL_NAMESPACES ? `${base}/events` : `${base}/namespaces/${encodeURIComponent(scope)}/events`;
}

/** Errors that no retry fixes without an operator (RBAC, a wrong selector, a missing API). */
export function isConfigError(err: unknown): boolean {
  return err instanceof KubeApiError && [400, 403, 404, 406, 422].includes(err.statusCode);
}

export class ScopeWatcher {
  readonly #o: ScopeWatcherOptions;
  readonly #labels: { input: string };
  readonly #lw: ListWatch<EventObject>;
  /** Per list: the cursor when it started and the oldest version it has shown. */
  #listCursor: string | undefined;
  #listCursorMs: number | undefined;
  #oldest: { rv: string; timeMs: number } | undefined;
  #lastWarnMs = 0;

  constructor(opts: ScopeWatcherOptions) {
    this.#o = opts;
    this.#labels = { input: opts.ctx.name };
    this.#lw = new ListWatch<EventObject>(
      {
        client: opts.client,
        path: collectionPath(opts.api, opts.scope),
        fieldSelector: opts.fieldSelector,
        pageSize: opts.pageSize,
        watchTimeoutMs: opts.watchTimeoutMs,
        backoff: opts.backoff,
      },
      {
        onListStart: (reason) => this.#onListStart(reason),
        onPage: (page) => this.#onPage(page),
        onWatch: (batch) => this.#onWatch(batch),
        onWatchEnd: ({ reason, error, delayMs }) => {
          const m = opts.ctx.metrics;
          k8sEventsMetrics(m).watchRestarts.inc({ ...this.#labels, reason });
          if (reason === 'gone') {
            k8sEventsMetrics(m).gone.inc(this.#labels);
            opts.ctx.log.info({ event: k8sEventsEvent.relist, scope: opts.scope, cursor: this.#lw.resourceVersion }, 'watch answered 410 Gone: relisting');
          } else if (error !== undefined) {
            opts.ctx.telemetry.error(`watch_${reason}`);
            this.#warn({ event: k8sEventsEvent.watch_ended, scope: opts.scope, reason, err: errorMessage(error), retryInMs: delayMs }, 'watch ended; resuming');
            if (reason === 'error') opts.onFailure(error);
          } else {
            opts.ctx.log.debug({ scope: opts.scope, reason, retryInMs: delayMs }, 'watch ended; resuming');
          }
        },
        onError: ({ phase, error, delayMs }) => {
          if (error instanceof KubeApiError && error.gone && phase === 'list') {
            k8sEventsMetrics(opts.ctx.metrics).gone.inc(this.#labels);
            opts.ctx.log.info({ event: k8sEventsEvent.relist, scope: opts.scope }, 'list continue token expired: listing again from the start');
            return;
          }
          opts.ctx.telemetry.error(`${phase}_failed`);
          opts.onFailure(error);
          this.#warn({ scope: opts.scope, phase, err: errorMessage(error), retryInMs: delayMs }, `${phase} failed; retrying`);
        },
        onContact: opts.onContact,
      },
    );
  }

  async run(signal: AbortSignal): Promise<void> {
    const { mode, committer, scope, pollIntervalMs } = this.#o;
    if (mode === 'watch') {
      await this.#lw.run(signal, committer.cursor(scope));
      return;
    }
    let reason: ListReason = 'start';
    while (!signal.aborted) {
      const t0 = Date.now();
      await this.#lw.list(reason, signal);
      reason = 'poll';
      await sleep(Math.max(0, pollIntervalMs - (Date.now() - t0)), signal);
    }
  }

  #onListStart(reason: ListReason): void {
    k8sEventsMetrics(this.#o.ctx.metrics).relists.inc({ ...this.#labels, reason });
    this.#listCursor = this.#o.committer.cursor(this.#o.scope);
    this.#listCursorMs = this.#o.state.cursor(this.#o.scope)?.advancedMs;
    this.#oldest = undefined;
  }

  async #onPage(page: ListPage<EventObject>): Promise<void> {
    if (page.pageIndex === 0) this.#oldest = undefined;
    for (const item of page.items) {
      const rv = item.metadata?.resourceVersion;
      if (rv === undefined || !isNumericRv(rv)) continue;
      if (this.#oldest === undefined || compareRv(rv, this.#oldest.rv) < 0) this.#oldest = { rv, timeMs: eventTimeMs(item) };
    }
    // The list's resourceVersion becomes the cursor only with its last page.
    await this.#o.committer.stage(this.#o.scope, page.items, 'list', page.last ? page.resourceVersion : undefined);
    if (page.last) await this.#checkGap();
  }

  async #onWatch(batch: WatchBatch<EventObject>): Promise<void> {
    const objects: EventObject[] = [];
    for (const e of batch.events) {
      // A deletion is the TTL (or a cleanup) removing an event, not a new version of it.
      if (e.type === 'ADDED' || e.type === 'MODIFIED') objects.push(e.object);
    }
    await this.#o.committer.stage(this.#o.scope, objects, 'watch', batch.resourceVersion);
  }

  async #checkGap(): Promise<void> {
    const cursor = this.#listCursor;
    const oldest = this.#oldest;
    if (cursor === undefined || oldest === undefined || !isNumericRv(cursor)) return;
    if (compareRv(cursor, oldest.rv) >= 0) return;
    const { ctx, scope } = this.#o;
    const fromMs = this.#listCursorMs;
    k8sEventsMetrics(ctx.metrics).gaps.inc({ ...this.#labels, reason: 'expired' });
    ctx.log.warn(
      {
        event: k8sEventsEvent.gap,
        scope,
        cursorRv: cursor,
        oldestListedRv: oldest.rv,
        from: fromMs !== undefined ? new Date(fromMs).toISOString() : undefined,
        to: new Date(oldest.timeMs).toISOString(),
        spanSeconds: fromMs !== undefined ? Math.max(0, Math.round((oldest.timeMs - fromMs) / 1000)) : undefined,
      },
      'possible gap: every event listed now is newer than the cursor; event versions written in between may have expired (event TTL) before they could be read',
    );
    await this.#o.committer.gap({
      reason: 'expired',
      fromMs,
      toMs: oldest.timeMs,
      detail: `scope ${scope}: event versions between resourceVersion ${cursor} and ${oldest.rv} may have expired before they could be read (relist after the cursor was too old)`,
    });
  }

  #warn(fields: Record<string, unknown>, msg: string): void {
    const now = Date.now();
    if (now - this.#lastWarnMs < 10_000) {
      this.#o.ctx.log.debug(fields, msg);
      return;
    }
    this.#lastWarnMs = now;
    this.#o.ctx.log.warn(fields, msg);
  }
}
