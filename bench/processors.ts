import vm from 'node:vm';
import v8 from 'node:v8';
import { Registry } from 'prom-client';
import { LogRecord } from '../src/pipeline/record.ts';
import type { ComponentContext, Processor } from '../src/plugin.ts';
import { filterProcessor } from '../src/processors/filter/filter.ts';
import { k8sMetadataProcessor, type K8sMetadataProcessor } from '../src/processors/k8s-metadata/k8s-metadata.ts';
import { PodCache, type PodObject } from '../src/processors/k8s-metadata/pod-cache.ts';
import { extractRefs, type PodRef } from '../src/processors/k8s-metadata/refs.ts';
import { redactProcessor } from '../src/processors/redact/redact.ts';
import { auditLines, SeededRandom } from '../test/generators/audit-gen.ts';
import { createLogger } from '../src/telemetry/logger.ts';
import { ComponentTelemetry, createMetrics } from '../src/telemetry/metrics.ts';
import { header, measure, MiB, row, scale, type Measurement } from './lib.ts';

/**
 * Processor costs on a realistic audit stream, each beside the unprocessed
 * pipeline step (records built from raw lines and encoded for the spool) in
 * the same run:
 * - filter (the documented noise rules), redact (default rules),
 *   k8s_metadata with a warm cache (every pod the stream names is cached);
 * - memory held by the k8s_metadata pod cache for 10,000 realistic pods
 *   (full objects as the API lists them, reduced on arrival).
 */

const BATCH = 500;

function context(name: string, type: string): ComponentContext {
  const metrics = createMetrics(new Registry());
  return { name, log: createLogger('silent'), telemetry: new ComponentTelemetry(metrics, 'processor', name, type), metrics, nodeName: 'bench', stateDir: '/nonexistent' };
}

async function pipeline(lines: readonly string[], processors: readonly Processor[]): Promise<{ bytes: number; events: number }> {
  let bytes = 0;
  let out = 0;
  for (let i = 0; i < lines.length; i += BATCH) {
    let records: LogRecord[] = [];
    const end = Math.min(lines.length, i + BATCH);
    for (let j = i; j < end; j++) {
      const raw = lines[j]!;
      bytes += raw.length + 1;
      records.push(new LogRecord({ id: `r${j}`, timeMs: j, input: 'audit', raw }));
    }
    for (const p of processors) records = await p.process(records);
    for (const r of records) out += r.encode().length;
  }
  if (out === 0 && lines.length > 0 && processors.length === 0) throw new Error('nothing encoded');
  return { bytes, events: lines.length };
}

/** CPU cost of filter, redact and k8s_metadata per MiB of audit log. */
export async function benchProcessorCost(): Promise<void> {
  const targetBytes = Math.round(64 * MiB * scale());
  header(`processors on a realistic audit stream (~${(targetBytes / MiB).toFixed(0)} MiB, batches of ${BATCH})`);
  const lines = [...auditLines({ seed: 42, approxBytes: targetBytes, maxLineBytes: 2 * MiB })];

  const filter = filterProcessor.create(
    filterProcessor.schema.parse({
      rules: [
        { name: 'node-reads', when: { all: [{ field: 'verb', in: ['get', 'list', 'watch'] }, { field: 'user.username', prefix: 'system:node:' }] } },
        { name: 'leases-events', when: { field: 'objectRef.resource', in: ['leases', 'events'] } },
      ],
    }),
    context('filter', 'filter'),
  );
  const redact = redactProcessor.create(redactProcessor.schema.parse({}), context('redact', 'redact'));
  const meta = k8sMetadataProcessor.create(
    k8sMetadataProcessor.schema.parse({ annotations: ['prometheus.io/*'], cluster: 'bench' }),
    context('meta', 'k8s_metadata'),
  ) as K8sMetadataProcessor;
  // Warm cache: every pod the stream names, as the watch would have delivered it.
  const rng = new SeededRandom(7);
  const seen = new Set<string>();
  for (const line of lines) {
    if (!line.includes('"pods"') && !line.includes('pod-name')) continue;
    const refs = extractRefs(JSON.parse(line));
    for (const ref of [refs.object, refs.actorPod]) {
      if (ref === undefined || seen.has(`${ref.namespace}/${ref.name}`)) continue;
      seen.add(`${ref.namespace}/${ref.name}`);
      meta.cache.upsert(fakePod(rng, seen.size, ref));
    }
  }

  // Warm-up pass so JIT state does not favour whichever case runs last.
  await pipeline(lines.slice(0, 2000), [filter, redact, meta]);
  const reference = await measure('reference: records built and encoded', () => pipeline(lines, []));
  // For scale: what parsing every line once costs (what any field-based processor pays at least).
  const parseAll = await measure('for scale: JSON.parse of every line', () => {
    let bytes = 0;
    for (const l of lines) {
      bytes += l.length + 1;
      if (JSON.parse(l) === null) bytes = -1;
    }
    return { bytes, events: lines.length };
  });
  const cases: Measurement[] = [
    await measure('filter (node reads, leases, events)', () => pipeline(lines, [filter])),
    await measure('redact (default rules)', () => pipeline(lines, [redact])),
    await measure('k8s_metadata (warm cache)', () => pipeline(lines, [meta])),
    await measure('filter → redact → k8s_metadata', () => pipeline(lines, [filter, redact, meta])),
  ];
  process.stdout.write(`${row(reference)}\n${row(parseAll, reference)}\n`);
  const refCpuPerMiB = reference.cpuMs / (reference.bytes / MiB);
  for (const m of cases) {
    const extra = m.cpuMs / (m.bytes / MiB) - refCpuPerMiB;
    process.stdout.write(`${row(m, reference)}  (+${extra.toFixed(1)} CPU ms/MiB over reference)\n`);
  }
  process.stdout.write(`${lines.length} lines, ${seen.size} distinct pods cached\n`);
}

