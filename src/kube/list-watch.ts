import { ReconnectBackoff, sleep } from '../delivery/backoff.ts';
import { KubeApiError, type KubeClient, type KubeStatus, type QueryValue } from './client.ts';

/**
 * List + watch of one collection, the way client-go's reflector does it, as a
 * loop the caller drives with two awaited callbacks:
 *
 * - a paginated list (`limit` + `continue`) hands each page to `onPage`; the
 *   list's resourceVersion is final on the last page;
 * - then a watch from that resourceVersion with bookmarks hands the events of
 *   each read to `onWatch`; the resourceVersion advances only after the
 *   handler resolved, so a caller that commits in its handler never skips;
 * - a watch that ends (server timeout, reset) resumes from the last
 *   resourceVersion after a short jittered pause; failures back off
 *   exponentially with jitter; never a tight loop;
 * - `410 Gone` (too old resourceVersion, expired continue token) relists.
 *
 * The handlers run one at a time and nothing more is read while one runs: a
 * handler that waits (a full spool) pauses the stream. A handler that throws
 * ends `run()` with that error; API and network errors are retried.
 */

export interface KubeObjectLike {
  metadata?: { resourceVersion?: string; uid?: string; name?: string; namespace?: string; [k: string]: unknown };
  [k: string]: unknown;
}

export type ListReason = 'start' | 'gone' | 'poll' | 'continue_expired';
export type WatchEndReason = 'timeout' | 'closed' | 'error' | 'gone';

export interface ListPage<T> {
  items: T[];
  /** The list's snapshot resourceVersion (the same on every page of one list). */
  resourceVersion: string;
  /** 0 on the first page of a list: a handler keeping per-list state resets it there. */
  pageIndex: number;
  last: boolean;
  reason: ListReason;
  bytes: number;
}

export interface WatchItem<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK';
  object: T;
}

export interface WatchBatch<T> {
  events: Array<WatchItem<T>>;
  /** The resourceVersion after these events (the last event's). */
  resourceVersion: string;
  bytes: number;
}

export interface ListWatchHandler<T> {
  onPage(page: ListPage<T>): Promise<void> | void;
  onWatch(batch: WatchBatch<T>): Promise<void> | void;
  /** A watch ended and will be resumed (or a relist follows, for `gone`). */
  onWatchEnd?(info: { reason: WatchEndReason; error?: unknown; delayMs: number }): void;
  /** A list is about to start. */
  onListStart?(reason: ListReason): void;
  /** A list or watch request failed; it is retried after `delayMs`. */
  onError?(info: { phase: 'list' | 'watch'; error: unknown; delayMs: number }): void;
  /** The API answered (a page or a watch chunk): for health reporting. */
  onContact?(): void;
}

export interface ListWatchOptions {
  client: KubeClient;
  /** Collection path, e.g. `/api/v1/events` or `/api/v1/namespaces/kube-system/pods`. */
  path: string;
  fieldSelector?: string | undefined;
  labelSelector?: string | undefined;
  /** `limit` of each list page; 0 lists everything in one answer. */
  pageSize?: number;
  /** Ask for PartialObjectMetadata (labels, annotations, owners; no spec/status). */
  metadataOnly?: boolean;
  /** Each watch asks the server for a timeout drawn from [t, 2t] (client-go's spread). */
  watchTimeoutMs?: number;
  backoff?: { initialMs: number; maxMs: number };
  random?: () => number;
}

const LIST_ACCEPT_METADATA = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json';
const WATCH_ACCEPT_METADATA = 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json';

/** Marks an error thrown by a handler, so the loop ends instead of retrying. */
class HandlerFailure {
  readonly cause: unknown;
  constructor(cause: unknown) {
    this.cause = cause;
  }
}

export class ListWatch<T extends KubeObjectLike> {
  readonly #opts: Required<Pick<ListWatchOptions, 'pageSize' | 'watchTimeoutMs'>> & ListWatchOptions;
  readonly #handler: ListWatchHandler<T>;
  readonly #backoff: ReconnectBackoff;
  readonly #random: () => number;
  #rv: string | undefined;

  constructor(opts: ListWatchOptions, handler: ListWatchHandler<T>) {
    this.#opts = { pageSize: 500, watchTimeoutMs: 300_000, ...opts };
    this.#handler = handler;
    this.#random = opts.random ?? Math.random;
    this.#backoff = new ReconnectBackoff({ initialMs: opts.backoff?.initialMs ?? 1000, maxMs: opts.backoff?.maxMs ?? 30_000, random: this.#random });
  }

  /** The resourceVersion the handler has consumed up to (undefined before the first list completes). */
  get resourceVersion(): string | undefined {
    return this.#rv;
  }

