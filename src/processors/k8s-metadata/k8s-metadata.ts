import { z } from 'zod';
import { duration } from '../../config/units.ts';
import { errorMessage } from '../../errors.ts';
import { KubeApiError, KubeClient } from '../../kube/client.ts';
import { inspectKube, probeKube } from '../../kube/check.ts';
import { loadKubeConnection } from '../../kube/config.ts';
import type { LogRecord } from '../../pipeline/record.ts';
import type { ComponentContext, Processor, ProcessorPlugin } from '../../plugin.ts';
import { NamespaceLabels, ReplicaSetOwners, runNamespaceFeed, runPodFeed, runReplicaSetFeed, type FeedOptions } from './feeds.ts';
import { PodCache, type PodEntry, type PodObject } from './pod-cache.ts';
import { anyNeedle } from '../paths.ts';
import { extractRefs, REF_NEEDLES, type PodRef, type RecordRefs } from './refs.ts';
import { k8sMetadataEvent, k8sMetadataLogEvents, k8sMetadataMetrics } from './telemetry.ts';

const MAY_NAME_A_POD = anyNeedle(REF_NEEDLES);

/**
 * Adds pod metadata to records under one top-level key (`kubernetes` by
 * default) without touching the original fields:
 *
 *   { cluster?, object?: Pod, actor?: { serviceAccount?, pod?: Pod, node? } }
 *   Pod = { namespace, name, uid, labels?, annotations?, node?, owner?, replicaSet?, namespaceLabels?, deleted? }
 *
 * The pods come from a watch-fed cache (feeds.ts, pod-cache.ts). A lookup
 * that misses may make one rate-limited GET; a pod the API does not have is
 * negatively cached. A batch waits at most `lookup_timeout` for GETs (and for
 * the first list after start); records whose lookups are not answered by then
 * pass on without that part of the enrichment, counted by reason in
 * `ktrail_k8s_metadata_enrich_failures_total`. Nothing here throws for a
 * record, and nothing waits on the API for longer than `lookup_timeout`.
 */

const schema = z.strictObject({
  kubeconfig: z.string().min(1).optional().describe('Kubeconfig file. Unset: in-cluster service account when running in a pod, else $KUBECONFIG or ~/.kube/config.'),
  context: z.string().min(1).optional().describe('Kubeconfig context other than the current one.'),
  namespaces: z.array(z.string().min(1)).default([]).describe('Watch pods in these namespaces only. Empty: all namespaces.'),
  node_name: z
    .string()
    .optional()
    .describe('Watch only pods on this node (fieldSelector spec.nodeName), e.g. ${NODE_NAME}; pods then come as metadata only.'),
  include_node: z.boolean().default(true).describe('Add the pod\'s node. Needs full pod objects from the API unless node_name is set; false watches metadata only.'),
  annotations: z
    .array(z.string().min(1))
    .default([])
    .describe('Pod annotation keys to add (a trailing * matches a prefix). Default: none.'),
  namespace_labels: z.boolean().default(false).describe('Add the labels of the pod\'s namespace (watches namespaces).'),
  resolve_deployments: z.boolean().default(true).describe('Report a Deployment, not its ReplicaSet, as the owner (watches ReplicaSet metadata).'),
  cluster: z.string().min(1).optional().describe('Cluster name added to every record as <target_key>.cluster.'),
  target_key: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_.-]*$/, 'use letters, digits, "_", "." and "-"')
    .default('kubernetes')
    .describe('Top-level key the enrichment is added under.'),
  deleted_ttl: duration().default(300_000).describe('How long a deleted pod stays cached (audit lines about it may arrive after the delete).'),
  negative_ttl: duration().default(60_000).describe('How long a pod the API does not have is remembered as missing.'),
  miss_get_rate: z.number().nonnegative().default(5).describe('GETs per second (token bucket) allowed for pods missing from the cache; 0 disables them.'),
  lookup_timeout: duration().default(500).describe('Longest a batch waits for GETs and the first list; then records pass on unenriched (counted).'),
  api_timeout: duration().default(10_000).describe('Timeout of one GET or list request to the API server.'),
  page_size: z.number().int().min(0).default(500).describe('Items per list page (limit); 0 lists everything at once.'),
  watch_timeout: duration().default(300_000).describe('Each watch asks the server to end it after a time drawn from [t, 2t]; it then resumes.'),
});
export type K8sMetadataConfig = z.output<typeof schema>;

