import { errorMessage } from '../../errors.ts';
import type { KubeClient } from '../../kube/client.ts';
import { ListWatch, type KubeObjectLike, type ListPage, type WatchBatch } from '../../kube/list-watch.ts';
import type { ComponentContext } from '../../plugin.ts';
import { nameKey, type PodCache, type PodEntry, type PodObject } from './pod-cache.ts';
import { k8sMetadataEvent, k8sMetadataMetrics } from './telemetry.ts';

/**
 * The list + watch loops that keep the caches current, built on the shared
 * `ListWatch` (pagination, bookmarks, 410 → relist, jittered backoff).
 *
 * - pods: full objects when the node name is wanted (metadata-only answers
 *   omit spec.nodeName) — reduced to a PodEntry on arrival — else
 *   PartialObjectMetadata; scoped to all namespaces, some namespaces, or one
 *   node (`fieldSelector=spec.nodeName=<node>`, which also gives the node);
 * - replicasets (metadata only): which Deployment owns a ReplicaSet;
 * - namespaces (metadata only): namespace labels.
 */

export interface FeedOptions {
  ctx: ComponentContext;
  client: KubeClient;
  /** Empty: all namespaces. */
  namespaces: readonly string[];
  nodeName: string | undefined;
  podsMetadataOnly: boolean;
  pageSize: number;
  watchTimeoutMs: number;
  backoff: { initialMs: number; maxMs: number };
}

type Kind = 'pods' | 'replicasets' | 'namespaces';

/** Requests counted as they are made: each list page, each watch opened. */
function handlers<T extends KubeObjectLike>(
  o: FeedOptions,
  kind: Kind,
  scope: string,
  apply: { page(page: ListPage<T>): void; watch(batch: WatchBatch<T>): void },
  onSynced: () => void,
) {
  const { ctx } = o;
  const labels = { processor: ctx.name };
  let lastWarnMs = 0;
  const warn = (fields: Record<string, unknown>, msg: string) => {
    // An API outage repeats the same failure every few seconds: log it at most once a minute.
    const now = Date.now();
    if (now - lastWarnMs < 60_000) return;
    lastWarnMs = now;
    ctx.log.warn({ resource: kind, scope, ...fields }, msg);
  };
  return {
    onPage: (page: ListPage<T>) => {
      k8sMetadataMetrics(ctx.metrics).apiRequests.inc({ ...labels, verb: 'list' });
      apply.page(page);
      if (page.last) {
        // The watch that follows a complete list.
        k8sMetadataMetrics(ctx.metrics).apiRequests.inc({ ...labels, verb: 'watch' });
        onSynced();
      }
    },
    onWatch: (batch: WatchBatch<T>) => apply.watch(batch),
    onWatchEnd: ({ reason, error, delayMs }: { reason: string; error?: unknown; delayMs: number }) => {
      if (reason !== 'gone') k8sMetadataMetrics(ctx.metrics).apiRequests.inc({ ...labels, verb: 'watch' });
      if (reason === 'gone') ctx.log.info({ event: k8sMetadataEvent.relist, resource: kind, scope }, 'watch answered 410 Gone: relisting');
      else if (error !== undefined) {
        ctx.telemetry.error(`watch_${reason}`);
        warn({ event: k8sMetadataEvent.watch_ended, reason, err: errorMessage(error), retryInMs: delayMs }, 'k8s_metadata: watch ended; resuming');
      }
    },
    onError: ({ phase, error, delayMs }: { phase: 'list' | 'watch'; error: unknown; delayMs: number }) => {
      if (phase === 'list') k8sMetadataMetrics(ctx.metrics).apiRequests.inc({ ...labels, verb: 'list' });
      ctx.telemetry.error(`${phase}_failed`);
      warn({ phase, err: errorMessage(error), retryInMs: delayMs }, `k8s_metadata: ${phase} failed; retrying`);
    },
  };
}

function collection(group: 'core' | 'apps', resource: string, namespace: string | undefined): string {
  const base = group === 'core' ? '/api/v1' : '/apis/apps/v1';
  return namespace === undefined ? `${base}/${resource}` : `${base}/namespaces/${encodeURIComponent(namespace)}/${resource}`;
}

/** Starts the pod list/watch loops; `synced` resolves once every scope has completed its first list. */
export function runPodFeed(o: FeedOptions, cache: PodCache, signal: AbortSignal, onChange: () => void): { runs: Array<Promise<void>>; synced: Promise<void> } {
  const scopes: Array<string | undefined> = o.namespaces.length > 0 ? [...o.namespaces] : [undefined];
  const runs: Array<Promise<void>> = [];
  const syncs: Array<Promise<void>> = [];
  for (const namespace of scopes) {
    let seen = new Set<string>();
    const inScope = (e: PodEntry) => namespace === undefined || e.namespace === namespace;
    let resolveSynced!: () => void;
    syncs.push(new Promise<void>((r) => (resolveSynced = r)));
    const lw = new ListWatch<PodObject & KubeObjectLike>(
      {
        client: o.client,
        path: collection('core', 'pods', namespace),
        fieldSelector: o.nodeName ? `spec.nodeName=${o.nodeName}` : undefined,
        metadataOnly: o.podsMetadataOnly,
        pageSize: o.pageSize,
        watchTimeoutMs: o.watchTimeoutMs,
        backoff: o.backoff,
      },
      handlers(
        o,
        'pods',
        namespace ?? '*',
        {
          page: (page) => {
            if (page.pageIndex === 0) seen = new Set();
            for (const item of page.items) {
              const e = cache.upsert(item, o.nodeName);
              if (e) seen.add(e.uid);
            }
            if (page.last) {
              const gone = cache.endList(seen, inScope);
              if (gone > 0 && page.reason !== 'start') o.ctx.log.info({ event: k8sMetadataEvent.pods_deleted, gone, reason: page.reason }, 'k8s_metadata: pods deleted while the watch was away');
              seen = new Set();
            }
            onChange();
          },
          watch: (batch) => {
            for (const ev of batch.events) {
              if (ev.type === 'ADDED' || ev.type === 'MODIFIED') cache.upsert(ev.object, o.nodeName);
              else if (ev.type === 'DELETED') cache.markDeleted(ev.object, o.nodeName);
            }
            onChange();
          },
        },
        resolveSynced,
      ),
    );
    runs.push(runLoop(o, lw, signal, 'pods'));
  }
  return { runs, synced: Promise.all(syncs).then(() => undefined) };
}

