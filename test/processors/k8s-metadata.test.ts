import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LogRecord } from '../../src/pipeline/record.ts';
import { k8sMetadataProcessor, type Enrichment, type K8sMetadataConfig, type K8sMetadataProcessor } from '../../src/processors/k8s-metadata/k8s-metadata.ts';
import { auditLine } from '../generators/audit-gen.ts';
import { KubeApiServer, ownerReferenceTo, type StoredObject } from '../helpers/kube-api-server.ts';
import { until, writeKubeconfig } from './kube-support.ts';
import { counterValue, processorContext, rawRecord } from './support.ts';

const TOKEN = 'test-token';
const LOOKUPS = 'ktrail_k8s_metadata_lookups_total';
const FAILURES = 'ktrail_k8s_metadata_enrich_failures_total';
const API = 'ktrail_k8s_metadata_api_requests_total';

let server: KubeApiServer;
let dir: string;
let kubeconfig: string;
let web: StoredObject;
let prom: StoredObject;
const running: K8sMetadataProcessor[] = [];

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-'));
  server = await KubeApiServer.start({ token: TOKEN, bookmarkIntervalMs: 200 });
  kubeconfig = writeKubeconfig(dir, server.url, TOKEN);
  server.addNamespace({ name: 'shop', labels: { team: 'checkout', 'kubernetes.io/metadata.name': 'shop' } });
  server.addNamespace({ name: 'monitoring', labels: { team: 'sre' } });
  const rs = server.addReplicaSet({
    namespace: 'shop',
    name: 'web-5d4f8b',
    labels: { app: 'web', 'pod-template-hash': '5d4f8b' },
    ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'web', uid: '7f0c1c9e-0000-4000-8000-00000000d001', controller: true }],
  });
  web = server.addPod({
    namespace: 'shop',
    name: 'web-5d4f8b-x2x9q',
    labels: { app: 'web', 'pod-template-hash': '5d4f8b' },
    annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9090', 'kubectl.kubernetes.io/restartedAt': '2024-05-01T10:00:00Z' },
    nodeName: 'node-a',
    ownerReferences: [ownerReferenceTo(rs)],
  });
  prom = server.addPod({
    namespace: 'monitoring',
    name: 'prometheus-0',
    labels: { app: 'prometheus' },
    nodeName: 'node-b',
    ownerReferences: [{ apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'prometheus', uid: '7f0c1c9e-0000-4000-8000-00000000s001', controller: true }],
    serviceAccountName: 'prometheus',
  });
});

