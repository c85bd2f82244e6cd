import { afterEach, describe, expect, it } from 'vitest';
import { ReconnectBackoff } from '../../src/delivery/backoff.ts';
import { KubeClient } from '../../src/kube/client.ts';
import { ListWatch, type KubeObjectLike, type ListPage, type ListReason, type WatchBatch, type WatchEndReason } from '../../src/kube/list-watch.ts';
import { KubeApiServer, type KubeApiServerOptions } from '../helpers/kube-api-server.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(opts: KubeApiServerOptions = {}) {
  const kube = await KubeApiServer.start({ bookmarkIntervalMs: 100, ...opts });
  cleanups.push(() => kube.close());
  const client = new KubeClient({ server: kube.url, tls: {}, auth: { kind: 'none' }, namespace: undefined, source: 'kubeconfig', origin: 'test' });
  cleanups.push(() => client.close());
  return { kube, client };
}

function pod(kube: KubeApiServer, name: string) {
  return kube.addPod({ namespace: 'ns', name, nodeName: 'n1', labels: { app: name } });
}

async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Records what a ListWatch hands its handler. */
function recorder() {
  const r = {
    pages: [] as Array<ListPage<KubeObjectLike>>,
    batches: [] as Array<WatchBatch<KubeObjectLike>>,
    lists: [] as ListReason[],
    ends: [] as WatchEndReason[],
    errors: [] as string[],
    handler: {
      onPage: (p: ListPage<KubeObjectLike>) => void r.pages.push(p),
      onWatch: (b: WatchBatch<KubeObjectLike>) => void r.batches.push(b),
      onListStart: (reason: ListReason) => void r.lists.push(reason),
      onWatchEnd: (i: { reason: WatchEndReason }) => void r.ends.push(i.reason),
      onError: (i: { phase: string }) => void r.errors.push(i.phase),
    },
    watched: () => r.batches.flatMap((b) => b.events.filter((e) => e.type !== 'BOOKMARK').map((e) => `${e.type}:${e.object.metadata?.name}`)),
  };
  return r;
}

