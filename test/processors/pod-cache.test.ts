import { describe, expect, it } from 'vitest';
import { PodCache, type PodObject } from '../../src/processors/k8s-metadata/pod-cache.ts';
import { extractRefs } from '../../src/processors/k8s-metadata/refs.ts';

function clock() {
  const c = { ms: 1_000_000, now: () => c.ms };
  return c;
}

const pod = (name: string, uid: string, extra: Partial<NonNullable<PodObject['metadata']>> = {}, nodeName?: string): PodObject => ({
  metadata: { name, namespace: 'shop', uid, labels: { app: name }, ...extra },
  ...(nodeName ? { spec: { nodeName } } : {}),
});

describe('PodCache', () => {
  it('keeps deleted pods for deletedTtlMs, then forgets them', () => {
    const c = clock();
    const cache = new PodCache({ deletedTtlMs: 5000, negativeTtlMs: 1000, annotations: [], now: c.now });
    cache.upsert(pod('a', 'u1', {}, 'n1'));
    cache.markDeleted(pod('a', 'u1'));
    c.ms += 4999;
    const hit = cache.lookup('shop', 'a');
    expect(hit.kind).toBe('hit');
    expect(hit.kind === 'hit' && hit.pod.deletedAtMs).toBeGreaterThan(0);
    expect(hit.kind === 'hit' && hit.pod.node).toBe('n1');
    c.ms += 1;
    expect(cache.lookup('shop', 'a').kind).toBe('miss');
    expect(cache.size).toBe(0);
  });

  it('sweep removes expired deleted and negative entries', () => {
    const c = clock();
    const cache = new PodCache({ deletedTtlMs: 100, negativeTtlMs: 100, annotations: [], now: c.now });
    cache.upsert(pod('a', 'u1'));
    cache.upsert(pod('b', 'u2'));
    cache.markDeleted(pod('a', 'u1'));
    cache.markMissing('shop', 'ghost');
    expect(cache.negativeSize).toBe(1);
    c.ms += 100;
    expect(cache.sweep()).toBe(1);
    expect(cache.size).toBe(1);
    expect(cache.negativeSize).toBe(0);
  });

  it('negative entries expire and are cleared by the pod appearing', () => {
    const c = clock();
    const cache = new PodCache({ deletedTtlMs: 100, negativeTtlMs: 1000, annotations: [], now: c.now });
    cache.markMissing('shop', 'late');
    expect(cache.lookup('shop', 'late').kind).toBe('negative');
    expect(cache.lookup('shop', 'late', 'any-uid').kind).toBe('negative');
    c.ms += 1000;
    expect(cache.lookup('shop', 'late').kind).toBe('miss');
    cache.markMissing('shop', 'late');
    cache.upsert(pod('late', 'u9'));
    expect(cache.lookup('shop', 'late').kind).toBe('hit');
  });

  it('tells incarnations apart by uid; the name points at the newest', () => {
    const cache = new PodCache({ deletedTtlMs: 60_000, negativeTtlMs: 1000, annotations: [] });
    cache.upsert(pod('db-0', 'old'));
    cache.markDeleted(pod('db-0', 'old'));
    cache.upsert(pod('db-0', 'new'));
    const byName = cache.lookup('shop', 'db-0');
    expect(byName.kind === 'hit' && byName.pod.uid).toBe('new');
    const byOld = cache.lookup('shop', 'db-0', 'old');
    expect(byOld.kind === 'hit' && byOld.pod.deletedAtMs > 0).toBe(true);
    cache.markMissing('shop', 'db-0', 'older');
    expect(cache.lookup('shop', 'db-0', 'older').kind).toBe('negative');
    expect(cache.lookup('shop', 'db-0').kind).toBe('hit');
  });

  it('a full list marks pods it did not return as deleted, within its scope only', () => {
    const cache = new PodCache({ deletedTtlMs: 60_000, negativeTtlMs: 1000, annotations: [] });
    cache.upsert(pod('a', 'u1'));
    cache.upsert(pod('b', 'u2'));
    cache.upsert({ metadata: { name: 'c', namespace: 'other', uid: 'u3' } });
    expect(cache.endList(new Set(['u1']), (e) => e.namespace === 'shop')).toBe(1);
    const b = cache.lookup('shop', 'b');
    expect(b.kind === 'hit' && b.pod.deletedAtMs > 0).toBe(true);
    const c = cache.lookup('other', 'c');
    expect(c.kind === 'hit' && c.pod.deletedAtMs).toBe(0);
  });

  it('keeps only allow-listed annotations; a metadata-only update keeps the node; owners and Deployments', () => {
    const cache = new PodCache({ deletedTtlMs: 1, negativeTtlMs: 1, annotations: ['prometheus.io/*', 'team'] });
    const e = cache.upsert(
      pod(
        'web-1',
        'u1',
        {
          annotations: { 'prometheus.io/port': '9090', team: 'shop', 'kubectl.kubernetes.io/last-applied-configuration': '{}' },
          ownerReferences: [
            { kind: 'Other', name: 'x' },
            { kind: 'ReplicaSet', name: 'web-5d4', controller: true },
          ],
        },
        'node-a',
      ),
    )!;
    expect(e.annotations).toEqual({ 'prometheus.io/port': '9090', team: 'shop' });
    expect(e.owner).toEqual({ kind: 'ReplicaSet', name: 'web-5d4' });
    cache.resolveOwner(e, 'web');
    expect(e.owner).toEqual({ kind: 'Deployment', name: 'web' });
    expect(e.replicaSet).toBe('web-5d4');
    // A later metadata-only event: no spec, same owner → node and resolved owner stay.
    cache.upsert(pod('web-1', 'u1', { labels: { app: 'web', v: '2' }, ownerReferences: [{ kind: 'ReplicaSet', name: 'web-5d4', controller: true }] }));
    expect(e.node).toBe('node-a');
    expect(e.owner).toEqual({ kind: 'Deployment', name: 'web' });
    expect(e.labels).toEqual({ app: 'web', v: '2' });
    expect(cache.upsert({ metadata: { name: 'no-uid', namespace: 'shop' } })).toBeUndefined();
  });
});

