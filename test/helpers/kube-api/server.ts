// A Kubernetes API server emulation on node:http for tests: real paths, Status errors,
// list/watch semantics (resourceVersion, 410 Expired, bookmarks, limit/continue), metadata-only
// responses, optimistic concurrency and event TTL, plus switches to make it fail the way a real
// apiserver does (down, error injection, history compaction, watch closure, token rotation).
import { once } from 'node:events';
import http from 'node:http';
import type { Socket } from 'node:net';
import { ResourceApi, buildMatcher, parseResourceVersion, type ListQuery, type ListResult } from './api.ts';
import { contentTypeFor, negotiate, toPartialObjectMetadata } from './content.ts';
import { apiVersionOf, findView, primaryView, type ResourceView, resourceViews } from './resources.ts';
import { badRequest, failureStatus, invalid, KubeApiError, notFound, pathNotFound, reasonForCode } from './status.ts';
import { kubeMicroTime, kubeTime, ObjectStore, objectKey } from './store.ts';
import type {
  CoreEvent,
  DownMode,
  FailNextOptions,
  KubeApiServerOptions,
  KubeObject,
  ObjectReference,
  OwnerReference,
  RequestLogEntry,
  ResourceKey,
  Status,
  StoredObject,
} from './types.ts';
import { WatchStream } from './watch.ts';

const defaultWatchTimeoutSeconds = 300;
const defaultCompactionWindow = 100_000;
const defaultEventTtlMs = 60 * 60 * 1000;
const defaultBookmarkIntervalMs = 10_000;
// Resource versions start well above zero: "0" means "any version" to the API, and real
// clusters never hand out small numbers, so clients must treat them as opaque.
const initialResourceVersion = 1000;
const maxBodyBytes = 8 * 1024 * 1024;

export interface AddEventOptions {
  namespace: string;
  name?: string;
  reason: string;
  message: string;
  type?: 'Normal' | 'Warning';
  involvedObject: ObjectReference;
  count?: number;
  source?: { component?: string; host?: string };
  reportingComponent?: string;
  reportingInstance?: string;
  firstTimestamp?: string;
  lastTimestamp?: string;
  eventTime?: string;
  action?: string;
  series?: { count: number; lastObservedTime: string };
  labels?: Record<string, string>;
}

export interface AddPodOptions {
  namespace: string;
  name: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  nodeName?: string;
  ownerReferences?: OwnerReference[];
  phase?: string;
  podIP?: string;
  serviceAccountName?: string;
}

export interface AddReplicaSetOptions {
  namespace: string;
  name: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  replicas?: number;
}

export interface AddNamespaceOptions {
  name: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

interface FailureRule {
  remaining: number;
  code: number;
  options: FailNextOptions;
}

function parseBool(value: string | undefined): boolean | undefined {
  if (value === undefined || value === '') return undefined;
  if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(value)) return true;
  if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(value)) return false;
  throw badRequest(`invalid boolean value "${value}"`);
}

/** An owner reference pointing at `owner`, as controllers set them. */
export function ownerReferenceTo(owner: StoredObject, controller = true): OwnerReference {
  return {
    apiVersion: String(owner.apiVersion),
    kind: String(owner.kind),
    name: owner.metadata.name,
    uid: owner.metadata.uid,
    controller,
    blockOwnerDeletion: true,
  };
}

export class KubeApiServer {
  /** Every request received, in arrival order; clear with `requests.length = 0`. */
  readonly requests: RequestLogEntry[] = [];
  readonly #server: http.Server;
  readonly #store: ObjectStore;
  readonly #api: ResourceApi;
  readonly #watchTimeoutSeconds: number;
  readonly #eventTtlMs: number;
  readonly #bookmarkIntervalMs: number;
  readonly #watches = new Set<WatchStream>();
  readonly #sockets = new Set<Socket>();
  readonly #failures: FailureRule[] = [];
  readonly #watchWaiters = new Set<() => void>();
  #token: string | undefined;
  #down: DownMode | undefined;
  #ttlTimer: NodeJS.Timeout | undefined;
  #url = '';
  #eventNameSeq = 0;