describe('ListWatch', () => {
  it('lists page by page on one snapshot, then watches from the list resourceVersion; bookmarks advance it', async () => {
    const { kube, client } = await setup();
    for (let i = 0; i < 5; i++) pod(kube, `p${i}`);
    const rec = recorder();
    const lw = new ListWatch({ client, path: '/api/v1/pods', pageSize: 2 }, rec.handler);
    const abort = new AbortController();
    const running = lw.run(abort.signal);
    await until(() => kube.activeWatchCount === 1);
    expect(rec.pages.map((p) => [p.pageIndex, p.items.length, p.last])).toEqual([
      [0, 2, false],
      [1, 2, false],
      [2, 1, true],
    ]);
    const listRv = rec.pages[0]!.resourceVersion;
    expect(new Set(rec.pages.map((p) => p.resourceVersion))).toEqual(new Set([listRv]));
    expect(kube.requests.find((r) => r.watch)?.query).toMatchObject({ resourceVersion: listRv, allowWatchBookmarks: 'true' });
    pod(kube, 'p5');
    kube.delete('pods', 'ns', 'p0');
    await until(() => rec.watched().length === 2);
    expect(rec.watched()).toEqual(['ADDED:p5', 'DELETED:p0']);
    const rvAfterWrites = kube.resourceVersion;
    kube.addNamespace('unrelated'); // moves the global resourceVersion; only a bookmark tells this watch
    await until(() => lw.resourceVersion === kube.resourceVersion && kube.resourceVersion !== rvAfterWrites);
    abort.abort();
    await running;
    expect(rec.lists).toEqual(['start']);
  });

  it('resumes from a given resourceVersion without listing; 410 Gone relists', async () => {
    const { kube, client } = await setup();
    pod(kube, 'a');
    const from = kube.resourceVersion;
    pod(kube, 'b');
    const rec = recorder();
    const lw = new ListWatch({ client, path: '/api/v1/pods', backoff: { initialMs: 20, maxMs: 100 } }, rec.handler);
    const abort = new AbortController();
    const running = lw.run(abort.signal, from);
    await until(() => rec.watched().length === 1);
    expect(rec.watched()).toEqual(['ADDED:b']);
    expect(rec.lists).toEqual([]);
    // The watch ends; history is compacted before it can resume.
    kube.closeAllWatches();
    pod(kube, 'c');
    kube.expireHistory();
    await until(() => rec.lists.length === 1 && kube.activeWatchCount === 1);
    expect(rec.ends).toContain('gone');
    expect(rec.lists).toEqual(['gone']);
    expect(rec.pages.flatMap((p) => p.items.map((i) => i.metadata?.name)).sort()).toEqual(['a', 'b', 'c']);
    abort.abort();
    await running;
  });

  it('an expired continue token restarts the list from the beginning', async () => {
    const { kube, client } = await setup();
    for (let i = 0; i < 4; i++) pod(kube, `p${i}`);
    const rec = recorder();
    let compacted = false;
    const lw = new ListWatch({ client, path: '/api/v1/pods', pageSize: 2 }, {
      ...rec.handler,
      onPage: (p) => {
        rec.pages.push(p);
        if (!compacted) {
          compacted = true;
          pod(kube, 'late');
          kube.expireHistory();
        }
      },
    });
    const abort = new AbortController();
    const rv = await lw.list('start', abort.signal);
    expect(rec.lists).toEqual(['start', 'continue_expired']);
    expect(rec.pages.map((p) => p.pageIndex)).toEqual([0, 0, 1, 2]);
    expect(rv).toBe(kube.resourceVersion);
  });

  it('metadata-only: asks for PartialObjectMetadata on list and watch', async () => {
    const { kube, client } = await setup();
    pod(kube, 'a');
    const rec = recorder();
    const lw = new ListWatch({ client, path: '/api/v1/namespaces/ns/pods', metadataOnly: true, labelSelector: 'app in (a,b)', fieldSelector: 'spec.nodeName=n1' }, rec.handler);
    const abort = new AbortController();
    const running = lw.run(abort.signal);
    await until(() => kube.activeWatchCount === 1);
    pod(kube, 'b');
    pod(kube, 'c');
    await until(() => rec.watched().length === 1);
    expect(rec.pages[0]!.items[0]).toMatchObject({ kind: 'PartialObjectMetadata', metadata: { name: 'a', labels: { app: 'a' } } });
    expect(rec.pages[0]!.items[0]).not.toHaveProperty('spec');
    expect(rec.batches.flatMap((b) => b.events).find((e) => e.type === 'ADDED')?.object).toMatchObject({ kind: 'PartialObjectMetadata' });
    for (const r of kube.requests) {
      expect(r.accept).toContain('as=PartialObjectMetadata');
      expect(r.query).toMatchObject({ labelSelector: 'app in (a,b)', fieldSelector: 'spec.nodeName=n1' });
    }
    abort.abort();
    await running;
  });

  it('a handler that throws ends run() with its error; API errors are retried with backoff', async () => {
    const { kube, client } = await setup();
    pod(kube, 'a');
    kube.failNext(2, 500, { path: '/api/v1/pods' });
    const rec = recorder();
    const lw = new ListWatch({ client, path: '/api/v1/pods', backoff: { initialMs: 10, maxMs: 50 } }, {
      ...rec.handler,
      onWatch: () => {
        throw new Error('spool closed');
      },
    });
    const running = lw.run(new AbortController().signal);
    await until(() => kube.activeWatchCount === 1);
    expect(rec.errors).toEqual(['list', 'list']);
    pod(kube, 'b');
    await expect(running).rejects.toThrow('spool closed');
  });
});

describe('ReconnectBackoff', () => {
  it('grows exponentially with jitter in [half, full], never zero, and resets', () => {
    const b = new ReconnectBackoff({ initialMs: 100, maxMs: 1000, random: () => 0 });
    expect([b.nextDelayMs(), b.nextDelayMs(), b.nextDelayMs(), b.nextDelayMs(), b.nextDelayMs()]).toEqual([50, 100, 200, 400, 500]);
    b.reset();
    expect(b.nextDelayMs()).toBe(50);
    const top = new ReconnectBackoff({ initialMs: 100, maxMs: 1000, random: () => 0.999999 });
    expect(top.nextDelayMs()).toBe(100);
    expect(top.calmDelayMs()).toBe(100);
    expect(new ReconnectBackoff({ initialMs: 100, maxMs: 1000, random: () => 0 }).calmDelayMs()).toBe(50);
  });
});