/** Bytes of heap held per cached pod, for 10,000 pods listed as full objects in pages of 500. */
export async function benchPodCacheMemory(): Promise<{ pods: number; bytesPerPod: number }> {
  const pods = 10_000;
  header(`k8s_metadata pod cache memory (${pods} pods, full objects, pages of 500)`);
  const gc = exposeGc();
  const rng = new SeededRandom(11);
  // The API's JSON text, page by page, as the list delivers it (kept outside the measured heap delta).
  const pages: string[] = [];
  let pageBytes = 0;
  for (let i = 0; i < pods; i += 500) {
    const items: PodObject[] = [];
    for (let j = i; j < Math.min(pods, i + 500); j++) items.push(fakePod(rng, j));
    const text = JSON.stringify({ kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: '123456' }, items });
    pageBytes += text.length;
    pages.push(text);
  }
  gc();
  const before = process.memoryUsage().heapUsed;
  const cache = new PodCache({ deletedTtlMs: 300_000, negativeTtlMs: 60_000, annotations: ['prometheus.io/*'] });
  for (const page of pages) {
    const list = JSON.parse(page) as { items: PodObject[] };
    for (const item of list.items) cache.upsert(item);
  }
  gc();
  const after = process.memoryUsage().heapUsed;
  const bytesPerPod = Math.round((after - before) / cache.size);
  process.stdout.write(
    `${cache.size} pods cached from ${(pageBytes / MiB).toFixed(1)} MiB of list JSON (${Math.round(pageBytes / pods)} B/pod on the wire): ` +
      `${((after - before) / MiB).toFixed(2)} MiB heap, ${bytesPerPod} B per pod (target ≤ 1024)\n`,
  );
  // Keep the cache and the page texts reachable until measured: a variable not used
  // afterwards may be collected early, which would skew the difference.
  if (cache.lookup('ns-0', 'none').kind === 'hit' || pages.at(-1)!.length === 0) process.stdout.write('\n');
  return { pods: cache.size, bytesPerPod };
}

export async function benchProcessors(): Promise<void> {
  await benchProcessorCost();
  await benchPodCacheMemory();
}

function exposeGc(): () => void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return g;
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

const APPS = ['web', 'api', 'checkout', 'cart', 'search', 'auth', 'payments', 'catalog', 'worker', 'scheduler'];