type Failure = 'not_found' | 'timeout' | 'api_error' | 'rate_limited' | 'unparsable';
type Resolution = PodEntry | Failure;

const MAX_INFLIGHT_GETS = 16;
const POD_ACCEPT_METADATA = 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json';

export interface PodView {
  namespace: string;
  name: string;
  uid: string;
  labels?: Readonly<Record<string, string>>;
  annotations?: Readonly<Record<string, string>>;
  node?: string;
  owner?: { kind: string; name: string };
  replicaSet?: string;
  namespaceLabels?: Readonly<Record<string, string>>;
  deleted?: true;
}

export interface Enrichment {
  cluster?: string;
  object?: PodView;
  actor?: { serviceAccount?: { namespace: string; name: string }; pod?: PodView; node?: string };
}

/** A token bucket: `ratePerSec` tokens a second, up to a burst of max(1, rate). */
class RateLimiter {
  readonly #rate: number;
  readonly #burst: number;
  #tokens: number;
  #lastMs: number;
  constructor(ratePerSec: number) {
    this.#rate = ratePerSec;
    this.#burst = Math.max(1, Math.ceil(ratePerSec));
    this.#tokens = ratePerSec > 0 ? this.#burst : 0;
    this.#lastMs = performance.now();
  }
  take(): boolean {
    if (this.#rate <= 0) return false;
    const now = performance.now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#lastMs) / 1000) * this.#rate);
    this.#lastMs = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

interface Job {
  record: LogRecord;
  refs: RecordRefs;
  object: Resolution | undefined;
  actor: Resolution | undefined;
}

export class K8sMetadataProcessor implements Processor {
  readonly #cfg: K8sMetadataConfig;
  readonly #ctx: ComponentContext;
  readonly #labels: { processor: string };
  readonly cache: PodCache;
  readonly #owners = new ReplicaSetOwners();
  readonly #namespaces = new NamespaceLabels();
  readonly #limiter: RateLimiter;
  readonly #inflight = new Map<string, Promise<Resolution>>();
  readonly #abort = new AbortController();
  readonly #podsMetadataOnly: boolean;
  #client: KubeClient | undefined;
  #runs: Array<Promise<void>> = [];
  #synced = false;
  /** Set when a batch waited lookup_timeout for the first list in vain: later batches do not wait again. */
  #syncWaitGaveUp = false;
  #syncedPromise: Promise<void> = Promise.resolve();
  #sweepTimer: NodeJS.Timeout | undefined;
  #stopped = false;
  #lastGetWarnMs = 0;
  #lastFailureWarnMs = 0;
  readonly #unloggedFailures = new Map<Failure, number>();

  constructor(cfg: K8sMetadataConfig, ctx: ComponentContext) {
    this.#cfg = cfg;
    this.#ctx = ctx;
    this.#labels = { processor: ctx.name };
    this.#podsMetadataOnly = !cfg.include_node || cfg.node_name !== undefined;
    this.cache = new PodCache({
      deletedTtlMs: cfg.deleted_ttl,
      negativeTtlMs: cfg.negative_ttl,
      annotations: cfg.annotations,
    });
    this.#limiter = new RateLimiter(cfg.miss_get_rate);
  }

  async start(): Promise<void> {
    const cfg = this.#cfg;
    const conn = loadKubeConnection({ kubeconfig: cfg.kubeconfig, context: cfg.context });
    for (const w of conn.warnings ?? []) this.#ctx.log.warn({ event: k8sMetadataEvent.kubeconfig_warning, kubeconfig: conn.origin }, w);
    this.#client = new KubeClient(conn, { requestTimeoutMs: cfg.api_timeout });
    const feed: FeedOptions = {
      ctx: this.#ctx,
      client: this.#client,
      namespaces: cfg.namespaces,
      nodeName: cfg.node_name,
      podsMetadataOnly: this.#podsMetadataOnly,
      pageSize: cfg.page_size,
      watchTimeoutMs: cfg.watch_timeout,
      backoff: { initialMs: 1000, maxMs: 30_000 },
    };
    const signal = this.#abort.signal;
    const feeds = [runPodFeed(feed, this.cache, signal, () => k8sMetadataMetrics(this.#ctx.metrics).cacheSize.set(this.#labels, this.cache.size))];
    if (cfg.resolve_deployments) feeds.push(runReplicaSetFeed(feed, this.#owners, signal));
    if (cfg.namespace_labels) feeds.push(runNamespaceFeed(feed, this.#namespaces, signal));
    for (const f of feeds) this.#runs.push(...f.runs);
    this.#syncedPromise = Promise.all(feeds.map((f) => f.synced)).then(() => {
      this.#synced = true;
      this.#ctx.log.info({ event: k8sMetadataEvent.synced, pods: this.cache.size, replicaSetsWithDeployment: this.#owners.size }, 'k8s_metadata: caches synced');
    });
    const sweepMs = Math.max(1000, Math.min(30_000, Math.floor(Math.min(cfg.deleted_ttl, cfg.negative_ttl) / 2)));
    this.#sweepTimer = setInterval(() => {
      this.cache.sweep();
      k8sMetadataMetrics(this.#ctx.metrics).cacheSize.set(this.#labels, this.cache.size);
    }, sweepMs);
    this.#sweepTimer.unref();
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#abort.abort();
    if (this.#sweepTimer !== undefined) clearInterval(this.#sweepTimer);
    await Promise.allSettled(this.#runs);
    await this.#client?.close();
  }

  /** True once every list/watch (pods, ReplicaSets, namespaces) completed its first list. */
  get synced(): boolean {
    return this.#synced;
  }

  async process(records: LogRecord[]): Promise<LogRecord[]> {
    const deadline = performance.now() + this.#cfg.lookup_timeout;
    const jobs: Job[] = [];
    let needPods = false;
    for (const record of records) {
      const refs = this.#refsOf(record);
      if (refs === undefined) {
        this.#addClusterOnly(record);
        continue;
      }
      if (refs.object === undefined && refs.actorPod === undefined && refs.serviceAccount === undefined && refs.actorNode === undefined) {
        this.#addClusterOnly(record);
        continue;
      }
      needPods ||= refs.object !== undefined || refs.actorPod !== undefined;
      jobs.push({ record, refs, object: undefined, actor: undefined });
    }
    if (needPods && !this.#synced && !this.#syncWaitGaveUp && this.#client !== undefined) {
      // Right after start the first list is on its way: misses now would mostly be GETs for pods it brings.
      // The wait takes at most half the budget, so a GET for a pod the list cannot bring (a deleted one)
      // is still answered in this batch: a 404 is then counted as not_found, not as a timeout.
      await this.#until(this.#syncedPromise, deadline - this.#cfg.lookup_timeout / 2);
      if (!this.#synced) this.#syncWaitGaveUp = true;
    }

    const pending: Array<Promise<unknown>> = [];
    for (const job of jobs) {
      const { object, actorPod } = job.refs;
      if (object) {
        const r = this.#resolve(object);
        if (r instanceof Promise) pending.push(r.then((v) => (job.object = v)));
        else job.object = r;
      }
      if (actorPod) {
        const r = this.#resolve(actorPod);
        if (r instanceof Promise) pending.push(r.then((v) => (job.actor = v)));
        else job.actor = r;
      }
    }
    if (pending.length > 0) await this.#until(Promise.all(pending), deadline);

    const failures = new Map<Failure, number>();
    for (const job of jobs) {
      // Lookups still unanswered at the deadline: the GET goes on and fills the cache for later records.
      if (job.refs.object && job.object === undefined) job.object = 'timeout';
      if (job.refs.actorPod && job.actor === undefined) job.actor = 'timeout';
      const failure = [job.object, job.actor].find((r): r is Failure => typeof r === 'string');
      if (failure) failures.set(failure, (failures.get(failure) ?? 0) + 1);
      this.#enrich(job);
    }
    for (const [reason, n] of failures) k8sMetadataMetrics(this.#ctx.metrics).enrichFailures.inc({ ...this.#labels, reason }, n);
    if (failures.size > 0) this.#logFailures(failures);
    return records;
  }

  /**
   * Says why records passed on unenriched, by reason (the metric's labels): at most once a minute,
   * with the counts since the last line. Only missing pods (deleted, normal) log at debug.
   */
  #logFailures(failures: ReadonlyMap<Failure, number>): void {
    for (const [reason, n] of failures) this.#unloggedFailures.set(reason, (this.#unloggedFailures.get(reason) ?? 0) + n);
    const now = Date.now();
    const onlyNotFound = [...this.#unloggedFailures.keys()].every((r) => r === 'not_found');
    if (!onlyNotFound && now - this.#lastFailureWarnMs < 60_000) return;
    const unenriched = Object.fromEntries(this.#unloggedFailures);
    this.#unloggedFailures.clear();
    if (onlyNotFound) {
      this.#ctx.log.debug({ unenriched }, 'k8s_metadata: records name pods the API does not have (not_found)');
      return;
    }
    this.#lastFailureWarnMs = now;
    this.#ctx.log.warn({ event: k8sMetadataEvent.unenriched, unenriched, lookupTimeoutMs: this.#cfg.lookup_timeout }, 'k8s_metadata: records passed on without pod metadata, counts by reason (logged at most once a minute)');
  }

  #refsOf(record: LogRecord): RecordRefs | undefined {
    const raw = record.raw;
    if (raw !== undefined && !MAY_NAME_A_POD.test(raw)) return undefined;
    try {
      return extractRefs(record.doc);
    } catch {
      k8sMetadataMetrics(this.#ctx.metrics).enrichFailures.inc({ ...this.#labels, reason: 'unparsable' });
      return undefined;
    }
  }

  #addClusterOnly(record: LogRecord): void {
    if (this.#cfg.cluster !== undefined) record.add(this.#cfg.target_key, { cluster: this.#cfg.cluster });
  }

  #enrich(job: Job): void {
    const out: Enrichment = {};
    if (this.#cfg.cluster !== undefined) out.cluster = this.#cfg.cluster;
    if (job.object !== undefined && typeof job.object !== 'string') out.object = this.#view(job.object);
    const { serviceAccount, actorNode } = job.refs;
    const actorPod = job.actor !== undefined && typeof job.actor !== 'string' ? this.#view(job.actor) : undefined;
    if (serviceAccount || actorPod || actorNode) {
      out.actor = {};
      if (serviceAccount) out.actor.serviceAccount = serviceAccount;
      if (actorPod) out.actor.pod = actorPod;
      if (actorNode) out.actor.node = actorNode;
    }
    if (out.object !== undefined || out.actor !== undefined || out.cluster !== undefined) job.record.add(this.#cfg.target_key, out);
  }

  #view(e: PodEntry): PodView {
    if (e.owner?.kind === 'ReplicaSet' && this.#cfg.resolve_deployments) {
      const dep = this.#owners.deploymentOf(e.namespace, e.owner.name);
      if (dep !== undefined) this.cache.resolveOwner(e, dep);
    }
    const v: PodView = { namespace: e.namespace, name: e.name, uid: e.uid };
    if (e.labels) v.labels = e.labels;
    if (e.annotations) v.annotations = e.annotations;
    if (e.node && this.#cfg.include_node) v.node = e.node;
    if (e.owner) v.owner = e.owner;
    if (e.replicaSet) v.replicaSet = e.replicaSet;
    if (this.#cfg.namespace_labels) {
      const nl = this.#namespaces.get(e.namespace);
      if (nl) v.namespaceLabels = nl;
    }
    if (e.deletedAtMs !== 0) v.deleted = true;
    return v;
  }

  #resolve(ref: PodRef): Resolution | Promise<Resolution> {
    const m = k8sMetadataMetrics(this.#ctx.metrics).lookups;
    const found = this.cache.lookup(ref.namespace, ref.name, ref.uid);
    if (found.kind === 'hit') {
      m.inc({ ...this.#labels, result: 'hit' });
      return found.pod;
    }
    if (found.kind === 'negative') {
      m.inc({ ...this.#labels, result: 'negative_hit' });
      return 'not_found';
    }
    m.inc({ ...this.#labels, result: 'miss' });
    const key = `${ref.namespace}/${ref.name}/${ref.uid ?? ''}`;
    const inflight = this.#inflight.get(key);
    if (inflight !== undefined) return inflight;
    if (this.#client === undefined || this.#stopped) return 'api_error';
    if (this.#inflight.size >= MAX_INFLIGHT_GETS || !this.#limiter.take()) return 'rate_limited';
    const p = this.#get(this.#client, ref).finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, p);
    return p;
  }

  async #get(client: KubeClient, ref: PodRef): Promise<Resolution> {
    k8sMetadataMetrics(this.#ctx.metrics).apiRequests.inc({ ...this.#labels, verb: 'get' });
    try {
      const pod = await client.request<PodObject>({
        path: `/api/v1/namespaces/${encodeURIComponent(ref.namespace)}/pods/${encodeURIComponent(ref.name)}`,
        // A missed pod may be on any node, so with include_node the GET asks for the full object.
        accept: this.#cfg.include_node ? undefined : POD_ACCEPT_METADATA,
        signal: this.#abort.signal,
        timeoutMs: this.#cfg.api_timeout,
      });
      const entry = this.cache.upsert(pod);
      k8sMetadataMetrics(this.#ctx.metrics).cacheSize.set(this.#labels, this.cache.size);
      if (entry === undefined) return 'api_error';
      if (ref.uid && entry.uid !== ref.uid) {
        // The name belongs to another incarnation now; the one asked about is gone.
        this.cache.markMissing(ref.namespace, ref.name, ref.uid);
        return 'not_found';
      }
      return entry;
    } catch (err) {
      if (err instanceof KubeApiError && err.statusCode === 404) {
        this.cache.markMissing(ref.namespace, ref.name);
        return 'not_found';
      }
      this.#ctx.telemetry.error('get_failed');
      const now = Date.now();
      if (now - this.#lastGetWarnMs >= 60_000) {
        this.#lastGetWarnMs = now;
        this.#ctx.log.warn({ event: k8sMetadataEvent.get_failed, namespace: ref.namespace, pod: ref.name, err: errorMessage(err) }, 'k8s_metadata: pod GET failed; records pass on unenriched (logged at most once a minute)');
      }
      return 'api_error';
    }
  }

  /** Waits for `p` until the deadline (performance.now() ms); never rejects. */
  async #until(p: Promise<unknown>, deadline: number): Promise<void> {
    const left = deadline - performance.now();
    if (left <= 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([p.catch(() => undefined), new Promise<void>((r) => (timer = setTimeout(r, left)))]);
    clearTimeout(timer);
  }
}

export const k8sMetadataProcessor: ProcessorPlugin<typeof schema> = {
  kind: 'processor',
  type: 'k8s_metadata',
  description: 'Add pod metadata (labels, node, owner, annotations) for the pod acted on and the pod that acted, from a watch-fed cache.',
  schema,
  metrics: k8sMetadataMetrics,
  logEvents: k8sMetadataLogEvents,
  create: (cfg, ctx) => new K8sMetadataProcessor(cfg, ctx),
  inspect: (cfg) => inspectKube({ kubeconfig: cfg.kubeconfig, context: cfg.context }),
  // The pod list the cache starts with.
  probe: (cfg, ctx) => {
    const ns = cfg.namespaces[0];
    return probeKube({ kubeconfig: cfg.kubeconfig, context: cfg.context }, ns === undefined ? '/api/v1/pods' : `/api/v1/namespaces/${encodeURIComponent(ns)}/pods`, ctx);
  },
};