/** ReplicaSet namespace/name → owning Deployment name (only ReplicaSets a Deployment owns). */
export class ReplicaSetOwners {
  readonly #owners = new Map<string, string>();
  get size(): number {
    return this.#owners.size;
  }
  deploymentOf(namespace: string, replicaSet: string): string | undefined {
    return this.#owners.get(nameKey(namespace, replicaSet));
  }
  set(obj: KubeObjectLike): void {
    const m = obj.metadata;
    if (!m?.name || !m.namespace) return;
    const refs = m.ownerReferences as Array<{ kind?: string; name?: string; controller?: boolean }> | undefined;
    const dep = Array.isArray(refs) ? refs.find((r) => r.kind === 'Deployment' && r.controller !== false) : undefined;
    const key = nameKey(m.namespace, m.name);
    if (dep?.name) this.#owners.set(key, dep.name);
    else this.#owners.delete(key);
  }
  delete(obj: KubeObjectLike): void {
    const m = obj.metadata;
    if (m?.name && m.namespace) this.#owners.delete(nameKey(m.namespace, m.name));
  }
}

export function runReplicaSetFeed(o: FeedOptions, owners: ReplicaSetOwners, signal: AbortSignal): { runs: Array<Promise<void>>; synced: Promise<void> } {
  const scopes: Array<string | undefined> = o.namespaces.length > 0 ? [...o.namespaces] : [undefined];
  const syncs: Array<Promise<void>> = [];
  const runs = scopes.map((namespace) => {
    let resolveSynced!: () => void;
    syncs.push(new Promise<void>((r) => (resolveSynced = r)));
    const lw = new ListWatch<KubeObjectLike>(
      { client: o.client, path: collection('apps', 'replicasets', namespace), metadataOnly: true, pageSize: o.pageSize, watchTimeoutMs: o.watchTimeoutMs, backoff: o.backoff },
      handlers(
        o,
        'replicasets',
        namespace ?? '*',
        {
          page: (page) => {
            for (const item of page.items) owners.set(item);
          },
          watch: (batch) => {
            for (const ev of batch.events) {
              if (ev.type === 'DELETED') owners.delete(ev.object);
              else if (ev.type !== 'BOOKMARK') owners.set(ev.object);
            }
          },
        },
        resolveSynced,
      ),
    );
    return runLoop(o, lw, signal, 'replicasets');
  });
  return { runs, synced: Promise.all(syncs).then(() => undefined) };
}

/** Namespace name → labels. */
export class NamespaceLabels {
  readonly #labels = new Map<string, Readonly<Record<string, string>>>();
  get(namespace: string): Readonly<Record<string, string>> | undefined {
    return this.#labels.get(namespace);
  }
  set(obj: KubeObjectLike): void {
    const name = obj.metadata?.name;
    if (!name) return;
    const labels = obj.metadata?.labels;
    if (labels && typeof labels === 'object') this.#labels.set(name, labels as Record<string, string>);
    else this.#labels.delete(name);
  }
  delete(obj: KubeObjectLike): void {
    if (obj.metadata?.name) this.#labels.delete(obj.metadata.name);
  }
}

export function runNamespaceFeed(o: FeedOptions, namespaces: NamespaceLabels, signal: AbortSignal): { runs: Array<Promise<void>>; synced: Promise<void> } {
  let resolveSynced!: () => void;
  const synced = new Promise<void>((r) => (resolveSynced = r));
  const lw = new ListWatch<KubeObjectLike>(
    {
      client: o.client,
      path: '/api/v1/namespaces',
      metadataOnly: true,
      pageSize: o.pageSize,
      watchTimeoutMs: o.watchTimeoutMs,
      backoff: o.backoff,
    },
    handlers(
      o,
      'namespaces',
      '*',
      {
        page: (page) => {
          for (const item of page.items) namespaces.set(item);
        },
        watch: (batch) => {
          for (const ev of batch.events) {
            if (ev.type === 'DELETED') namespaces.delete(ev.object);
            else if (ev.type !== 'BOOKMARK') namespaces.set(ev.object);
          }
        },
      },
      resolveSynced,
    ),
  );
  return { runs: [runLoop(o, lw, signal, 'namespaces')], synced };
}

async function runLoop(o: FeedOptions, lw: ListWatch<KubeObjectLike>, signal: AbortSignal, kind: Kind): Promise<void> {
  try {
    await lw.run(signal);
  } catch (err) {
    // Handlers here do not throw; if one ever does, enrichment degrades to GETs and misses, loudly.
    o.ctx.telemetry.error('feed_stopped');
    o.ctx.log.error({ event: k8sMetadataEvent.loop_stopped, resource: kind, err: errorMessage(err) }, 'k8s_metadata: list/watch loop stopped');
  }
}