/** A pod as `GET /api/v1/pods` returns it for a Deployment's replica: ~4-5 KB of JSON. */
function fakePod(rng: SeededRandom, i: number, ref?: PodRef): PodObject {
  const app = `${APPS[i % APPS.length]}-${Math.floor(i / 20) % 50}`;
  const namespace = ref?.namespace ?? `ns-${i % 40}`;
  const hash = rng.hex(10);
  const name = ref?.name ?? `${app}-${hash}-${rng.hex(5)}`;
  const uid = ref?.uid ?? rng.uuid();
  const node = `ip-10-0-${i % 100}-${(i * 7) % 250}.eu-west-1.compute.internal`;
  const ts = '2024-05-01T10:00:00Z';
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      generateName: `${app}-${hash}-`,
      namespace,
      uid,
      resourceVersion: String(100000 + i),
      creationTimestamp: ts,
      labels: {
        app,
        'app.kubernetes.io/name': app,
        'app.kubernetes.io/instance': `${app}-prod`,
        'app.kubernetes.io/part-of': 'shop',
        'pod-template-hash': hash,
        version: `v1.${i % 9}.0`,
      },
      annotations: {
        'prometheus.io/scrape': 'true',
        'prometheus.io/port': '9090',
        'kubectl.kubernetes.io/restartedAt': ts,
        'cni.projectcalico.org/podIP': `10.1.${i % 250}.${i % 200}/32`,
        'cni.projectcalico.org/containerID': rng.hex(64),
      },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: `${app}-${hash}`, uid: rng.uuid(), controller: true, blockOwnerDeletion: true }],
      managedFields: [
        {
          manager: 'kube-controller-manager',
          operation: 'Update',
          apiVersion: 'v1',
          time: ts,
          fieldsType: 'FieldsV1',
          fieldsV1: { 'f:metadata': { 'f:generateName': {}, 'f:labels': { '.': {}, 'f:app': {}, 'f:pod-template-hash': {} }, 'f:ownerReferences': {} }, 'f:spec': { 'f:containers': {} } },
        },
        { manager: 'kubelet', operation: 'Update', apiVersion: 'v1', time: ts, fieldsType: 'FieldsV1', subresource: 'status', fieldsV1: { 'f:status': { 'f:conditions': {}, 'f:podIP': {} } } },
      ],
    },
    spec: {
      volumes: [{ name: 'kube-api-access', projected: { sources: [{ serviceAccountToken: { expirationSeconds: 3607, path: 'token' } }, { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } }], defaultMode: 420 } }],
      containers: [
        {
          name: 'app',
          image: `registry.example.com/shop/${app}:1.${i % 9}.0`,
          ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }],
          env: [{ name: 'LOG_LEVEL', value: 'info' }, { name: 'POD_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } }],
          resources: { limits: { memory: '512Mi' }, requests: { cpu: '100m', memory: '256Mi' } },
          volumeMounts: [{ name: 'kube-api-access', readOnly: true, mountPath: '/var/run/secrets/kubernetes.io/serviceaccount' }],
          readinessProbe: { httpGet: { path: '/ready', port: 8080, scheme: 'HTTP' }, timeoutSeconds: 1, periodSeconds: 10, successThreshold: 1, failureThreshold: 3 },
          terminationMessagePath: '/dev/termination-log',
          terminationMessagePolicy: 'File',
          imagePullPolicy: 'IfNotPresent',
        },
      ],
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 30,
      dnsPolicy: 'ClusterFirst',
      serviceAccountName: app,
      serviceAccount: app,
      nodeName: node,
      securityContext: {},
      schedulerName: 'default-scheduler',
      tolerations: [
        { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
        { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
      ],
      priority: 0,
      enableServiceLinks: true,
      preemptionPolicy: 'PreemptLowerPriority',
    },
    status: {
      phase: 'Running',
      conditions: ['PodReadyToStartContainers', 'Initialized', 'Ready', 'ContainersReady', 'PodScheduled'].map((type) => ({ type, status: 'True', lastProbeTime: null, lastTransitionTime: ts })),
      hostIP: `10.0.${i % 100}.${(i * 7) % 250}`,
      podIP: `10.1.${i % 250}.${i % 200}`,
      podIPs: [{ ip: `10.1.${i % 250}.${i % 200}` }],
      startTime: ts,
      containerStatuses: [
        {
          name: 'app',
          state: { running: { startedAt: ts } },
          lastState: {},
          ready: true,
          restartCount: 0,
          image: `registry.example.com/shop/${app}:1.${i % 9}.0`,
          imageID: `registry.example.com/shop/${app}@sha256:${rng.hex(64)}`,
          containerID: `containerd://${rng.hex(64)}`,
          started: true,
        },
      ],
      qosClass: 'Burstable',
    },
  };
}