describe('extractRefs', () => {
  it('reads objectRef pods in the core group only, actors and events', () => {
    expect(extractRefs({ auditID: 'a', objectRef: { resource: 'pods', namespace: 'n', name: 'p', subresource: 'log' } }).object).toEqual({ namespace: 'n', name: 'p', uid: undefined });
    expect(extractRefs({ auditID: 'a', objectRef: { resource: 'pods', namespace: 'n', name: 'p', apiGroup: 'metrics.k8s.io' } }).object).toBeUndefined();
    expect(extractRefs({ auditID: 'a', objectRef: { resource: 'pods', namespace: 'n' } }).object).toBeUndefined();
    const actor = extractRefs({
      auditID: 'a',
      user: { username: 'system:serviceaccount:mon:prom', extra: { 'authentication.kubernetes.io/pod-name': ['prom-0'], 'authentication.kubernetes.io/pod-uid': ['u-1'] } },
    });
    expect(actor.serviceAccount).toEqual({ namespace: 'mon', name: 'prom' });
    expect(actor.actorPod).toEqual({ namespace: 'mon', name: 'prom-0', uid: 'u-1' });
    expect(extractRefs({ auditID: 'a', user: { username: 'system:serviceaccount:broken' } }).serviceAccount).toBeUndefined();
    expect(extractRefs({ auditID: 'a', user: { username: 'system:node:n1' } }).actorNode).toBe('n1');
    expect(extractRefs({ metadata: { namespace: 'n' }, involvedObject: { kind: 'Pod', name: 'p' } }).object).toEqual({ namespace: 'n', name: 'p', uid: undefined });
    expect(extractRefs({ regarding: { kind: 'Pod', namespace: 'n', name: 'p', uid: 'u' } }).object).toEqual({ namespace: 'n', name: 'p', uid: 'u' });
    expect(extractRefs({ involvedObject: { kind: 'Pod', namespace: 'n', name: 'p', apiVersion: 'example.io/v1' } }).object).toBeUndefined();
    expect(extractRefs(null).object).toBeUndefined();
    expect(extractRefs([1, 2]).object).toBeUndefined();
  });
});
