import {
  ApiException,
  CoordinationV1Api,
  CoreV1Api,
  EventsV1Api,
  KubeConfig,
  makeInformer,
  Watch,
  type V1Lease,
  type V1Pod,
} from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { type KubeApiServerOptions, KubeApiServer, KubeApiError, ownerReferenceTo, type Status, type WatchEvent } from './kube-api-server.ts';

const token = 'test-token';
const servers: KubeApiServer[] = [];
const watches: WatchReader[] = [];

afterEach(async () => {
  for (const w of watches.splice(0)) w.close();
  for (const s of servers.splice(0)) await s.close();
});

async function startServer(options: KubeApiServerOptions = {}): Promise<KubeApiServer> {
  const server = await KubeApiServer.start({ token, ...options });
  servers.push(server);
  return server;
}

interface JsonResponse {
  status: number;
  contentType: string | null;
  // Responses are arbitrary Kubernetes JSON; tests read fields they assert on.
  body: Record<string, any>;
}

async function call(
  server: KubeApiServer,
  path: string,
  init: { method?: string; body?: unknown; accept?: string; contentType?: string; bearer?: string | null } = {},
): Promise<JsonResponse> {
  const headers: Record<string, string> = {};
  const bearer = init.bearer === undefined ? token : init.bearer;
  if (bearer !== null) headers.authorization = `Bearer ${bearer}`;
  if (init.accept !== undefined) headers.accept = init.accept;
  if (init.body !== undefined) headers['content-type'] = init.contentType ?? 'application/json';
  const res = await fetch(server.url + path, {
    method: init.method ?? 'GET',
    headers,
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  return { status: res.status, contentType: res.headers.get('content-type'), body: (await res.json()) as Record<string, any> };
}

interface WatchReader {
  readonly status: number;
  readonly contentType: string | null;
  readonly events: WatchEvent[];
  /** Resolves when the server ends the stream; rejects if it has not within 10 s. */
  readonly ended: Promise<void>;
  next(timeoutMs?: number): Promise<WatchEvent>;
  close(): void;
}

async function openWatch(server: KubeApiServer, path: string, accept?: string): Promise<WatchReader> {
  const controller = new AbortController();
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  if (accept !== undefined) headers.accept = accept;
  const res = await fetch(server.url + path, { headers, signal: controller.signal });
  const events: WatchEvent[] = [];
  let consumed = 0;
  let wake: (() => void) | undefined;
  let done = false;
  const ended = (async () => {
    const reader = res.body?.getReader();
    if (reader === undefined) return;
    const decoder = new TextDecoder();
    let buffered = '';
    try {
      for (;;) {
        const { value, done: streamDone } = await reader.read();
        if (streamDone) break;
        buffered += decoder.decode(value, { stream: true });
        let nl = buffered.indexOf('\n');
        while (nl >= 0) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          if (line.trim() !== '') events.push(JSON.parse(line) as WatchEvent);
          nl = buffered.indexOf('\n');
        }
        wake?.();
      }
    } catch {
      // aborted by close()
    } finally {
      done = true;
      wake?.();
    }
  })();
  const reader: WatchReader = {
    status: res.status,
    contentType: res.headers.get('content-type'),
    events,
    ended: withTimeout(ended, 10_000, 'watch stream did not end'),
    async next(timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (consumed >= events.length) {
        if (done) throw new Error(`watch ended after ${events.length} events`);
        if (Date.now() > deadline) throw new Error(`no watch event within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 50);
        });
      }
      return events[consumed++] as WatchEvent;
    },
    close() {
      controller.abort();
    },
  };
  watches.push(reader);
  return reader;
}

async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function until(predicate: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function kubeConfig(server: KubeApiServer, userToken = token): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'emulated', server: server.url, skipTLSVerify: true }],
    users: [{ name: 'tester', token: userToken }],
    contexts: [{ name: 'emulated', cluster: 'emulated', user: 'tester' }],
    currentContext: 'emulated',
  });
  return kc;
}

function podRef(name: string, namespace = 'default'): { kind: string; apiVersion: string; namespace: string; name: string; uid: string } {
  return { kind: 'Pod', apiVersion: 'v1', namespace, name, uid: `uid-${name}` };
}

function addEvents(server: KubeApiServer, namespace: string, count: number): void {
  for (let i = 0; i < count; i++) {
    server.addEvent({
      namespace,
      name: `ev-${String(i).padStart(2, '0')}`,
      reason: 'Started',
      message: `message ${i}`,
      involvedObject: podRef(`pod-${i}`, namespace),
    });
  }
}

async function expectApiError(promise: Promise<unknown>, code: number): Promise<ApiException<unknown>> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(ApiException);
    const apiErr = err as ApiException<unknown>;
    expect(apiErr.code).toBe(code);
    return apiErr;
  }
  throw new Error(`expected HTTP ${code}`);
}

function statusOf(err: ApiException<unknown>): Status {
  return (typeof err.body === 'string' ? JSON.parse(err.body) : err.body) as Status;
}

describe('KubeApiServer objects', () => {
  it('gives every object server-owned metadata and bumps one global resourceVersion per write', async () => {
    const server = await startServer();
    const rv0 = Number(server.resourceVersion);
    const ns = server.addNamespace('team-a');
    const pod = server.addPod({ namespace: 'team-a', name: 'web-1', labels: { app: 'web' }, nodeName: 'node-1' });
    const ev = server.addEvent({ namespace: 'team-a', reason: 'Pulled', message: 'pulled', involvedObject: podRef('web-1', 'team-a') });
    expect([ns, pod, ev].map((o) => Number(o.metadata.resourceVersion))).toEqual([rv0 + 1, rv0 + 2, rv0 + 3]);
    expect(server.resourceVersion).toBe(String(rv0 + 3));
    for (const obj of [ns, pod, ev]) {
      expect(obj.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
      expect(obj.metadata.creationTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    }
    expect(new Set([ns, pod, ev].map((o) => o.metadata.uid)).size).toBe(3);
    expect(ns.metadata.labels).toEqual({ 'kubernetes.io/metadata.name': 'team-a' });
    expect(ev.metadata.name).toMatch(/^web-1\.[0-9a-f]+$/);
    expect(ev.count).toBe(1);
    expect(ev.firstTimestamp).toMatch(/Z$/);
    expect(ev.lastTimestamp).toBe(ev.firstTimestamp);

    const bumped = server.bumpEvent('team-a', ev.metadata.name);
    expect(bumped.count).toBe(2);
    expect(bumped.metadata.uid).toBe(ev.metadata.uid);
    expect(Number(bumped.metadata.resourceVersion)).toBe(rv0 + 4);

    const got = await call(server, `/api/v1/namespaces/team-a/events/${ev.metadata.name}`);
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({ kind: 'Event', apiVersion: 'v1', count: 2, metadata: { resourceVersion: String(rv0 + 4) } });
  });

  it('answers errors with Status objects', async () => {
    const server = await startServer();
    const missing = await call(server, '/api/v1/namespaces/default/pods/nope');
    expect(missing.status).toBe(404);
    expect(missing.body).toEqual({
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: 'pods "nope" not found',
      reason: 'NotFound',
      details: { name: 'nope', kind: 'pods' },
      code: 404,
    });
    const badField = await call(server, '/api/v1/pods?fieldSelector=spec.bogus%3Dx');
    expect(badField.status).toBe(400);
    expect(badField.body.message).toBe('field label not supported: spec.bogus');
    expect((await call(server, '/api/v1/nonsense')).status).toBe(404);
  });

  it('serves pods by node, namespaces cluster-wide and replicasets under apps/v1', async () => {
    const server = await startServer();
    server.addNamespace('a');
    server.addNamespace({ name: 'b', labels: { tier: 'gold' } });
    const rs = server.addReplicaSet({ namespace: 'a', name: 'web-7d4', labels: { app: 'web' } });
    server.addPod({ namespace: 'a', name: 'web-7d4-x', nodeName: 'node-1', labels: { app: 'web' }, ownerReferences: [ownerReferenceTo(rs)] });
    server.addPod({ namespace: 'b', name: 'db-0', nodeName: 'node-2', labels: { app: 'db' } });
    server.addPod({ namespace: 'b', name: 'cache-0', nodeName: 'node-1', labels: { app: 'cache' } });

    const onNode1 = await call(server, '/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1');
    expect(onNode1.body.kind).toBe('PodList');
    expect(onNode1.body.items.map((p: any) => p.metadata.name)).toEqual(['web-7d4-x', 'cache-0']);
    expect(onNode1.body.items[0].metadata.ownerReferences[0]).toMatchObject({ kind: 'ReplicaSet', apiVersion: 'apps/v1', name: 'web-7d4', uid: rs.metadata.uid });
    // Items of a typed list carry no kind/apiVersion.
    expect(onNode1.body.items[0].kind).toBeUndefined();

    const notWeb = await call(server, '/api/v1/namespaces/b/pods?labelSelector=app%20in%20(db,web)');
    expect(notWeb.body.items.map((p: any) => p.metadata.name)).toEqual(['db-0']);
    const notNode1 = await call(server, '/api/v1/pods?fieldSelector=spec.nodeName!%3Dnode-1,metadata.namespace%3Db');
    expect(notNode1.body.items.map((p: any) => p.metadata.name)).toEqual(['db-0']);

    const nsList = await call(server, '/api/v1/namespaces?labelSelector=tier%3Dgold');
    expect(nsList.body.items.map((n: any) => n.metadata.name)).toEqual(['b']);
    expect((await call(server, '/api/v1/namespaces/a')).body.status.phase).toBe('Active');

    const rsGet = await call(server, '/apis/apps/v1/namespaces/a/replicasets/web-7d4');
    expect(rsGet.body).toMatchObject({ kind: 'ReplicaSet', apiVersion: 'apps/v1', metadata: { uid: rs.metadata.uid } });
    expect((await call(server, '/apis/apps/v1/replicasets')).body.items).toHaveLength(1);
    // Namespaced objects are not addressable without their namespace.
    expect((await call(server, '/api/v1/pods/db-0')).status).toBe(404);
  });

  it('applies merge patches and JSON patches with resourceVersion preconditions', async () => {
    const server = await startServer();
    const pod = server.addPod({ namespace: 'default', name: 'p', labels: { a: '1' } });
    const merged = await call(server, '/api/v1/namespaces/default/pods/p', {
      method: 'PATCH',
      contentType: 'application/merge-patch+json',
      body: { metadata: { labels: { b: '2', a: null } } },
    });
    expect(merged.status).toBe(200);
    expect(merged.body.metadata.labels).toEqual({ b: '2' });
    const jsonPatched = await call(server, '/api/v1/namespaces/default/pods/p', {
      method: 'PATCH',
      contentType: 'application/json-patch+json',
      body: [{ op: 'add', path: '/metadata/annotations', value: { note: 'x' } }],
    });
    expect(jsonPatched.body.metadata.annotations).toEqual({ note: 'x' });
    const stale = await call(server, '/api/v1/namespaces/default/pods/p', {
      method: 'PATCH',
      contentType: 'application/merge-patch+json',
      body: { metadata: { resourceVersion: pod.metadata.resourceVersion, labels: { c: '3' } } },
    });
    expect(stale.status).toBe(409);
    expect(stale.body.reason).toBe('Conflict');
  });

  it('keeps the resourceVersion when an update changes nothing, as etcd does', async () => {
    const server = await startServer();
    const pod = server.addPod({ namespace: 'default', name: 'p' });
    const same = server.update('pods', pod);
    expect(same.metadata.resourceVersion).toBe(pod.metadata.resourceVersion);
    expect(server.resourceVersion).toBe(pod.metadata.resourceVersion);
  });
});

describe('KubeApiServer authentication', () => {
  it('requires the bearer token and honours rotation', async () => {
    const server = await startServer();
    const none = await call(server, '/api/v1/events', { bearer: null });
    expect(none.status).toBe(401);
    expect(none.body).toMatchObject({ kind: 'Status', reason: 'Unauthorized', code: 401 });
    expect((await call(server, '/api/v1/events')).status).toBe(200);

    server.setToken('rotated');
    expect((await call(server, '/api/v1/events')).status).toBe(401);
    expect((await call(server, '/api/v1/events', { bearer: 'rotated' })).status).toBe(200);

    await expectApiError(kubeConfig(server).makeApiClient(CoreV1Api).listEventForAllNamespaces(), 401);
    const fresh = await kubeConfig(server, 'rotated').makeApiClient(CoreV1Api).listEventForAllNamespaces();
    expect(fresh.items).toEqual([]);
  });
});

describe('KubeApiServer list pagination and resourceVersion', () => {
  it('pages a consistent snapshot with limit and continue', async () => {
    const server = await startServer();
    addEvents(server, 'default', 5);
    const snapshotRv = server.resourceVersion;
    const first = await call(server, '/api/v1/events?limit=2');
    expect(first.body.kind).toBe('EventList');
    expect(first.body.metadata).toMatchObject({ resourceVersion: snapshotRv, remainingItemCount: 3 });
    expect(first.body.items.map((e: any) => e.metadata.name)).toEqual(['ev-00', 'ev-01']);

    // Changes after the first page do not leak into the snapshot.
    server.delete('events', 'default', 'ev-04');
    server.addEvent({ namespace: 'default', name: 'ev-03a', reason: 'r', message: 'm', involvedObject: podRef('x') });
    server.bumpEvent('default', 'ev-02');

    const second = await call(server, `/api/v1/events?limit=2&continue=${encodeURIComponent(first.body.metadata.continue)}`);
    expect(second.body.metadata.resourceVersion).toBe(snapshotRv);
    expect(second.body.items.map((e: any) => [e.metadata.name, e.count])).toEqual([
      ['ev-02', 1],
      ['ev-03', 1],
    ]);
    const third = await call(server, `/api/v1/events?limit=2&continue=${encodeURIComponent(second.body.metadata.continue)}`);
    expect(third.body.items.map((e: any) => e.metadata.name)).toEqual(['ev-04']);
    expect(third.body.metadata.continue).toBeUndefined();

    const latest = await call(server, '/api/v1/events');
    expect(latest.body.items.map((e: any) => e.metadata.name)).toEqual(['ev-00', 'ev-01', 'ev-02', 'ev-03', 'ev-03a']);
    expect(latest.body.metadata.resourceVersion).toBe(server.resourceVersion);
  });

  it('pages through @kubernetes/client-node listEventForAllNamespaces', async () => {
    const server = await startServer();
    addEvents(server, 'ns-a', 3);
    addEvents(server, 'ns-b', 2);
    const core = kubeConfig(server).makeApiClient(CoreV1Api);
    const names: string[] = [];
    let cont: string | undefined;
    let pages = 0;
    do {
      const page = await core.listEventForAllNamespaces({ limit: 2, _continue: cont });
      pages++;
      names.push(...page.items.map((e) => `${e.metadata?.namespace}/${e.metadata?.name}`));
      expect(page.items[0]?.involvedObject.kind).toBe('Pod');
      cont = page.metadata?._continue;
    } while (cont !== undefined && cont !== '');
    expect(pages).toBe(3);
    expect(names).toEqual(['ns-a/ev-00', 'ns-a/ev-01', 'ns-a/ev-02', 'ns-b/ev-00', 'ns-b/ev-01']);
  });

  it('expires continue tokens and Exact lists once history is compacted', async () => {
    const server = await startServer();
    addEvents(server, 'default', 4);
    const oldRv = server.resourceVersion;
    const first = await call(server, '/api/v1/namespaces/default/events?limit=2');
    server.addEvent({ namespace: 'default', name: 'ev-99', reason: 'r', message: 'm', involvedObject: podRef('x') });

    const exactOld = await call(server, `/api/v1/events?resourceVersion=${oldRv}&resourceVersionMatch=Exact`);
    expect(exactOld.status).toBe(200);
    expect(exactOld.body.items).toHaveLength(4);
    expect(exactOld.body.metadata.resourceVersion).toBe(oldRv);

    server.expireHistory();
    const expiredPage = await call(server, `/api/v1/namespaces/default/events?limit=2&continue=${encodeURIComponent(first.body.metadata.continue)}`);
    expect(expiredPage.status).toBe(410);
    expect(expiredPage.body).toMatchObject({ kind: 'Status', status: 'Failure', reason: 'Expired', code: 410 });
    // The Status hands out a token that continues, inconsistently, on the latest state.
    const rest = await call(server, `/api/v1/namespaces/default/events?limit=10&continue=${encodeURIComponent(expiredPage.body.metadata.continue)}`);
    expect(rest.body.items.map((e: any) => e.metadata.name)).toEqual(['ev-02', 'ev-03', 'ev-99']);

    const exactExpired = await call(server, `/api/v1/events?resourceVersion=${oldRv}&resourceVersionMatch=Exact`);
    expect(exactExpired.status).toBe(410);
    expect(exactExpired.body.reason).toBe('Expired');
    // A limit with a resourceVersion and no match means Exact too.
    expect((await call(server, `/api/v1/events?resourceVersion=${oldRv}&limit=5`)).status).toBe(410);
    // NotOlderThan is served from the latest state.
    const notOlder = await call(server, `/api/v1/events?resourceVersion=${oldRv}`);
    expect(notOlder.status).toBe(200);
    expect(notOlder.body.items).toHaveLength(5);
    const tooNew = await call(server, `/api/v1/events?resourceVersion=${Number(server.resourceVersion) + 100}`);
    expect(tooNew.status).toBe(504);
    expect(tooNew.body.details.causes[0].reason).toBe('ResourceVersionTooLarge');
  });

  it('surfaces an expired continue token to client-node as 410', async () => {
    const server = await startServer();
    addEvents(server, 'default', 3);
    const core = kubeConfig(server).makeApiClient(CoreV1Api);
    const page = await core.listNamespacedEvent({ namespace: 'default', limit: 1 });
    server.bumpEvent('default', 'ev-00');
    server.expireHistory();
    const err = await expectApiError(core.listNamespacedEvent({ namespace: 'default', limit: 1, _continue: page.metadata?._continue }), 410);
    expect(statusOf(err).reason).toBe('Expired');
  });
});

describe('KubeApiServer watch', () => {
  it('streams only changes after the given resourceVersion, with deletion resourceVersions', async () => {
    const server = await startServer();
    addEvents(server, 'default', 2);
    const list = await call(server, '/api/v1/events');
    const listRv = list.body.metadata.resourceVersion as string;
    server.addEvent({ namespace: 'default', name: 'ev-late', reason: 'r', message: 'late', involvedObject: podRef('p') });

    const watch = await openWatch(server, `/api/v1/events?watch=true&resourceVersion=${listRv}`);
    expect(watch.status).toBe(200);
    const added = await watch.next();
    expect(added.type).toBe('ADDED');
    expect(added.object).toMatchObject({ kind: 'Event', apiVersion: 'v1', metadata: { name: 'ev-late' } });
    expect(Number(added.object.metadata?.resourceVersion)).toBeGreaterThan(Number(listRv));

    const bumped = server.bumpEvent('default', 'ev-00');
    const modified = await watch.next();
    expect(modified).toMatchObject({ type: 'MODIFIED', object: { count: 2, metadata: { name: 'ev-00', resourceVersion: bumped.metadata.resourceVersion } } });

    const deleted = server.delete('events', 'default', 'ev-01');
    const del = await watch.next();
    expect(del.type).toBe('DELETED');
    expect(del.object.metadata?.resourceVersion).toBe(deleted.metadata.resourceVersion);
    expect(del.object.metadata?.resourceVersion).toBe(server.resourceVersion);
    expect(watch.events).toHaveLength(3);
  });

  it('starts with synthetic ADDED events when no resourceVersion is given', async () => {
    const server = await startServer();
    addEvents(server, 'default', 3);
    const watch = await openWatch(server, '/api/v1/namespaces/default/events?watch=1');
    const names = [(await watch.next()).object, (await watch.next()).object, (await watch.next()).object].map((o) => o.metadata?.name);
    expect(names).toEqual(['ev-00', 'ev-01', 'ev-02']);
    expect(watch.events.every((e) => e.type === 'ADDED')).toBe(true);
  });

  it('applies namespace, field and label selectors, turning objects that leave the selection into DELETED', async () => {
    const server = await startServer();
    const rv = server.resourceVersion;
    const watch = await openWatch(server, `/api/v1/namespaces/prod/events?watch=true&resourceVersion=${rv}&fieldSelector=type%3DWarning,involvedObject.kind%3DPod`);
    server.addEvent({ namespace: 'dev', name: 'w-dev', type: 'Warning', reason: 'r', message: 'm', involvedObject: podRef('a', 'dev') });
    server.addEvent({ namespace: 'prod', name: 'n-prod', type: 'Normal', reason: 'r', message: 'm', involvedObject: podRef('a', 'prod') });
    server.addEvent({
      namespace: 'prod',
      name: 'w-node',
      type: 'Warning',
      reason: 'r',
      message: 'm',
      involvedObject: { kind: 'Node', name: 'node-1' },
    });
    server.addEvent({ namespace: 'prod', name: 'w-prod', type: 'Warning', reason: 'r', message: 'm', involvedObject: podRef('a', 'prod') });
    expect((await watch.next()).object.metadata?.name).toBe('w-prod');
    server.patch('events', 'prod', 'n-prod', { type: 'Warning' });
    expect(await watch.next()).toMatchObject({ type: 'ADDED', object: { metadata: { name: 'n-prod' } } });
    const demoted = server.patch('events', 'prod', 'w-prod', { type: 'Normal' });
    const left = await watch.next();
    expect(left).toMatchObject({ type: 'DELETED', object: { type: 'Warning', metadata: { name: 'w-prod', resourceVersion: demoted.metadata.resourceVersion } } });

    const byLabel = await openWatch(server, `/api/v1/pods?watch=true&resourceVersion=${server.resourceVersion}&labelSelector=app%3Dweb`);
    server.addPod({ namespace: 'x', name: 'db', labels: { app: 'db' } });
    server.addPod({ namespace: 'x', name: 'web', labels: { app: 'web' } });
    expect((await byLabel.next()).object.metadata?.name).toBe('web');
  });

  it('sends bookmarks only when allowWatchBookmarks=true, carrying just the resourceVersion', async () => {
    const server = await startServer({ bookmarkIntervalMs: 20 });
    addEvents(server, 'default', 1);
    const rv = server.resourceVersion;
    const withBookmarks = await openWatch(server, `/api/v1/events?watch=true&resourceVersion=${rv}&allowWatchBookmarks=true`);
    const bookmark = await withBookmarks.next();
    expect(bookmark).toEqual({ type: 'BOOKMARK', object: { kind: 'Event', apiVersion: 'v1', metadata: { resourceVersion: rv } } });
    server.bumpEvent('default', 'ev-00');
    let event = await withBookmarks.next();
    while (event.type === 'BOOKMARK') event = await withBookmarks.next();
    expect(event.type).toBe('MODIFIED');
    const later = await withBookmarks.next();
    expect(later).toMatchObject({ type: 'BOOKMARK', object: { metadata: { resourceVersion: server.resourceVersion } } });

    const without = await openWatch(server, `/api/v1/events?watch=true&resourceVersion=${server.resourceVersion}&timeoutSeconds=1`);
    await without.ended;
    expect(without.events).toEqual([]);

    const eventsV1 = await openWatch(server, `/apis/events.k8s.io/v1/events?watch=true&resourceVersion=${rv}&allowWatchBookmarks=true`);
    let first = await eventsV1.next();
    while (first.type !== 'BOOKMARK') first = await eventsV1.next();
    expect(first.object).toMatchObject({ kind: 'Event', apiVersion: 'events.k8s.io/v1' });
  });

  it('ends a watch from a compacted resourceVersion with one ERROR 410 Expired event', async () => {
    const server = await startServer();
    addEvents(server, 'default', 2);
    const oldRv = server.resourceVersion;
    server.bumpEvent('default', 'ev-00');
    server.expireHistory();
    const watch = await openWatch(server, `/api/v1/events?watch=true&resourceVersion=${oldRv}`);
    expect(watch.status).toBe(200);
    await watch.ended;
    expect(watch.events).toHaveLength(1);
    const [error] = watch.events;
    expect(error?.type).toBe('ERROR');
    expect(error?.object).toMatchObject({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410 });
    expect(error?.object.message).toMatch(/^too old resource version: /);
    // The current resourceVersion is still a valid starting point.
    const fresh = await openWatch(server, `/api/v1/events?watch=true&resourceVersion=${server.resourceVersion}`);
    server.bumpEvent('default', 'ev-01');
    expect((await fresh.next()).type).toBe('MODIFIED');
  });

  it('keeps only compactionWindow resourceVersions of history', async () => {
    const server = await startServer({ compactionWindow: 3 });
    const start = server.resourceVersion;
    addEvents(server, 'default', 5);
    const tooOld = await openWatch(server, `/api/v1/events?watch=true&resourceVersion=${start}`);
    await tooOld.ended;
    expect(tooOld.events[0]?.type).toBe('ERROR');
    const recent = await openWatch(server, `/api/v1/events?watch=true&resourceVersion=${Number(server.resourceVersion) - 3}`);
    const replayed = [await recent.next(), await recent.next(), await recent.next()];
    expect(replayed.map((e) => e.object.metadata?.name)).toEqual(['ev-02', 'ev-03', 'ev-04']);
  });

  it('ends streams on timeoutSeconds, on the server cap, and on closeAllWatches', async () => {
    const server = await startServer({ watchTimeoutSeconds: 1 });
    const byClient = await openWatch(server, `/api/v1/events?watch=true&timeoutSeconds=1&allowWatchBookmarks=true&resourceVersion=${server.resourceVersion}`);
    const byCap = await openWatch(server, `/api/v1/events?watch=true&timeoutSeconds=3600&resourceVersion=${server.resourceVersion}`);
    await Promise.all([byClient.ended, byCap.ended]);
    // A watch that times out says where it got to, so the client can resume.
    expect(byClient.events.at(-1)).toMatchObject({ type: 'BOOKMARK', object: { metadata: { resourceVersion: server.resourceVersion } } });

    const longServer = await startServer();
    const a = await openWatch(longServer, '/api/v1/events?watch=true');
    const b = await openWatch(longServer, '/api/v1/pods?watch=true');
    await longServer.waitForWatches(2);
    longServer.closeAllWatches();
    await Promise.all([a.ended, b.ended]);
    expect(longServer.activeWatchCount).toBe(0);
  });

  it('works with the client-node Watch class and reports server-side close', async () => {
    const server = await startServer({ bookmarkIntervalMs: 20 });
    addEvents(server, 'default', 1);
    const rv = server.resourceVersion;
    const seen: Array<[string, string | undefined]> = [];
    let doneErr: unknown = 'not called';
    const finished = new Promise<void>((resolve) => {
      void new Watch(kubeConfig(server)).watch(
        '/api/v1/events',
        { resourceVersion: rv, allowWatchBookmarks: true },
        (type: string, obj: { metadata?: { name?: string; resourceVersion?: string } }) => {
          seen.push([type, type === 'BOOKMARK' ? obj.metadata?.resourceVersion : obj.metadata?.name]);
        },
        (err: unknown) => {
          doneErr = err;
          resolve();
        },
      );
    });
    await server.waitForWatches(1);
    server.addEvent({ namespace: 'default', name: 'after', reason: 'r', message: 'm', involvedObject: podRef('p') });
    const deadline = Date.now() + 5000;
    while (!seen.some(([t]) => t === 'BOOKMARK') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    server.closeAllWatches();
    await finished;
    expect(doneErr).toBeNull();
    expect(seen.filter(([t]) => t !== 'BOOKMARK')).toEqual([['ADDED', 'after']]);
    expect(seen.some(([t]) => t === 'BOOKMARK')).toBe(true);
  });

  it('drives a client-node informer through list, watch and a 410 relist', async () => {
    const server = await startServer();
    server.addPod({ namespace: 'default', name: 'existing' });
    const core = kubeConfig(server).makeApiClient(CoreV1Api);
    const informer = makeInformer<V1Pod>(kubeConfig(server), '/api/v1/pods', () => core.listPodForAllNamespaces());
    const log: string[] = [];
    informer.on('add', (pod) => log.push(`add ${pod.metadata?.name}`));
    informer.on('update', (pod) => log.push(`update ${pod.metadata?.name}`));
    informer.on('delete', (pod) => log.push(`delete ${pod.metadata?.name}`));
    await informer.start();
    try {
      await server.waitForWatches(1);
      server.addPod({ namespace: 'default', name: 'second' });
      server.patch('pods', 'default', 'existing', { metadata: { labels: { v: '2' } } });
      server.delete('pods', 'default', 'second');
      await until(() => log.length >= 4, 'informer events');
      expect(log).toEqual(['add existing', 'add second', 'update existing', 'delete second']);

      // Cut the watch and compact history before the informer reconnects: its resume RV
      // is now too old, so the watch answers 410 and the informer must list again.
      const listsBefore = server.requests.filter((r) => r.path === '/api/v1/pods' && !r.watch).length;
      server.closeAllWatches();
      server.addPod({ namespace: 'default', name: 'during-gap' });
      server.expireHistory();
      await until(() => log.includes('add during-gap'), 'relist after 410');
      expect(server.requests.filter((r) => r.path === '/api/v1/pods' && !r.watch).length).toBe(listsBefore + 1);
      // The informer re-watches after a back-off; let it, so stop() aborts that watch too.
      await server.waitForWatches(1);
    } finally {
      await informer.stop();
    }
  });

  it('supports watch-list: initial events then an initial-events-end bookmark', async () => {
    const server = await startServer();
    addEvents(server, 'default', 2);
    const watch = await openWatch(
      server,
      '/api/v1/events?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true',
    );
    const events = [await watch.next(), await watch.next(), await watch.next()];
    expect(events.map((e) => e.type)).toEqual(['ADDED', 'ADDED', 'BOOKMARK']);
    expect(events[2]?.object.metadata).toEqual({
      resourceVersion: server.resourceVersion,
      annotations: { 'k8s.io/initial-events-end': 'true' },
    });
  });
});

describe('KubeApiServer event TTL', () => {
  it('deletes events not written for the TTL and reports DELETED to watches', async () => {
    const ttlMs = 60 * 60 * 1000;
    const server = await startServer({ eventTtlMs: ttlMs });
    server.addEvent({ namespace: 'default', name: 'stale', reason: 'r', message: 'm', involvedObject: podRef('a') });
    server.addEvent({ namespace: 'default', name: 'fresh', reason: 'r', message: 'm', involvedObject: podRef('b') });
    const watch = await openWatch(server, `/api/v1/events?watch=true&resourceVersion=${server.resourceVersion}`);
    await new Promise((r) => setTimeout(r, 5));
    const beforeBumpMs = Date.now();
    server.bumpEvent('default', 'fresh');
    expect((await watch.next()).type).toBe('MODIFIED');

    // `stale` was last written before beforeBumpMs; `fresh` at or after it.
    const expiredEvents = server.expireEvents(beforeBumpMs + ttlMs - 1);
    expect(expiredEvents.map((e) => e.metadata.name)).toEqual(['stale']);
    expect(server.list('events').map((e) => e.metadata.name)).toEqual(['fresh']);
    const del = await watch.next();
    expect(del).toMatchObject({ type: 'DELETED', object: { metadata: { name: 'stale', resourceVersion: server.resourceVersion } } });
  });

  it('expires events on its own timer when eventTtlMs is set', async () => {
    const server = await startServer({ eventTtlMs: 50 });
    server.addEvent({ namespace: 'default', name: 'short-lived', reason: 'r', message: 'm', involvedObject: podRef('a') });
    const deadline = Date.now() + 10_000;
    while (server.list('events').length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(server.list('events')).toEqual([]);
    expect((await call(server, '/api/v1/namespaces/default/events/short-lived')).status).toBe(404);
  });
});

describe('KubeApiServer events.k8s.io/v1', () => {
  it('serves the same events with events.k8s.io field names', async () => {
    const server = await startServer();
    const ev = server.addEvent({
      namespace: 'default',
      name: 'mapped',
      reason: 'BackOff',
      message: 'Back-off restarting failed container',
      type: 'Warning',
      count: 7,
      source: { component: 'kubelet', host: 'node-1' },
      reportingComponent: 'kubelet',
      reportingInstance: 'node-1',
      involvedObject: podRef('crashy'),
    });
    const res = await call(server, '/apis/events.k8s.io/v1/namespaces/default/events/mapped');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      kind: 'Event',
      apiVersion: 'events.k8s.io/v1',
      metadata: ev.metadata,
      eventTime: null,
      reportingController: 'kubelet',
      reportingInstance: 'node-1',
      reason: 'BackOff',
      regarding: podRef('crashy'),
      note: 'Back-off restarting failed container',
      type: 'Warning',
      deprecatedSource: { component: 'kubelet', host: 'node-1' },
      deprecatedFirstTimestamp: ev.firstTimestamp,
      deprecatedLastTimestamp: ev.lastTimestamp,
      deprecatedCount: 7,
    });

    const selected = await call(server, '/apis/events.k8s.io/v1/events?fieldSelector=regarding.name%3Dcrashy,reportingController%3Dkubelet');
    expect(selected.body.kind).toBe('EventList');
    expect(selected.body.items.map((e: any) => e.metadata.name)).toEqual(['mapped']);

    const eventsApi = kubeConfig(server).makeApiClient(EventsV1Api);
    const listed = await eventsApi.listNamespacedEvent({ namespace: 'default' });
    expect(listed.items[0]?.note).toBe('Back-off restarting failed container');
    expect(listed.items[0]?.deprecatedCount).toBe(7);
    expect(listed.items[0]?.regarding?.name).toBe('crashy');
  });

  it('stores events created through events.k8s.io/v1 in core/v1 shape', async () => {
    const server = await startServer();
    const created = await call(server, '/apis/events.k8s.io/v1/namespaces/default/events', {
      method: 'POST',
      body: {
        apiVersion: 'events.k8s.io/v1',
        kind: 'Event',
        metadata: { name: 'new-style' },
        eventTime: '2024-05-01T10:00:00.123456Z',
        reportingController: 'example.com/controller',
        reportingInstance: 'controller-0',
        action: 'Scheduling',
        reason: 'Scheduled',
        regarding: podRef('p'),
        note: 'assigned',
        type: 'Normal',
        series: { count: 2, lastObservedTime: '2024-05-01T10:01:00.000000Z' },
      },
    });
    expect(created.status).toBe(201);
    expect(created.body.note).toBe('assigned');
    const core = await call(server, '/api/v1/namespaces/default/events/new-style');
    expect(core.body).toMatchObject({
      involvedObject: podRef('p'),
      message: 'assigned',
      reportingComponent: 'example.com/controller',
      reportingInstance: 'controller-0',
      action: 'Scheduling',
      eventTime: '2024-05-01T10:00:00.123456Z',
      series: { count: 2 },
      firstTimestamp: null,
      source: {},
      metadata: { uid: created.body.metadata.uid, resourceVersion: created.body.metadata.resourceVersion },
    });

    // The events registry lets PUT create; the body is converted once, like a POST.
    const put = await call(server, '/apis/events.k8s.io/v1/namespaces/default/events/by-put', {
      method: 'PUT',
      body: { metadata: { name: 'by-put' }, eventTime: '2024-05-01T10:00:00.000000Z', regarding: podRef('q'), note: 'put', reason: 'R' },
    });
    expect(put.status).toBe(201);
    expect(server.get('events', 'default', 'by-put')).toMatchObject({ message: 'put', involvedObject: podRef('q'), reason: 'R' });
  });
});

describe('KubeApiServer metadata-only responses', () => {
  it('returns PartialObjectMetadataList, PartialObjectMetadata and metadata watches', async () => {
    const server = await startServer();
    const pod = server.addPod({ namespace: 'default', name: 'web', labels: { app: 'web' }, annotations: { a: 'b' }, nodeName: 'n1' });
    const listAccept = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json';
    const list = await call(server, '/api/v1/pods', { accept: listAccept });
    expect(list.contentType).toBe('application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1');
    expect(list.body).toEqual({
      kind: 'PartialObjectMetadataList',
      apiVersion: 'meta.k8s.io/v1',
      metadata: { resourceVersion: server.resourceVersion },
      items: [{ kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: pod.metadata }],
    });

    const getAccept = 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1';
    const one = await call(server, '/api/v1/namespaces/default/pods/web', { accept: getAccept });
    expect(one.body).toEqual({ kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: pod.metadata });
    expect(one.body.spec).toBeUndefined();

    const watch = await openWatch(server, '/api/v1/pods?watch=true', getAccept);
    const added = await watch.next();
    expect(added).toEqual({ type: 'ADDED', object: { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: pod.metadata } });
    server.patch('pods', 'default', 'web', { metadata: { labels: { app: 'web', v: '2' } } });
    const modified = await watch.next();
    expect(modified.object).toMatchObject({ kind: 'PartialObjectMetadata', metadata: { labels: { v: '2' } } });
    expect(Object.keys(modified.object)).toEqual(['kind', 'apiVersion', 'metadata']);
  });

  it('negotiates like the apiserver: unknown representations fall back or get 406', async () => {
    const server = await startServer();
    server.addPod({ namespace: 'default', name: 'web' });
    const fallback = await call(server, '/api/v1/pods', { accept: 'application/json;as=Table;g=meta.k8s.io;v=v1,application/json' });
    expect(fallback.body.kind).toBe('PodList');
    const tableOnly = await call(server, '/api/v1/pods', { accept: 'application/json;as=Table;g=meta.k8s.io;v=v1' });
    expect(tableOnly.status).toBe(406);
    expect(tableOnly.body.reason).toBe('NotAcceptable');
    // A list asks for the List kind; the item kind alone is not acceptable for it.
    const wrongKind = await call(server, '/api/v1/pods', { accept: 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1' });
    expect(wrongKind.status).toBe(406);
  });
});

describe('KubeApiServer leases', () => {
  it('creates, conflicts on stale resourceVersion and deletes through client-node', async () => {
    const server = await startServer();
    const coordination = kubeConfig(server).makeApiClient(CoordinationV1Api);
    const lease: V1Lease = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: 'ktrail-events', namespace: 'ktrail' },
      spec: { holderIdentity: 'pod-a', leaseDurationSeconds: 15 },
    };
    const created = await coordination.createNamespacedLease({ namespace: 'ktrail', body: lease });
    expect(created.metadata?.uid).toBeDefined();
    const dup = await expectApiError(coordination.createNamespacedLease({ namespace: 'ktrail', body: lease }), 409);
    expect(statusOf(dup)).toMatchObject({
      reason: 'AlreadyExists',
      message: 'leases.coordination.k8s.io "ktrail-events" already exists',
      details: { name: 'ktrail-events', group: 'coordination.k8s.io', kind: 'leases' },
    });

    const renewed = await coordination.replaceNamespacedLease({
      name: 'ktrail-events',
      namespace: 'ktrail',
      body: { ...created, spec: { ...created.spec, holderIdentity: 'pod-a', leaseTransitions: 1 } },
    });
    expect(Number(renewed.metadata?.resourceVersion)).toBeGreaterThan(Number(created.metadata?.resourceVersion));

    // A second candidate still holding the first resourceVersion loses.
    const stale = await expectApiError(
      coordination.replaceNamespacedLease({
        name: 'ktrail-events',
        namespace: 'ktrail',
        body: { ...created, spec: { ...created.spec, holderIdentity: 'pod-b' } },
      }),
      409,
    );
    expect(statusOf(stale).reason).toBe('Conflict');
    expect(server.get('leases', 'ktrail', 'ktrail-events')?.spec).toMatchObject({ holderIdentity: 'pod-a' });

    const read = await coordination.readNamespacedLease({ name: 'ktrail-events', namespace: 'ktrail' });
    expect(read.metadata?.resourceVersion).toBe(renewed.metadata?.resourceVersion);
    await coordination.deleteNamespacedLease({ name: 'ktrail-events', namespace: 'ktrail' });
    await expectApiError(coordination.readNamespacedLease({ name: 'ktrail-events', namespace: 'ktrail' }), 404);
    // PUT does not create leases.
    await expectApiError(coordination.replaceNamespacedLease({ name: 'ktrail-events', namespace: 'ktrail', body: lease }), 404);
  });

  it('rejects a stale PUT with a Conflict Status over plain HTTP', async () => {
    const server = await startServer();
    const path = '/apis/coordination.k8s.io/v1/namespaces/ktrail/leases';
    const created = await call(server, path, { method: 'POST', body: { metadata: { name: 'l' }, spec: { holderIdentity: 'a' } } });
    expect(created.status).toBe(201);
    const ok = await call(server, `${path}/l`, { method: 'PUT', body: { ...created.body, spec: { holderIdentity: 'b' } } });
    expect(ok.status).toBe(200);
    const conflict = await call(server, `${path}/l`, { method: 'PUT', body: { ...created.body, spec: { holderIdentity: 'c' } } });
    expect(conflict.status).toBe(409);
    expect(conflict.body).toMatchObject({
      kind: 'Status',
      status: 'Failure',
      reason: 'Conflict',
      code: 409,
      message:
        'Operation cannot be fulfilled on leases.coordination.k8s.io "l": the object has been modified; please apply your changes to the latest version and try again',
    });
    expect(() => server.update('leases', created.body as any)).toThrow(KubeApiError);
  });
});

describe('KubeApiServer failure switches', () => {
  it('resets connections while down and recovers', async () => {
    const server = await startServer();
    const watch = await openWatch(server, '/api/v1/events?watch=true');
    await server.waitForWatches(1);
    server.setDown(true);
    await watch.ended;
    await expect(call(server, '/api/v1/events')).rejects.toThrow();
    server.setDown(false);
    expect((await call(server, '/api/v1/events')).status).toBe(200);

    server.setDown(true, '503');
    const unavailable = await call(server, '/api/v1/events');
    expect(unavailable.status).toBe(503);
    expect(unavailable.body.reason).toBe('ServiceUnavailable');
    server.setDown(false);
    expect((await call(server, '/api/v1/events')).status).toBe(200);
  });

  it('injects the next N failures, optionally only on matching requests', async () => {
    const server = await startServer();
    server.failNext(2, 500);
    server.failNext(1, 429, { path: '/leases', retryAfterSeconds: 3 });
    expect((await call(server, '/api/v1/events')).status).toBe(500);
    expect((await call(server, '/api/v1/pods')).body).toMatchObject({ kind: 'Status', reason: 'InternalError', code: 500 });
    expect((await call(server, '/api/v1/events')).status).toBe(200);
    const throttled = await fetch(`${server.url}/apis/coordination.k8s.io/v1/namespaces/x/leases`, { headers: { authorization: `Bearer ${token}` } });
    expect(throttled.status).toBe(429);
    expect(throttled.headers.get('retry-after')).toBe('3');
    await throttled.body?.cancel();
    expect((await call(server, '/apis/coordination.k8s.io/v1/namespaces/x/leases')).status).toBe(200);
  });

  it('logs every request for assertions', async () => {
    const server = await startServer();
    await call(server, '/api/v1/namespaces/default/pods?limit=5&labelSelector=app%3Dweb');
    const w = await openWatch(server, '/api/v1/events?watch=1&resourceVersion=0');
    w.close();
    const gets = server.requests.filter((r) => r.path === '/api/v1/namespaces/default/pods');
    expect(gets).toHaveLength(1);
    expect(gets[0]).toMatchObject({ method: 'GET', query: { limit: '5', labelSelector: 'app=web' }, watch: false, status: 200 });
    expect(server.requests.find((r) => r.path === '/api/v1/events')).toMatchObject({ watch: true, status: 200, query: { resourceVersion: '0' } });
  });
});