  /**
   * Runs until `signal` aborts (resolves) or a handler throws (rejects with
   * its error). With `fromRv` it first tries to resume the watch from there;
   * a 410 then relists with reason `gone`.
   */
  async run(signal: AbortSignal, fromRv?: string): Promise<void> {
    this.#rv = fromRv;
    let listReason: ListReason = 'start';
    while (!signal.aborted) {
      try {
        if (this.#rv === undefined) {
          this.#rv = await this.#listWithRetry(listReason, signal);
          if (this.#rv === undefined) return; // aborted
        }
        const end = await this.#watchOnce(this.#rv, signal);
        if (signal.aborted) return;
        if (end.reason === 'gone') {
          this.#rv = undefined;
          listReason = 'gone';
        }
        const delayMs = end.reason === 'gone' ? 0 : end.healthy ? this.#backoff.calmDelayMs() : this.#backoff.nextDelayMs();
        if (end.healthy) this.#backoff.reset();
        this.#handler.onWatchEnd?.({ reason: end.reason, error: end.error, delayMs });
        await sleep(delayMs, signal);
      } catch (err) {
        if (err instanceof HandlerFailure) throw err.cause;
        throw err;
      }
    }
  }

  /**
   * One complete paginated list, pages handed to `onPage`. Retries API errors
   * with backoff; an expired continue token restarts the list. Returns the
   * list's resourceVersion, or undefined when aborted.
   */
  async list(reason: ListReason, signal: AbortSignal): Promise<string | undefined> {
    try {
      return await this.#listWithRetry(reason, signal);
    } catch (err) {
      if (err instanceof HandlerFailure) throw err.cause;
      throw err;
    }
  }

  async #listWithRetry(reason: ListReason, signal: AbortSignal): Promise<string | undefined> {
    let why = reason;
    while (!signal.aborted) {
      this.#handler.onListStart?.(why);
      try {
        const rv = await this.#listOnce(why, signal);
        this.#backoff.reset();
        return rv;
      } catch (err) {
        if (err instanceof HandlerFailure || signal.aborted) throw err;
        if (err instanceof KubeApiError && err.gone) {
          // The continue token's snapshot was compacted: start the list over.
          why = 'continue_expired';
          this.#handler.onError?.({ phase: 'list', error: err, delayMs: 0 });
          continue;
        }
        const delayMs = retryDelay(err, this.#backoff);
        this.#handler.onError?.({ phase: 'list', error: err, delayMs });
        await sleep(delayMs, signal);
      }
    }
    return undefined;
  }

  async #listOnce(reason: ListReason, signal: AbortSignal): Promise<string> {
    const { client, path, pageSize, metadataOnly } = this.#opts;
    let cont: string | undefined;
    for (let pageIndex = 0; ; pageIndex++) {
      const query: Record<string, QueryValue> = {
        limit: pageSize > 0 ? pageSize : undefined,
        continue: cont,
        fieldSelector: this.#opts.fieldSelector || undefined,
        labelSelector: this.#opts.labelSelector || undefined,
      };
      const list = await client.request<{ metadata?: { resourceVersion?: string; continue?: string }; items?: T[] }>({
        path,
        query,
        accept: metadataOnly ? LIST_ACCEPT_METADATA : undefined,
        signal,
      });
      this.#handler.onContact?.();
      const rv = list.metadata?.resourceVersion ?? '';
      cont = list.metadata?.continue || undefined;
      const items = list.items ?? [];
      const page: ListPage<T> = { items, resourceVersion: rv, pageIndex, last: cont === undefined, reason, bytes: 0 };
      await this.#call(() => this.#handler.onPage(page));
      if (cont === undefined) return rv;
    }
  }

  async #watchOnce(fromRv: string, signal: AbortSignal): Promise<{ reason: WatchEndReason; healthy: boolean; error?: unknown }> {
    const { client, path, metadataOnly } = this.#opts;
    const timeoutMs = this.#opts.watchTimeoutMs * (1 + this.#random());
    const startedMs = Date.now();
    let chunks = 0;
    try {
      const stream = client.watch({
        path,
        query: {
          watch: 1,
          resourceVersion: fromRv,
          allowWatchBookmarks: true,
          timeoutSeconds: Math.max(1, Math.round(timeoutMs / 1000)),
          fieldSelector: this.#opts.fieldSelector || undefined,
          labelSelector: this.#opts.labelSelector || undefined,
        },
        accept: metadataOnly ? WATCH_ACCEPT_METADATA : undefined,
        signal,
        maxLifeMs: timeoutMs + 60_000,
      });
      for await (const chunk of stream) {
        chunks += 1;
        this.#handler.onContact?.();
        const events: Array<WatchItem<T>> = [];
        let rv = this.#rv ?? fromRv;
        let failure: KubeStatus | undefined;
        for (const e of chunk.events) {
          if (e.type === 'ERROR') {
            failure = e.object as KubeStatus;
            break;
          }
          events.push(e as WatchItem<T>);
          const objRv = (e.object as KubeObjectLike).metadata?.resourceVersion;
          if (objRv) rv = objRv;
        }
        if (events.length > 0) {
          await this.#call(() => this.#handler.onWatch({ events, resourceVersion: rv, bytes: chunk.bytes }));
          this.#rv = rv;
        }
        if (failure) {
          const err = new KubeApiError(failure.code ?? 500, `watch ${path}: ${failure.code ?? ''} ${failure.reason ?? ''} ${failure.message ?? ''}`.trim(), failure);
          return { reason: err.gone ? 'gone' : 'error', healthy: false, error: err };
        }
      }
      // A clean end is the server's timeout; a watch that ends at once and empty is not healthy.
      const healthy = chunks > 0 || Date.now() - startedMs >= 1000;
      return { reason: 'timeout', healthy };
    } catch (err) {
      if (err instanceof HandlerFailure) throw err;
      if (signal.aborted) return { reason: 'closed', healthy: true };
      if (err instanceof KubeApiError) return { reason: err.gone ? 'gone' : 'error', healthy: false, error: err };
      // A reset after a stream that worked for a while is routine (apiserver restart, LB idle timeout).
      return { reason: 'closed', healthy: chunks > 0 && Date.now() - startedMs >= 1000, error: err };
    }
  }

  async #call(fn: () => Promise<void> | void): Promise<void> {
    try {
      await fn();
    } catch (err) {
      throw new HandlerFailure(err);
    }
  }
}

function retryDelay(err: unknown, backoff: ReconnectBackoff): number {
  const d = backoff.nextDelayMs();
  if (err instanceof KubeApiError && err.retryAfterMs !== undefined) return Math.max(d, Math.min(err.retryAfterMs, 60_000));
  return d;
}