  private constructor(options: KubeApiServerOptions) {
    this.#token = options.token;
    this.#watchTimeoutSeconds = options.watchTimeoutSeconds ?? defaultWatchTimeoutSeconds;
    this.#eventTtlMs = options.eventTtlMs ?? defaultEventTtlMs;
    this.#bookmarkIntervalMs = options.bookmarkIntervalMs ?? defaultBookmarkIntervalMs;
    this.#store = new ObjectStore(initialResourceVersion, options.compactionWindow ?? defaultCompactionWindow);
    this.#api = new ResourceApi(this.#store, () => Date.now());
    this.#server = http.createServer((req, res) => this.#handle(req, res));
    this.#server.on('connection', (socket: Socket) => {
      if (this.#down === 'reset') {
        socket.destroy();
        return;
      }
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
    if (options.eventTtlMs !== undefined) {
      const sweepMs = Math.max(10, Math.min(1000, Math.floor(options.eventTtlMs / 4)));
      this.#ttlTimer = setInterval(() => this.expireEvents(), sweepMs);
      this.#ttlTimer.unref();
    }
  }

  static async start(options: KubeApiServerOptions = {}): Promise<KubeApiServer> {
    const server = new KubeApiServer(options);
    server.#server.listen(0, '127.0.0.1');
    await once(server.#server, 'listening');
    const address = server.#server.address();
    if (address === null || typeof address === 'string') throw new Error('kube-api-server: no TCP address');
    server.#url = `http://127.0.0.1:${address.port}`;
    return server;
  }

  /** `http://127.0.0.1:PORT`, no trailing slash. */
  get url(): string {
    return this.#url;
  }

  /** The current global resourceVersion (the one a list made now would report). */
  get resourceVersion(): string {
    return String(this.#store.currentRv);
  }

  get activeWatchCount(): number {
    return this.#watches.size;
  }

  /** Rotates the bearer token; requests with the old one get 401 from now on. Undefined disables auth. */
  setToken(token: string | undefined): void {
    this.#token = token;
  }

  // ---- object store -------------------------------------------------------------------

  create(resource: ResourceKey, obj: KubeObject): StoredObject {
    const view = primaryView(resource);
    return this.#out(view, this.#api.create(view, obj.metadata?.namespace, clean(obj)));
  }

  /** Replaces an object; a set metadata.resourceVersion must match (else a 409 KubeApiError). */
  update(resource: ResourceKey, obj: KubeObject): StoredObject {
    const view = primaryView(resource);
    const name = obj.metadata?.name;
    if (name === undefined) throw new Error('update needs metadata.name');
    return this.#out(view, this.#api.update(view, obj.metadata?.namespace, name, clean(obj)));
  }

  /** Applies a JSON merge patch (RFC 7386) to the object as `get` returns it. */
  patch(resource: ResourceKey, namespace: string | undefined, name: string, mergePatch: Record<string, unknown>): StoredObject {
    const view = primaryView(resource);
    return this.#out(view, this.#api.patch(view, namespace, name, 'application/merge-patch+json', clean(mergePatch)));
  }

  /** Deletes and returns the last state, stamped with the deletion's resourceVersion. */
  delete(resource: ResourceKey, namespace: string | undefined, name: string): StoredObject {
    const view = primaryView(resource);
    return this.#out(view, this.#api.delete(view, namespace, name));
  }

  get(resource: ResourceKey, namespace: string | undefined, name: string): StoredObject | undefined {
    const view = primaryView(resource);
    const obj = this.#storeGet(resource, namespace, name);
    return obj === undefined ? undefined : this.#out(view, obj);
  }

  list(resource: ResourceKey, namespace?: string): StoredObject[] {
    const view = primaryView(resource);
    return this.#store
      .current(resource)
      .filter((o) => namespace === undefined || o.metadata.namespace === namespace)
      .map((o) => this.#out(view, o));
  }

  addEvent(options: AddEventOptions): CoreEvent {
    const nowMs = Date.now();
    const involved = options.involvedObject;
    // client-go names events `<involved name>.<unix nanos in hex>`.
    const nanos = BigInt(nowMs) * 1_000_000n + BigInt(this.#eventNameSeq++ % 1_000_000);
    const name = options.name ?? `${involved.name ?? 'unknown'}.${nanos.toString(16)}`;
    const event: KubeObject = {
      metadata: { name, namespace: options.namespace, ...(options.labels ? { labels: options.labels } : {}) },
      involvedObject: involved,
      reason: options.reason,
      message: options.message,
      source: options.source ?? { component: 'ktrail-test' },
      firstTimestamp: options.firstTimestamp ?? kubeTime(nowMs),
      lastTimestamp: options.lastTimestamp ?? kubeTime(nowMs),
      count: options.count ?? 1,
      type: options.type ?? 'Normal',
      eventTime: options.eventTime ?? null,
      reportingComponent: options.reportingComponent ?? '',
      reportingInstance: options.reportingInstance ?? '',
    };
    if (options.action !== undefined) event.action = options.action;
    if (options.series !== undefined) event.series = options.series;
    return this.create('events', event) as CoreEvent;
  }

  /** Records one more occurrence: count+1 (and series.count+1 if present), new lastTimestamp, new RV. */
  bumpEvent(namespace: string, name: string, message?: string): CoreEvent {
    const current = this.#storeGet('events', namespace, name) as CoreEvent | undefined;
    if (current === undefined) throw notFound('', 'events', name);
    const nowMs = Date.now();
    const next: KubeObject = { ...current, count: (current.count ?? 1) + 1, lastTimestamp: kubeTime(nowMs) };
    if (message !== undefined) next.message = message;
    const series = current.series as { count?: number } | undefined;
    if (series !== undefined) next.series = { ...series, count: (series.count ?? 1) + 1, lastObservedTime: kubeMicroTime(nowMs) };
    return this.update('events', next) as CoreEvent;
  }

  addPod(options: AddPodOptions): StoredObject {
    const spec: Record<string, unknown> = {
      containers: [{ name: 'app', image: 'registry.k8s.io/pause:3.10' }],
      restartPolicy: 'Always',
      schedulerName: 'default-scheduler',
      serviceAccountName: options.serviceAccountName ?? 'default',
    };
    if (options.nodeName !== undefined) spec.nodeName = options.nodeName;
    const status: Record<string, unknown> = { phase: options.phase ?? (options.nodeName === undefined ? 'Pending' : 'Running') };
    if (options.podIP !== undefined) status.podIP = options.podIP;
    return this.create('pods', { metadata: meta(options), spec, status });
  }

  addReplicaSet(options: AddReplicaSetOptions): StoredObject {
    const labels = options.labels ?? { app: options.name };
    const replicas = options.replicas ?? 1;
    return this.create('replicasets', {
      metadata: { ...meta(options), labels },
      spec: {
        replicas,
        selector: { matchLabels: labels },
        template: { metadata: { labels }, spec: { containers: [{ name: 'app', image: 'registry.k8s.io/pause:3.10' }] } },
      },
      status: { replicas, readyReplicas: replicas, availableReplicas: replicas, observedGeneration: 1 },
    });
  }

  addNamespace(nameOrOptions: string | AddNamespaceOptions): StoredObject {
    const options = typeof nameOrOptions === 'string' ? { name: nameOrOptions } : nameOrOptions;
    return this.create('namespaces', { metadata: meta({ ...options, namespace: undefined }) });
  }

  // ---- failure switches ---------------------------------------------------------------

  /** Forgets all change history: watches and Exact lists from any older RV, and continue tokens, get 410. */
  expireHistory(): void {
    this.#store.compactAll();
  }

  /** Deletes events whose last write is at least the TTL old (DELETED reaches watches). Returns them. */
  expireEvents(nowMs: number = Date.now()): StoredObject[] {
    const expiredEvents: StoredObject[] = [];
    for (const obj of this.#store.current('events')) {
      const key = objectKey(obj.metadata.namespace, obj.metadata.name);
      const writtenAtMs = this.#store.writtenAtMs('events', key) ?? 0;
      if (writtenAtMs + this.#eventTtlMs <= nowMs) {
        expiredEvents.push(this.delete('events', obj.metadata.namespace, obj.metadata.name));
      }
    }
    return expiredEvents;
  }

  /** Ends every open watch stream cleanly from the server side. */
  closeAllWatches(): void {
    for (const watch of this.#watches) watch.end();
  }

  /**
   * While down, requests fail: 'reset' destroys sockets (new connections too), '503' answers
   * a ServiceUnavailable Status. Going down also drops every open watch.
   */
  setDown(down: boolean, mode: DownMode = 'reset'): void {
    this.#down = down ? mode : undefined;
    if (!down) return;
    for (const watch of this.#watches) {
      if (mode === 'reset') watch.destroy();
      else watch.end();
    }
    if (mode === 'reset') {
      for (const socket of this.#sockets) socket.destroy();
    }
  }

  /** The next `count` matching requests get a Status with HTTP `code` instead of being served. */
  failNext(count: number, code: number, options: FailNextOptions = {}): void {
    this.#failures.push({ remaining: count, code, options });
  }

  /** Resolves once at least `count` watches are open. */
  async waitForWatches(count: number, timeoutMs = 5000): Promise<void> {
    if (this.#watches.size >= count) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#watchWaiters.delete(check);
        reject(new Error(`kube-api-server: ${this.#watches.size} watches open after ${timeoutMs} ms, wanted ${count}`));
      }, timeoutMs);
      const check = (): void => {
        if (this.#watches.size < count) return;
        clearTimeout(timer);
        this.#watchWaiters.delete(check);
        resolve();
      };
      this.#watchWaiters.add(check);
    });
  }

  async close(): Promise<void> {
    if (this.#ttlTimer !== undefined) clearInterval(this.#ttlTimer);
    for (const watch of this.#watches) watch.end();
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
  }

  // ---- HTTP ---------------------------------------------------------------------------

  #storeGet(resource: ResourceKey, namespace: string | undefined, name: string): StoredObject | undefined {
    const view = primaryView(resource);
    return this.#store.get(resource, objectKey(view.namespaced ? namespace : undefined, name));
  }

  #out(view: ResourceView, obj: StoredObject): StoredObject {
    return structuredClone(view.toApi(obj)) as StoredObject;
  }

  #handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const query = Object.fromEntries(url.searchParams.entries());
    const entry: RequestLogEntry = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query,
      watch: isWatchPath(url.pathname) || ['1', 't', 'T', 'true', 'TRUE', 'True'].includes(query.watch ?? ''),
      accept: req.headers.accept,
      status: undefined,
      timeMs: Date.now(),
    };
    this.requests.push(entry);
    res.on('finish', () => {
      entry.status = res.statusCode;
    });

    if (this.#down === 'reset') {
      entry.status = 0;
      req.socket.destroy();
      return;
    }
    if (this.#down === '503') {
      this.#sendStatus(res, entry, failureStatus(503, 'ServiceUnavailable', 'the server is currently unable to handle the request'));
      return;
    }
    const rule = this.#failures.find((r) => r.remaining > 0 && ruleMatches(r.options, entry));
    if (rule !== undefined) {
      rule.remaining--;
      if (rule.remaining === 0) this.#failures.splice(this.#failures.indexOf(rule), 1);
      const status = failureStatus(rule.code, reasonForCode(rule.code), rule.options.message ?? `injected failure ${rule.code}`);
      if (rule.options.retryAfterSeconds !== undefined) {
        status.details = { retryAfterSeconds: rule.options.retryAfterSeconds };
        res.setHeader('Retry-After', String(rule.options.retryAfterSeconds));
      }
      this.#sendStatus(res, entry, status);
      return;
    }
    if (this.#token !== undefined && req.headers.authorization !== `Bearer ${this.#token}`) {
      this.#sendStatus(res, entry, failureStatus(401, 'Unauthorized', 'Unauthorized'));
      return;
    }
    this.#route(req, res, url, entry).catch((err: unknown) => {
      if (err instanceof KubeApiError) this.#sendStatus(res, entry, err.status);
      else this.#sendStatus(res, entry, failureStatus(500, 'InternalError', `Internal error occurred: ${String(err)}`));
    });
  }