afterAll(async () => {
  await server.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

afterEach(async () => {
  server.setDown(false);
  await Promise.all(running.splice(0).map((p) => p.stop()));
});

async function startProcessor(extra: Partial<Record<keyof K8sMetadataConfig, unknown>> = {}, opts: { waitSync?: boolean; log?: Logger } = {}) {
  const cfg = k8sMetadataProcessor.schema.parse({
    kubeconfig,
    annotations: ['prometheus.io/*'],
    namespace_labels: true,
    cluster: 'emu',
    lookup_timeout: '2s',
    ...extra,
  }) as K8sMetadataConfig;
  const ctx = processorContext('meta', 'k8s_metadata');
  if (opts.log) ctx.log = opts.log;
  const p = k8sMetadataProcessor.create(cfg, ctx) as K8sMetadataProcessor;
  running.push(p);
  await p.start();
  if (opts.waitSync !== false) await until(() => p.synced, 'pod cache synced');
  return { p, ctx };
}

const podRef = (pod: StoredObject, subresource?: string) => ({
  resource: 'pods',
  namespace: pod.metadata.namespace,
  name: pod.metadata.name,
  apiVersion: 'v1',
  ...(subresource ? { subresource } : {}),
});
const kubeOf = (r: LogRecord) => JSON.parse(r.encode()).kubernetes as Enrichment | undefined;
const podUser = (pod: StoredObject, sa: string) => ({
  username: `system:serviceaccount:${pod.metadata.namespace}:${sa}`,
  uid: '1c1c1c1c-0000-4000-8000-000000000001',
  groups: ['system:serviceaccounts', `system:serviceaccounts:${pod.metadata.namespace}`, 'system:authenticated'],
  extra: {
    'authentication.kubernetes.io/credential-id': ['JTI=4d2c0f4e-0000-4000-8000-000000000001'],
    'authentication.kubernetes.io/node-name': [String((pod.spec as { nodeName?: string }).nodeName)],
    'authentication.kubernetes.io/pod-name': [pod.metadata.name],
    'authentication.kubernetes.io/pod-uid': [pod.metadata.uid],
  },
});

describe('k8s_metadata with the API emulation', () => {
  it('enriches the pod acted on (objectRef, any subresource) and never changes the original fields', async () => {
    const { p, ctx } = await startProcessor();
    const exec = auditLine({ verb: 'create', objectRef: podRef(web, 'exec'), code: 101 });
    const get = auditLine({ verb: 'get', objectRef: podRef(web) });
    const out = await p.process([rawRecord(exec), rawRecord(get)]);
    expect(out).toHaveLength(2);
    for (const [i, line] of [exec, get].entries()) {
      const r = out[i]!;
      expect(r.isRaw).toBe(true);
      const { kubernetes, ...original } = JSON.parse(r.encode());
      expect(original).toEqual(JSON.parse(line));
      expect(r.encode().startsWith(line.slice(0, -1))).toBe(true);
      expect(kubernetes).toEqual({
        cluster: 'emu',
        object: {
          namespace: 'shop',
          name: web.metadata.name,
          uid: web.metadata.uid,
          labels: { app: 'web', 'pod-template-hash': '5d4f8b' },
          annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9090' },
          node: 'node-a',
          owner: { kind: 'Deployment', name: 'web' },
          replicaSet: 'web-5d4f8b',
          namespaceLabels: { team: 'checkout', 'kubernetes.io/metadata.name': 'shop' },
        },
      });
    }
    expect(await counterValue(ctx.metrics, LOOKUPS, { processor: 'meta', result: 'hit' })).toBe(2);
    expect(await counterValue(ctx.metrics, API, { verb: 'get' })).toBe(0);
  });

  it('enriches the acting pod from a bound token, and records service accounts and nodes', async () => {
    const { p } = await startProcessor();
    const byPod = auditLine({ verb: 'list', user: podUser(prom, 'prometheus'), objectRef: { resource: 'endpoints', apiVersion: 'v1' } });
    const bySa = auditLine({
      verb: 'update',
      user: { username: 'system:serviceaccount:kube-system:replicaset-controller', groups: ['system:serviceaccounts'] },
      objectRef: { resource: 'replicasets', namespace: 'shop', name: 'web-5d4f8b', apiGroup: 'apps', apiVersion: 'v1' },
    });
    const byNode = auditLine({ verb: 'get', user: { username: 'system:node:node-a', groups: ['system:nodes'] }, objectRef: podRef(web, 'status') });
    const [a, b, c] = await p.process([rawRecord(byPod), rawRecord(bySa), rawRecord(byNode)]);
    expect(kubeOf(a!)?.actor).toEqual({
      serviceAccount: { namespace: 'monitoring', name: 'prometheus' },
      pod: {
        namespace: 'monitoring',
        name: 'prometheus-0',
        uid: prom.metadata.uid,
        labels: { app: 'prometheus' },
        node: 'node-b',
        owner: { kind: 'StatefulSet', name: 'prometheus' },
        namespaceLabels: { team: 'sre', 'kubernetes.io/metadata.name': 'monitoring' },
      },
    });
    expect(kubeOf(a!)?.object).toBeUndefined();
    expect(kubeOf(b!)).toEqual({ cluster: 'emu', actor: { serviceAccount: { namespace: 'kube-system', name: 'replicaset-controller' } } });
    const cKube = kubeOf(c!)!;
    expect(cKube.actor).toEqual({ node: 'node-a' });
    expect(cKube.object?.name).toBe(web.metadata.name);
  });

  it('enriches Events (core/v1 involvedObject and events.k8s.io/v1 regarding)', async () => {
    const { p } = await startProcessor();
    const core = new LogRecord({
      id: 'e1',
      timeMs: 1,
      input: 'events',
      doc: {
        metadata: { name: `${web.metadata.name}.17c`, namespace: 'shop', uid: 'ev-1', resourceVersion: '5' },
        involvedObject: { kind: 'Pod', namespace: 'shop', name: web.metadata.name, uid: web.metadata.uid, apiVersion: 'v1', fieldPath: 'spec.containers{app}' },
        reason: 'Pulled',
        type: 'Normal',
      },
    });
    const newer = new LogRecord({
      id: 'e2',
      timeMs: 1,
      input: 'events',
      raw: JSON.stringify({
        kind: 'Event',
        apiVersion: 'events.k8s.io/v1',
        metadata: { name: 'prometheus-0.18d', namespace: 'monitoring', uid: 'ev-2', resourceVersion: '6' },
        regarding: { kind: 'Pod', namespace: 'monitoring', name: 'prometheus-0', uid: prom.metadata.uid, apiVersion: 'v1' },
        reason: 'Scheduled',
      }),
    });
    const notPod = new LogRecord({
      id: 'e3',
      timeMs: 1,
      input: 'events',
      raw: JSON.stringify({ metadata: { name: 'web.1', namespace: 'shop' }, involvedObject: { kind: 'Deployment', namespace: 'shop', name: 'web' }, reason: 'ScalingReplicaSet' }),
    });
    const [a, b, c] = await p.process([core, newer, notPod]);
    expect(kubeOf(a!)?.object?.owner).toEqual({ kind: 'Deployment', name: 'web' });
    expect((a!.doc as { involvedObject: unknown }).involvedObject).toMatchObject({ kind: 'Pod' });
    expect(kubeOf(b!)?.object?.node).toBe('node-b');
    expect(kubeOf(c!)).toEqual({ cluster: 'emu' });
  });

  it('keeps a deleted pod for deleted_ttl, then forgets it (one GET, negatively cached)', async () => {
    const doomed = server.addPod({ namespace: 'shop', name: 'batch-1', labels: { app: 'batch' }, nodeName: 'node-c' });
    const { p, ctx } = await startProcessor({ deleted_ttl: '600ms', negative_ttl: '1m' });
    server.delete('pods', 'shop', 'batch-1');
    await until(() => p.cache.lookup('shop', 'batch-1').kind === 'hit' && (p.cache.lookup('shop', 'batch-1') as { pod: { deletedAtMs: number } }).pod.deletedAtMs > 0, 'delete seen');
    const line = auditLine({ verb: 'delete', objectRef: podRef(doomed) });
    const [r] = await p.process([rawRecord(line)]);
    expect(kubeOf(r!)?.object).toMatchObject({ name: 'batch-1', uid: doomed.metadata.uid, labels: { app: 'batch' }, node: 'node-c', deleted: true });

    await new Promise((res) => setTimeout(res, 700));
    server.requests.length = 0;
    const [later] = await p.process([rawRecord(line)]);
    expect(kubeOf(later!)?.object).toBeUndefined();
    const gets = server.requests.filter((q) => q.method === 'GET' && q.path === '/api/v1/namespaces/shop/pods/batch-1');
    expect(gets).toHaveLength(1);
    expect(await counterValue(ctx.metrics, FAILURES, { reason: 'not_found' })).toBe(1);
  });

  it('an unknown pod costs one GET, then is negatively cached; a pod created later is found at once', async () => {
    const { p, ctx } = await startProcessor({ negative_ttl: '1m' });
    server.requests.length = 0;
    const ghost = { resource: 'pods', namespace: 'shop', name: 'ghost-0', apiVersion: 'v1' };
    const line = auditLine({ verb: 'get', code: 404, objectRef: ghost });
    const first = await p.process([rawRecord(line), rawRecord(line), rawRecord(line)]);
    const second = await p.process([rawRecord(line)]);
    for (const r of [...first, ...second]) expect(kubeOf(r)).toEqual({ cluster: 'emu' });
    const gets = () => server.requests.filter((q) => q.method === 'GET' && !q.watch && q.path === '/api/v1/namespaces/shop/pods/ghost-0');
    expect(gets()).toHaveLength(1);
    expect(await counterValue(ctx.metrics, API, { verb: 'get' })).toBe(1);
    expect(await counterValue(ctx.metrics, LOOKUPS, { result: 'miss' })).toBe(3);
    expect(await counterValue(ctx.metrics, LOOKUPS, { result: 'negative_hit' })).toBe(1);
    expect(await counterValue(ctx.metrics, FAILURES, { reason: 'not_found' })).toBe(4);

    // The watch announcing the pod clears the negative entry.
    server.addPod({ namespace: 'shop', name: 'ghost-0', labels: { app: 'ghost' }, nodeName: 'node-a' });
    await until(() => p.cache.lookup('shop', 'ghost-0').kind === 'hit', 'pod added by watch');
    const [found] = await p.process([rawRecord(line)]);
    expect(kubeOf(found!)?.object).toMatchObject({ name: 'ghost-0', labels: { app: 'ghost' } });
    expect(gets()).toHaveLength(1);
  });

  it('a pod the API answers 404 for is counted and logged as not_found, also while the first list is still failing', async () => {
    // The pod list fails three times (backoff >= 1.5 s): the first batch's wait for the list gives up,
    // and the GET for the missing pod still gets its answer inside lookup_timeout.
    // Its own server: the failures not consumed by the end of the test must not reach the others.
    const own = await KubeApiServer.start({ token: TOKEN });
    const ownDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-'));
    try {
      own.failNext(3, 500, { path: /^\/api\/v1\/pods$/, method: 'GET' });
      const lines: Array<{ level: string; msg: string; unenriched?: Record<string, number> }> = [];
      const log = pino({ level: 'debug', formatters: { level: (label: string) => ({ level: label }) } }, { write: (s: string) => lines.push(JSON.parse(s)) });
      const { p, ctx } = await startProcessor({ kubeconfig: writeKubeconfig(ownDir, own.url, TOKEN), lookup_timeout: '600ms' }, { waitSync: false, log });
      const line = auditLine({ verb: 'delete', code: 404, objectRef: { resource: 'pods', namespace: 'shop', name: 'gone-0', apiVersion: 'v1' } });
      const [r] = await p.process([rawRecord(line)]);
      expect(p.synced).toBe(false);
      expect(kubeOf(r!)).toEqual({ cluster: 'emu' });
      expect(own.requests.filter((q) => q.path === '/api/v1/namespaces/shop/pods/gone-0').map((q) => q.status)).toEqual([404]);
      expect(await counterValue(ctx.metrics, FAILURES, { reason: 'not_found' })).toBe(1);
      expect(await counterValue(ctx.metrics, FAILURES, { reason: 'timeout' })).toBe(0);
      expect(lines.filter((l) => l.unenriched !== undefined).map((l) => [l.level, l.unenriched])).toEqual([['debug', { not_found: 1 }]]);
      await p.stop();
    } finally {
      await own.close();
      fs.rmSync(ownDir, { recursive: true, force: true });
    }
  });

  it("logs the kubeconfig's unknown keys at warn when it starts, and still works with kubectl's tokenFile", async () => {
    const kdir = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-'));
    try {
      fs.writeFileSync(path.join(kdir, 'token'), TOKEN);
      const file = path.join(kdir, 'kubeconfig');
      fs.writeFileSync(
        file,
        `apiVersion: v1\nclusters:\n- name: emu\n  cluster: { server: "${server.url}", insecure-skip-tls-verfy: true }\nusers:\n- name: u\n  user: { tokenFile: token }\ncontexts:\n- name: emu\n  context: { cluster: emu, user: u }\ncurrent-context: emu\n`,
      );
      const lines: Array<{ level: string; msg: string }> = [];
      const log = pino({ level: 'info', formatters: { level: (label: string) => ({ level: label }) } }, { write: (s: string) => lines.push(JSON.parse(s)) });
      const { p } = await startProcessor({ kubeconfig: file }, { log });
      expect(lines.filter((l) => l.level === 'warn').map((l) => l.msg)).toEqual([
        `kubeconfig ${file}: clusters[0].cluster.insecure-skip-tls-verfy: unknown key "insecure-skip-tls-verfy" (of "emu"), ignored; did you mean "insecure-skip-tls-verify"?`,
      ]);
      const [r] = await p.process([rawRecord(auditLine({ verb: 'get', objectRef: podRef(web) }))]);
      expect(kubeOf(r!)?.object?.name).toBe(web.metadata.name);
    } finally {
      fs.rmSync(kdir, { recursive: true, force: true });
    }
  });

  it('a miss for a pod the watch has not delivered yet is answered by a GET', async () => {
    const { p, ctx } = await startProcessor();
    // Down for watches only long enough to create a pod it cannot see.
    server.setDown(true);
    server.setDown(false);
    const fresh = server.addPod({ namespace: 'shop', name: 'fresh-0', labels: { app: 'fresh' }, nodeName: 'node-a' });
    const line = auditLine({ verb: 'create', objectRef: podRef(fresh) });
    const [r] = await p.process([rawRecord(line)]);
    expect(kubeOf(r!)?.object).toMatchObject({ name: 'fresh-0', uid: fresh.metadata.uid, node: 'node-a' });
    expect(await counterValue(ctx.metrics, FAILURES)).toBe(0);
  });

  it('tells pod incarnations apart by uid (StatefulSet pod recreated under the same name)', async () => {
    const { p } = await startProcessor();
    const old = server.addPod({ namespace: 'shop', name: 'db-0', labels: { gen: '1' }, nodeName: 'node-a' });
    await until(() => p.cache.lookup('shop', 'db-0', old.metadata.uid).kind === 'hit', 'old incarnation cached');
    server.delete('pods', 'shop', 'db-0');
    const recreated = server.addPod({ namespace: 'shop', name: 'db-0', labels: { gen: '2' }, nodeName: 'node-b' });
    await until(() => p.cache.lookup('shop', 'db-0', recreated.metadata.uid).kind === 'hit', 'new incarnation cached');
    const actor = (pod: StoredObject) => auditLine({ verb: 'get', user: podUser(pod, 'db'), objectRef: { resource: 'configmaps', namespace: 'shop', name: 'cfg', apiVersion: 'v1' } });
    const [a, b] = await p.process([rawRecord(actor(old)), rawRecord(actor(recreated))]);
    expect(kubeOf(a!)?.actor?.pod).toMatchObject({ uid: old.metadata.uid, labels: { gen: '1' }, deleted: true });
    expect(kubeOf(b!)?.actor?.pod).toMatchObject({ uid: recreated.metadata.uid, labels: { gen: '2' }, node: 'node-b' });
  });

  it('relists after 410 Gone and marks pods deleted during the gap', async () => {
    const { p, ctx } = await startProcessor();
    server.addPod({ namespace: 'shop', name: 'gap-0', nodeName: 'node-a' });
    await until(() => p.cache.lookup('shop', 'gap-0').kind === 'hit', 'gap-0 cached');
    const listsBefore = await counterValue(ctx.metrics, API, { verb: 'list' });
    server.setDown(true);
    server.delete('pods', 'shop', 'gap-0');
    server.expireHistory();
    server.setDown(false);
    await until(() => {
      const l = p.cache.lookup('shop', 'gap-0');
      return l.kind === 'hit' && l.pod.deletedAtMs > 0;
    }, 'gap-0 marked deleted after relist', 20_000);
    expect(await counterValue(ctx.metrics, API, { verb: 'list' })).toBeGreaterThan(listsBefore);
    expect(p.cache.lookup('shop', web.metadata.name).kind).toBe('hit');
  });

  it('scoped to one node: metadata-only requests with a spec.nodeName field selector', async () => {
    server.requests.length = 0;
    const { p } = await startProcessor({ node_name: 'node-a', namespace_labels: false });
    const podRequests = server.requests.filter((q) => q.path === '/api/v1/pods');
    expect(podRequests.length).toBeGreaterThan(0);
    for (const q of podRequests) {
      expect(q.query.fieldSelector).toBe('spec.nodeName=node-a');
      expect(q.accept).toContain('as=PartialObjectMetadata');
    }
    expect(p.cache.lookup('shop', web.metadata.name).kind).toBe('hit');
    expect(p.cache.lookup('monitoring', 'prometheus-0').kind).toBe('miss');
    const [r] = await p.process([rawRecord(auditLine({ verb: 'get', objectRef: podRef(web) }))]);
    expect(kubeOf(r!)?.object).toMatchObject({ node: 'node-a', owner: { kind: 'Deployment', name: 'web' } });
    // A pod on another node is a miss; its GET asks for the full object, so its own node is reported.
    const [other] = await p.process([rawRecord(auditLine({ verb: 'get', objectRef: podRef(prom) }))]);
    expect(kubeOf(other!)?.object).toMatchObject({ name: 'prometheus-0', node: 'node-b' });
  });

  it('API down: records pass on unenriched and counted; cached pods still enriched', async () => {
    const { p, ctx } = await startProcessor({ lookup_timeout: '300ms' });
    server.setDown(true);
    const known = auditLine({ verb: 'get', objectRef: podRef(web) });
    const unknown = auditLine({ verb: 'get', objectRef: { resource: 'pods', namespace: 'shop', name: 'unknown-1', apiVersion: 'v1' } });
    const records = [rawRecord(known), rawRecord(unknown), rawRecord(unknown)];
    const out = await p.process(records);
    expect(out).toEqual(records);
    expect(kubeOf(out[0]!)?.object?.name).toBe(web.metadata.name);
    expect(kubeOf(out[1]!)).toEqual({ cluster: 'emu' });
    expect(await counterValue(ctx.metrics, FAILURES, { reason: 'api_error' })).toBe(2);
  });

  it('API down from the start: the pipeline is not stalled', async () => {
    server.setDown(true);
    const { p, ctx } = await startProcessor({ lookup_timeout: '200ms', api_timeout: '30s' }, { waitSync: false });
    const line = auditLine({ verb: 'get', user: podUser(prom, 'prometheus'), objectRef: podRef(web) });
    for (let batch = 0; batch < 5; batch++) {
      const out = await p.process([rawRecord(line), rawRecord(line)]);
      expect(out).toHaveLength(2);
      // The service account needs no lookup; the pods could not be looked up.
      expect(kubeOf(out[0]!)).toEqual({ cluster: 'emu', actor: { serviceAccount: { namespace: 'monitoring', name: 'prometheus' } } });
    }
    expect(p.synced).toBe(false);
    expect(await counterValue(ctx.metrics, FAILURES)).toBe(10);
  });

  it('an API that accepts connections and never answers: lookup_timeout bounds the wait', async () => {
    const sockets = new Set<net.Socket>();
    const blackhole = net.createServer((s) => sockets.add(s));
    await new Promise<void>((r) => blackhole.listen(0, '127.0.0.1', r));
    const port = (blackhole.address() as net.AddressInfo).port;
    const silentDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-'));
    try {
      const silent = writeKubeconfig(silentDir, `http://127.0.0.1:${port}`, TOKEN);
      const { p, ctx } = await startProcessor({ kubeconfig: silent, lookup_timeout: '300ms', api_timeout: '60s' }, { waitSync: false });
      const t0 = Date.now();
      const out = await p.process([rawRecord(auditLine({ verb: 'get', objectRef: podRef(web) }))]);
      // Far below api_timeout: the batch did not wait for the API.
      expect(Date.now() - t0).toBeLessThan(30_000);
      expect(kubeOf(out[0]!)).toEqual({ cluster: 'emu' });
      expect(await counterValue(ctx.metrics, FAILURES, { reason: 'timeout' })).toBe(1);
      await p.stop();
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => blackhole.close(r));
      fs.rmSync(silentDir, { recursive: true, force: true });
    }
  });

  it('lines that cannot name a pod are not parsed and keep their bytes', async () => {
    const { p } = await startProcessor({ cluster: undefined });
    const lease = auditLine({
      verb: 'update',
      user: { username: 'kube-scheduler', groups: ['system:authenticated'] },
      objectRef: { resource: 'leases', namespace: 'kube-system', name: 'kube-scheduler', apiGroup: 'coordination.k8s.io', apiVersion: 'v1' },
    });
    const broken = '{"objectRef":{"resource":"leases"} cut';
    const out = await p.process([rawRecord(lease), rawRecord(broken)]);
    expect(out.map((r) => r.encode())).toEqual([lease, broken]);
  });
});