  async #route(req: http.IncomingMessage, res: http.ServerResponse, url: URL, entry: RequestLogEntry): Promise<void> {
    const segments = url.pathname.split('/').filter((s) => s !== '').map(decodeURIComponent);
    const method = req.method ?? 'GET';
    const query = entry.query;

    if (segments.length === 1 && ['healthz', 'livez', 'readyz'].includes(segments[0] as string)) {
      res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' }).end('ok');
      return;
    }
    if (segments.length === 1 && segments[0] === 'version') {
      this.#sendJson(res, 200, { major: '1', minor: '33', gitVersion: 'v1.33.0', platform: 'linux/amd64' });
      return;
    }

    let group: string;
    let version: string | undefined;
    let rest: string[];
    if (segments[0] === 'api') {
      group = '';
      version = segments[1];
      rest = segments.slice(2);
    } else if (segments[0] === 'apis') {
      group = segments[1] ?? '';
      version = segments[2];
      rest = segments.slice(3);
    } else {
      throw pathNotFound();
    }
    if (method === 'GET' && (version === undefined || rest.length === 0)) {
      this.#discovery(res, segments);
      return;
    }
    if (version === undefined) throw pathNotFound();

    let forceWatch = false;
    if (rest[0] === 'watch') {
      forceWatch = true;
      rest = rest.slice(1);
    }
    let namespace: string | undefined;
    let plural: string | undefined;
    let name: string | undefined;
    let subresource: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3) {
      [, namespace, plural, name, subresource] = rest;
      if (rest.length > 5) throw pathNotFound();
    } else {
      [plural, name, subresource] = rest;
      if (rest.length > 3) throw pathNotFound();
    }
    const view = plural === undefined ? undefined : findView(group, version, plural);
    if (view === undefined || subresource !== undefined) throw pathNotFound();
    if (!view.namespaced && namespace !== undefined) throw pathNotFound();
    // A namespaced object is only addressable under its namespace.
    if (view.namespaced && namespace === undefined && name !== undefined) throw pathNotFound();

    const watch = forceWatch || parseBool(query.watch) === true;
    switch (method) {
      case 'GET':
        if (watch) {
          this.#watch(req, res, view, namespace, name, query);
          entry.status = res.statusCode;
        }
        else if (name === undefined) this.#list(req, res, view, namespace, query);
        else this.#get(req, res, view, namespace, name);
        return;
      case 'POST': {
        if (name !== undefined) break;
        const created = this.#api.create(view, namespace, await readJson(req));
        this.#sendJson(res, 201, view.toApi(created));
        return;
      }
      case 'PUT': {
        if (name === undefined) break;
        const body = await readJson(req);
        const existed = this.#store.get(view.resource, objectKey(view.namespaced ? namespace : undefined, name)) !== undefined;
        const updated = this.#api.update(view, namespace, name, body);
        this.#sendJson(res, existed ? 200 : 201, view.toApi(updated));
        return;
      }
      case 'PATCH': {
        if (name === undefined) break;
        const body = await readJson(req);
        const patched = this.#api.patch(view, namespace, name, req.headers['content-type'] ?? '', body);
        this.#sendJson(res, 200, view.toApi(patched));
        return;
      }
      case 'DELETE': {
        const body = await readJson(req, true);
        const preconditions = (body.preconditions ?? undefined) as { uid?: string; resourceVersion?: string } | undefined;
        if (name === undefined) {
          this.#deleteCollection(res, view, namespace, query);
          return;
        }
        const deleted = this.#api.delete(view, namespace, name, preconditions);
        // Pod and Namespace registries answer with the object; the others with a Success Status.
        if (view.resource === 'pods' || view.resource === 'namespaces') {
          this.#sendJson(res, 200, view.toApi(deleted));
        } else {
          const details: Record<string, string> = { name, kind: view.plural, uid: deleted.metadata.uid };
          if (view.group !== '') details.group = view.group;
          this.#sendJson(res, 200, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details });
        }
        return;
      }
      default:
        break;
    }
    throw new KubeApiError(failureStatus(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`));
  }

  #list(req: http.IncomingMessage, res: http.ServerResponse, view: ResourceView, namespace: string | undefined, query: Record<string, string>): void {
    const rep = negotiate(req.headers.accept, 'PartialObjectMetadataList');
    const listQuery: ListQuery = {
      namespace,
      fieldSelector: query.fieldSelector,
      labelSelector: query.labelSelector,
      limit: query.limit,
      continue: query.continue,
      resourceVersion: query.resourceVersion,
      resourceVersionMatch: query.resourceVersionMatch,
    };
    const result: ListResult = this.#api.list(view, listQuery);
    const metadata: Record<string, unknown> = { resourceVersion: String(result.resourceVersion) };
    if (result.continue !== undefined) metadata.continue = result.continue;
    if (result.remainingItemCount !== undefined) metadata.remainingItemCount = result.remainingItemCount;
    if (rep.kind === 'metadata') {
      this.#sendJson(
        res,
        200,
        {
          kind: 'PartialObjectMetadataList',
          apiVersion: `meta.k8s.io/${rep.version}`,
          metadata,
          items: result.items.map((o) => toPartialObjectMetadata(o, rep.version)),
        },
        contentTypeFor(rep, 'PartialObjectMetadataList'),
      );
      return;
    }
    // Items of a typed list carry no apiVersion/kind of their own, as on a real apiserver.
    const items = result.items.map((o) => {
      const { apiVersion: _a, kind: _k, ...rest } = view.toApi(o);
      return rest;
    });
    this.#sendJson(res, 200, { kind: `${view.kind}List`, apiVersion: apiVersionOf(view), metadata, items });
  }

  #get(req: http.IncomingMessage, res: http.ServerResponse, view: ResourceView, namespace: string | undefined, name: string): void {
    const rep = negotiate(req.headers.accept, 'PartialObjectMetadata');
    const obj = this.#api.get(view, namespace, name);
    if (rep.kind === 'metadata') {
      this.#sendJson(res, 200, toPartialObjectMetadata(obj, rep.version), contentTypeFor(rep, 'PartialObjectMetadata'));
    } else {
      this.#sendJson(res, 200, view.toApi(obj));
    }
  }

  #watch(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    view: ResourceView,
    namespace: string | undefined,
    name: string | undefined,
    query: Record<string, string>,
  ): void {
    const representation = negotiate(req.headers.accept, 'PartialObjectMetadata');
    let fieldSelector = query.fieldSelector;
    if (name !== undefined) {
      const byName = `metadata.name=${name.replace(/([\\,=])/g, '\\$1')}`;
      fieldSelector = fieldSelector === undefined || fieldSelector === '' ? byName : `${fieldSelector},${byName}`;
    }
    const matcher = buildMatcher(view, namespace, fieldSelector, query.labelSelector);
    const allowBookmarks = parseBool(query.allowWatchBookmarks) === true;
    const sendInitialEvents = parseBool(query.sendInitialEvents);
    const rvParam = query.resourceVersion ?? '';
    if (sendInitialEvents !== undefined) {
      if (query.resourceVersionMatch !== 'NotOlderThan') {
        throw invalid('ListOptions', '', 'resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan');
      }
      if (sendInitialEvents && !allowBookmarks) {
        throw invalid('ListOptions', '', 'allowWatchBookmarks: Forbidden: sendInitialEvents requires allowWatchBookmarks=true');
      }
    } else if (query.resourceVersionMatch !== undefined && query.resourceVersionMatch !== '') {
      throw invalid('ListOptions', '', 'resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided');
    }
    const fromRv = rvParam === '' || rvParam === '0' ? undefined : parseResourceVersion(rvParam);
    const requestedSeconds = query.timeoutSeconds === undefined || query.timeoutSeconds === '' ? 0 : Number(query.timeoutSeconds);
    if (!Number.isFinite(requestedSeconds) || requestedSeconds < 0) throw badRequest(`invalid timeoutSeconds "${query.timeoutSeconds}"`);
    const timeoutSeconds = requestedSeconds > 0 ? Math.min(requestedSeconds, this.#watchTimeoutSeconds) : this.#watchTimeoutSeconds;

    const stream = new WatchStream(
      res,
      this.#store,
      {
        view,
        matcher,
        representation,
        fromRv,
        sendInitialEvents,
        allowBookmarks,
        timeoutMs: timeoutSeconds * 1000,
        bookmarkIntervalMs: this.#bookmarkIntervalMs,
      },
      (closed) => this.#watches.delete(closed),
    );
    this.#watches.add(stream);
    stream.start();
    for (const waiter of this.#watchWaiters) waiter();
  }

  #deleteCollection(res: http.ServerResponse, view: ResourceView, namespace: string | undefined, query: Record<string, string>): void {
    const result = this.#api.list(view, { namespace, fieldSelector: query.fieldSelector, labelSelector: query.labelSelector });
    const deleted = result.items.map((o) => this.#api.delete(view, o.metadata.namespace, o.metadata.name));
    const items = deleted.map((o) => {
      const { apiVersion: _a, kind: _k, ...rest } = view.toApi(o);
      return rest;
    });
    this.#sendJson(res, 200, {
      kind: `${view.kind}List`,
      apiVersion: apiVersionOf(view),
      metadata: { resourceVersion: String(this.#store.currentRv) },
      items,
    });
  }

  #discovery(res: http.ServerResponse, segments: string[]): void {
    const [root, a, b] = segments;
    if (root === 'api' && a === undefined) {
      this.#sendJson(res, 200, {
        kind: 'APIVersions',
        versions: ['v1'],
        serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: new URL(this.#url).host }],
      });
      return;
    }
    const groups = [...new Set(resourceViews.filter((v) => v.group !== '').map((v) => v.group))];
    if (root === 'apis' && a === undefined) {
      this.#sendJson(res, 200, {
        kind: 'APIGroupList',
        apiVersion: 'v1',
        groups: groups.map((g) => ({ name: g, versions: [{ groupVersion: `${g}/v1`, version: 'v1' }], preferredVersion: { groupVersion: `${g}/v1`, version: 'v1' } })),
      });
      return;
    }
    if (root === 'apis' && b === undefined) {
      if (!groups.includes(a as string)) throw pathNotFound();
      this.#sendJson(res, 200, {
        kind: 'APIGroup',
        apiVersion: 'v1',
        name: a,
        versions: [{ groupVersion: `${a}/v1`, version: 'v1' }],
        preferredVersion: { groupVersion: `${a}/v1`, version: 'v1' },
      });
      return;
    }
    const group = root === 'api' ? '' : (a as string);
    const version = root === 'api' ? a : b;
    const views = resourceViews.filter((v) => v.group === group && v.version === version);
    if (views.length === 0) throw pathNotFound();
    this.#sendJson(res, 200, {
      kind: 'APIResourceList',
      apiVersion: 'v1',
      groupVersion: group === '' ? version : `${group}/${version}`,
      resources: views.map((v) => ({
        name: v.plural,
        singularName: v.singular,
        namespaced: v.namespaced,
        kind: v.kind,
        verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'],
        ...(v.shortNames.length > 0 ? { shortNames: v.shortNames } : {}),
      })),
    });
  }

  #sendJson(res: http.ServerResponse, code: number, body: unknown, contentType = 'application/json'): void {
    const payload = JSON.stringify(body);
    res.writeHead(code, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(payload) }).end(payload);
  }

  #sendStatus(res: http.ServerResponse, entry: RequestLogEntry, status: Status): void {
    if (res.headersSent) {
      // A watch already streaming can only be cut short.
      res.end();
      return;
    }
    this.#sendJson(res, status.code, status);
    entry.status = status.code;
  }
}

function isWatchPath(path: string): boolean {
  return /^\/apis?\/(?:[^/]+\/)?v1\/watch\//.test(path);
}

function ruleMatches(options: FailNextOptions, entry: RequestLogEntry): boolean {
  if (options.method !== undefined && options.method.toUpperCase() !== entry.method) return false;
  if (options.path === undefined) return true;
  return typeof options.path === 'string' ? entry.path.includes(options.path) : options.path.test(entry.path);
}

function clean<T>(value: T): T {
  // Drops `undefined` members and shares nothing with the caller's object.
  return JSON.parse(JSON.stringify(value)) as T;
}

function meta(options: {
  name: string;
  namespace?: string | undefined;
  labels?: Record<string, string> | undefined;
  annotations?: Record<string, string> | undefined;
  ownerReferences?: OwnerReference[] | undefined;
}): Record<string, unknown> {
  const metadata: Record<string, unknown> = { name: options.name };
  if (options.namespace !== undefined) metadata.namespace = options.namespace;
  if (options.labels !== undefined) metadata.labels = options.labels;
  if (options.annotations !== undefined) metadata.annotations = options.annotations;
  if (options.ownerReferences !== undefined) metadata.ownerReferences = options.ownerReferences;
  return metadata;
}

async function readJson(req: http.IncomingMessage, optional = false): Promise<KubeObject> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > maxBodyBytes) throw new KubeApiError(failureStatus(413, 'RequestEntityTooLarge', 'request entity too large'));
    chunks.push(buf);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') {
    if (optional) return {};
    throw badRequest('the request body must not be empty');
  }
  try {
    return JSON.parse(text) as KubeObject;
  } catch (err) {
    throw badRequest(`the body of the request could not be decoded: ${(err as Error).message}`);
  }
}
