/**
 * Realistic `audit.k8s.io/v1` Event generation for tests, benchmarks and sample files.
 *
 * Shapes follow what kube-apiserver's JSON log backend writes:
 * - Fields in the Go struct's order; map-typed fields (`user.extra`, `annotations`, labels)
 *   with sorted keys; `<`, `>`, `&`, U+2028/9 escaped as `\u003c`... (Go's encoder does that,
 *   so request URIs read `?a=1\u0026b=2`).
 * - Timestamps are MicroTime: RFC 3339 UTC with exactly six fractional digits.
 * - Stage rules: `RequestReceived` carries no responseStatus, annotations or bodies (they are
 *   filled in later in the handler chain); `ResponseStarted` (long-running requests only:
 *   watch, exec) adds responseStatus and annotations; `ResponseComplete` / `Panic` add the
 *   bodies allowed by the level — requestObject from `Request`, responseObject only at
 *   `RequestResponse`, neither for non-resource requests.
 *
 * The stream generator is a small simulated cluster driven by one seeded PRNG: every run with
 * the same options yields the same events, byte for byte. Requests arrive at random
 * intervals; each request's stages are scheduled at their own times and emitted in
 * stageTimestamp order, so stages of concurrent requests interleave like in a real log and
 * every auditID gets all its stages (RequestReceived → [ResponseStarted] → ResponseComplete).
 */

// ---------------------------------------------------------------------------------------------
// Types

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export type AuditLevel = 'Metadata' | 'Request' | 'RequestResponse';
export type AuditStage = 'RequestReceived' | 'ResponseStarted' | 'ResponseComplete' | 'Panic';

export interface AuditUserInfo {
  username: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

export interface AuditObjectReference {
  resource?: string;
  namespace?: string;
  name?: string;
  uid?: string;
  apiGroup?: string;
  apiVersion?: string;
  resourceVersion?: string;
  subresource?: string;
}

export interface AuditResponseStatus {
  metadata: Record<string, never>;
  status?: 'Success' | 'Failure';
  message?: string;
  reason?: string;
  details?: { name?: string; group?: string; kind?: string; uid?: string };
  code: number;
}

export interface AuditEvent {
  kind: 'Event';
  apiVersion: 'audit.k8s.io/v1';
  level: AuditLevel;
  auditID: string;
  stage: AuditStage;
  requestURI: string;
  verb: string;
  user: AuditUserInfo;
  impersonatedUser?: AuditUserInfo;
  sourceIPs?: string[];
  userAgent?: string;
  objectRef?: AuditObjectReference;
  responseStatus?: AuditResponseStatus;
  requestObject?: JsonObject;
  responseObject?: JsonObject;
  requestReceivedTimestamp: string;
  stageTimestamp: string;
  annotations?: Record<string, string>;
}

export interface MakeAuditEventOptions {
  /** Default `Metadata`. */
  level?: AuditLevel;
  /** Default `ResponseComplete`. */
  stage?: AuditStage;
  /** Default: a random UUID (pass one for deterministic output). */
  auditID?: string;
  /** Default `get`. */
  verb?: string;
  /** Default: built from objectRef and verb (e.g. `/api/v1/namespaces/default/pods/web-0`). */
  requestURI?: string;
  /** Default: a kubeadm admin (`kubernetes-admin`). */
  user?: AuditUserInfo;
  impersonatedUser?: AuditUserInfo;
  /** Default `['10.0.0.2']`. */
  sourceIPs?: string[];
  /** Default: a kubectl user agent. */
  userAgent?: string;
  /** Absent for non-resource requests (`/healthz`, `/version`...). */
  objectRef?: AuditObjectReference;
  /** HTTP code. Default 201 for `create`, else 200. Ignored when `responseStatus` is given. */
  code?: number;
  responseStatus?: AuditResponseStatus;
  requestObject?: JsonObject;
  responseObject?: JsonObject;
  /** Default `{decision: allow, reason: ''}`. Never present on RequestReceived. */
  annotations?: Record<string, string>;
  /** Date (ms precision) or a MicroTime string used as is. Default now. */
  requestReceivedTimestamp?: Date | string;
  /** Default: requestReceivedTimestamp for RequestReceived, else received + 2 ms. */
  stageTimestamp?: Date | string;
}

/** Kinds of traffic the stream mixes; the weights are relative. */
export type AuditScenario =
  | 'kubelet'
  | 'lease'
  | 'controller'
  | 'podServiceAccount'
  | 'kubectl'
  | 'exec'
  | 'secret'
  | 'configmap'
  | 'tokenreview'
  | 'event'
  | 'bigList'
  | 'error'
  | 'panic';

export const DEFAULT_AUDIT_MIX: Readonly<Record<AuditScenario, number>> = {
  kubelet: 30,
  lease: 24,
  controller: 12,
  podServiceAccount: 8,
  kubectl: 4,
  exec: 1,
  secret: 3,
  configmap: 2.5,
  tokenreview: 5,
  event: 8,
  bigList: 0.1,
  error: 2.4,
  panic: 0,
};

export interface AuditStreamOptions {
  /** PRNG seed. Default 1. */
  seed?: number;
  /**
   * Exact number of events to yield (≥ 2, or 0). Default 1000 when `approxBytes` is absent.
   * Requests still in flight near the end are completed, never cut.
   */
  count?: number;
  /**
   * Stop starting requests once this many bytes of lines (each + `\n`) are emitted or
   * scheduled; the output ends slightly above it.
   */
  approxBytes?: number;
  /** Relative weights, merged over DEFAULT_AUDIT_MIX. */
  mix?: Partial<Record<AuditScenario, number>>;
  /** Time of the first request. Default 2024-05-01T10:00:00Z. */
  startTime?: Date | string;
  /** Mean request rate of the simulated apiserver. Default 50/s. */
  requestsPerSecond?: number;
  /** Worker nodes in the simulated cluster. Default 5. */
  nodes?: number;
  /** Pods in a `bigList` response (~5 KB each; 200 ≈ 1 MB). Default 200. */
  bigListPods?: number;
  /** No line is longer than this: big lists are cut down to fit. Default unlimited. */
  maxLineBytes?: number;
}

// ---------------------------------------------------------------------------------------------
// Small utilities

/** mulberry32: tiny, fast, and good enough to make traffic look random. */
export class SeededRandom {
  #state: number;

  constructor(seed: number) {
    this.#state = (Math.trunc(seed) ^ 0x9e3779b9) >>> 0;
  }

  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('pick from an empty list');
    return items[Math.floor(this.next() * items.length)] as T;
  }

  weighted<K extends string>(weights: Readonly<Record<K, number>>): K {
    const entries = (Object.entries(weights) as [K, number][]).filter(([, w]) => w > 0);
    const total = entries.reduce((sum, [, w]) => sum + w, 0);
    if (entries.length === 0) throw new RangeError('all weights are zero');
    let r = this.next() * total;
    for (const [key, w] of entries) {
      r -= w;
      if (r < 0) return key;
    }
    return (entries[entries.length - 1] as [K, number])[0];
  }

  hex(length: number): string {
    let s = '';
    for (let i = 0; i < length; i++) s += '0123456789abcdef'[this.int(0, 15)];
    return s;
  }

  /** Characters Kubernetes uses for generated name suffixes. */
  suffix(length: number): string {
    const alphabet = 'bcdfghjklmnpqrstvwxz2456789';
    let s = '';
    for (let i = 0; i < length; i++) s += alphabet[this.int(0, alphabet.length - 1)];
    return s;
  }

  /** RFC 4122 version-4 UUID built from this generator. */
  uuid(): string {
    const h = this.hex(32).split('');
    h[12] = '4';
    h[16] = '89ab'[this.int(0, 3)] as string;
    const s = h.join('');
    return `${s.slice(0, 8)}-${s.slice(8, 12)}-${s.slice(12, 16)}-${s.slice(16, 20)}-${s.slice(20)}`;
  }
}

/** MicroTime as the apiserver writes it: `2024-05-01T10:00:00.123456Z` from epoch microseconds. */
export function formatMicroTime(epochUs: number): string {
  const ms = Math.floor(epochUs / 1000);
  const micros = String(Math.floor(epochUs) - ms * 1000).padStart(3, '0');
  return `${new Date(ms).toISOString().slice(0, 23)}${micros}Z`;
}

/** metav1.Time (whole seconds): `2024-05-01T10:00:00Z`. */
function formatTime(epochUs: number): string {
  return `${new Date(Math.floor(epochUs / 1000)).toISOString().slice(0, 19)}Z`;
}

function toMicroTime(value: Date | string): string {
  return typeof value === 'string' ? value : formatMicroTime(value.getTime() * 1000);
}

function sortedRecord<V>(record: Record<string, V>): Record<string, V> {
  const out: Record<string, V> = {};
  for (const key of Object.keys(record).sort()) out[key] = record[key] as V;
  return out;
}

const GO_ESCAPES: Record<string, string> = {
  '<': '\\u003c',
  '>': '\\u003e',
  '&': '\\u0026',
  '\u2028': '\\u2028',
  '\u2029': '\\u2029',
};

/** JSON.stringify with Go encoding/json's HTML-safe escaping (only ever inside strings). */
export function goJsonStringify(value: unknown): string {
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => GO_ESCAPES[c] as string);
}

/** Path of a resource request: `/apis/apps/v1/namespaces/web/deployments/shop/scale`. */
export function resourcePath(ref: AuditObjectReference): string {
  const group = ref.apiGroup ?? '';
  let p = group === '' ? `/api/${ref.apiVersion ?? 'v1'}` : `/apis/${group}/${ref.apiVersion ?? 'v1'}`;
  if (ref.namespace) p += `/namespaces/${ref.namespace}`;
  if (ref.resource) p += `/${ref.resource}`;
  if (ref.name) p += `/${ref.name}`;
  if (ref.subresource) p += `/${ref.subresource}`;
  return p;
}

function failureStatus(code: number, reason: string, message: string, details?: AuditResponseStatus['details']): AuditResponseStatus {
  return details
    ? { metadata: {}, status: 'Failure', message, reason, details, code }
    : { metadata: {}, status: 'Failure', message, reason, code };
}

const LEVEL_RANK: Record<AuditLevel, number> = { Metadata: 0, Request: 1, RequestResponse: 2 };

// ---------------------------------------------------------------------------------------------
// One event

const DEFAULT_USER: AuditUserInfo = {
  username: 'kubernetes-admin',
  groups: ['kubeadm:cluster-admins', 'system:authenticated'],
};

/** An `audit.k8s.io/v1` Event with the apiserver's stage and level rules applied. */
export function makeAuditEvent(opts: MakeAuditEventOptions = {}): AuditEvent {
  const level = opts.level ?? 'Metadata';
  const stage = opts.stage ?? 'ResponseComplete';
  const verb = opts.verb ?? 'get';
  const receivedDate = opts.requestReceivedTimestamp ?? new Date();
  const received = toMicroTime(receivedDate);
  let stageTs: string;
  if (opts.stageTimestamp !== undefined) stageTs = toMicroTime(opts.stageTimestamp);
  else if (stage === 'RequestReceived') stageTs = received;
  else if (typeof receivedDate === 'string') stageTs = received;
  else stageTs = formatMicroTime(receivedDate.getTime() * 1000 + 2000);

  let responseStatus: AuditResponseStatus | undefined;
  if (stage === 'Panic') responseStatus = failureStatus(500, 'InternalError', `APIServer panic'd: net/http: abort Handler`);
  else if (stage !== 'RequestReceived') {
    responseStatus = opts.responseStatus ?? { metadata: {}, code: opts.code ?? (verb === 'create' ? 201 : 200) };
  }
  const bodiesAllowed = opts.objectRef !== undefined && (stage === 'ResponseComplete' || stage === 'Panic');
  const requestObject = bodiesAllowed && LEVEL_RANK[level] >= LEVEL_RANK.Request ? opts.requestObject : undefined;
  const responseObject = bodiesAllowed && level === 'RequestResponse' && stage === 'ResponseComplete' ? opts.responseObject : undefined;
  const annotations =
    stage === 'RequestReceived'
      ? undefined
      : sortedRecord(opts.annotations ?? { 'authorization.k8s.io/decision': 'allow', 'authorization.k8s.io/reason': '' });
  // The Go struct's field order; optional members only when present.
  return {
    kind: 'Event',
    apiVersion: 'audit.k8s.io/v1',
    level,
    auditID: opts.auditID ?? crypto.randomUUID(),
    stage,
    requestURI: opts.requestURI ?? (opts.objectRef ? resourcePath(opts.objectRef) : '/'),
    verb,
    user: orderUser(opts.user ?? DEFAULT_USER),
    ...(opts.impersonatedUser ? { impersonatedUser: orderUser(opts.impersonatedUser) } : {}),
    sourceIPs: opts.sourceIPs ?? ['10.0.0.2'],
    userAgent: opts.userAgent ?? 'kubectl/v1.30.1 (linux/amd64) kubernetes/6911225',
    ...(opts.objectRef ? { objectRef: orderObjectRef(opts.objectRef) } : {}),
    ...(responseStatus ? { responseStatus } : {}),
    ...(requestObject ? { requestObject } : {}),
    ...(responseObject ? { responseObject } : {}),
    requestReceivedTimestamp: received,
    stageTimestamp: stageTs,
    ...(annotations ? { annotations } : {}),
  };
}

/** One audit log line (no trailing newline), encoded like the apiserver's JSON backend. */
export function auditLine(opts: MakeAuditEventOptions = {}): string {
  return goJsonStringify(makeAuditEvent(opts));
}

function orderUser(u: AuditUserInfo): AuditUserInfo {
  const out: AuditUserInfo = { username: u.username };
  if (u.uid !== undefined) out.uid = u.uid;
  if (u.groups !== undefined) out.groups = u.groups;
  if (u.extra !== undefined) out.extra = sortedRecord(u.extra);
  return out;
}

function orderObjectRef(r: AuditObjectReference): AuditObjectReference {
  const out: AuditObjectReference = {};
  for (const key of ['resource', 'namespace', 'name', 'uid', 'apiGroup', 'apiVersion', 'resourceVersion', 'subresource'] as const) {
    const v = r[key];
    if (v !== undefined && v !== '') out[key] = v;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The simulated cluster

const K8S_VERSION = 'v1.30.2';
const K8S_COMMIT = '3968350';
const KUBECTL_UA = 'kubectl/v1.30.1 (darwin/arm64) kubernetes/6911225';
const CONTROL_PLANE_IP = '10.0.0.2';

interface NodeModel {
  name: string;
  uid: string;
  ip: string;
  user: AuditUserInfo;
}

interface ServiceAccountModel {
  namespace: string;
  name: string;
  uid: string;
}

interface PodModel {
  namespace: string;
  name: string;
  uid: string;
  app: string;
  rsName: string;
  rsUid: string;
  hash: string;
  image: string;
  node: NodeModel;
  ip: string;
  createdUs: number;
  resourceVersion: number;
  serviceAccount: string;
}

interface DeploymentModel {
  namespace: string;
  name: string;
  uid: string;
  replicas: number;
  image: string;
  createdUs: number;
  generation: number;
  resourceVersion: number;
}

interface RequestPlan {
  opts: MakeAuditEventOptions;
  receivedUs: number;
  /** Only for long-running requests (watch, exec). */
  startedUs?: number;
  completedUs: number;
  panic?: boolean;
}

const APPS: readonly { namespace: string; app: string; image: string; sa: string }[] = [
  { namespace: 'payments', app: 'checkout', image: 'registry.example.com/payments/checkout:1.14.2', sa: 'checkout' },
  { namespace: 'payments', app: 'ledger', image: 'registry.example.com/payments/ledger:3.2.0', sa: 'ledger' },
  { namespace: 'web', app: 'frontend', image: 'registry.example.com/web/frontend:2024.04.30', sa: 'default' },
  { namespace: 'web', app: 'api', image: 'registry.example.com/web/api:5.9.1', sa: 'api' },
  { namespace: 'default', app: 'nginx', image: 'nginx:1.25.5', sa: 'default' },
  { namespace: 'monitoring', app: 'prometheus', image: 'quay.io/prometheus/prometheus:v2.53.0', sa: 'prometheus' },
  { namespace: 'kube-system', app: 'coredns', image: 'registry.k8s.io/coredns/coredns:v1.11.1', sa: 'coredns' },
  { namespace: 'kube-system', app: 'metrics-server', image: 'registry.k8s.io/metrics-server/metrics-server:v0.7.1', sa: 'metrics-server' },
];
const CONTROLLERS = ['replicaset-controller', 'deployment-controller', 'endpointslice-controller', 'generic-garbage-collector'] as const;

function saUsername(sa: { namespace: string; name: string }): string {
  return `system:serviceaccount:${sa.namespace}:${sa.name}`;
}

function saGroups(namespace: string): string[] {
  return ['system:serviceaccounts', `system:serviceaccounts:${namespace}`, 'system:authenticated'];
}

function rbacReason(binding: string, role: string, subject: string): string {
  return `RBAC: allowed by ClusterRoleBinding "${binding}" of ClusterRole "${role}" to ${subject}`;
}

function allow(reason: string): Record<string, string> {
  return { 'authorization.k8s.io/decision': 'allow', 'authorization.k8s.io/reason': reason };
}

function watchTimeout(rng: SeededRandom): { query: string; seconds: number } {
  // client-go picks a random timeout in [5m, 10m) for reflector watches.
  const seconds = rng.int(300, 599);
  return { query: `timeout=${Math.floor(seconds / 60)}m${seconds % 60}s&timeoutSeconds=${seconds}`, seconds };
}

class ClusterSim {
  readonly #rng: SeededRandom;
  readonly #nodes: NodeModel[] = [];
  readonly #pods: PodModel[] = [];
  readonly #deployments: DeploymentModel[] = [];
  readonly #configMaps = new Map<string, { uid: string; createdUs: number; applied: number }>();
  readonly #secrets: { namespace: string; name: string; uid: string; createdUs: number; resourceVersion: number; data: JsonObject }[] = [];
  readonly #controllerSAs = new Map<string, ServiceAccountModel>();
  readonly #saUids = new Map<string, string>();
  /** One token (JTI) per pod or controller: they reuse it until it is refreshed. */
  readonly #tokenIds = new Map<string, string>();
  readonly #kcmUser: AuditUserInfo;
  readonly #schedulerUser: AuditUserInfo;
  readonly #bigListPods: number;
  readonly #maxLineBytes: number;
  #resourceVersion: number;
  #weights: Record<AuditScenario, number>;

  constructor(rng: SeededRandom, opts: { nodes: number; startUs: number; mix: Record<AuditScenario, number>; bigListPods: number; maxLineBytes: number }) {
    this.#rng = rng;
    this.#weights = opts.mix;
    this.#bigListPods = opts.bigListPods;
    this.#maxLineBytes = opts.maxLineBytes;
    this.#resourceVersion = rng.int(1_000_000, 9_000_000);
    const x509 = (): Record<string, string[]> => ({ 'authentication.kubernetes.io/credential-id': [`X509SHA256=${rng.hex(64)}`] });
    this.#kcmUser = { username: 'system:kube-controller-manager', groups: ['system:authenticated'], extra: x509() };
    this.#schedulerUser = { username: 'system:kube-scheduler', groups: ['system:authenticated'], extra: x509() };
    for (let i = 1; i <= opts.nodes; i++) {
      const name = `node-${i}`;
      this.#nodes.push({
        name,
        uid: rng.uuid(),
        ip: `10.0.1.${10 + i}`,
        user: { username: `system:node:${name}`, groups: ['system:nodes', 'system:authenticated'], extra: x509() },
      });
    }
    for (const ctrl of CONTROLLERS) this.#controllerSAs.set(ctrl, { namespace: 'kube-system', name: ctrl, uid: rng.uuid() });
    // Pods created over the week before the stream starts.
    const weekUs = 7 * 24 * 3600 * 1e6;
    for (const app of APPS) {
      const deployment = this.#newDeployment(app.namespace, app.app, app.image, opts.startUs - rng.int(1, 7) * 24 * 3600 * 1e6);
      const hash = rng.suffix(10);
      const rsName = `${app.app}-${hash}`;
      const rsUid = rng.uuid();
      const replicas = app.namespace === 'kube-system' || app.app === 'prometheus' ? 2 : rng.int(2, 6);
      deployment.replicas = replicas;
      for (let r = 0; r < replicas; r++) {
        const node = rng.pick(this.#nodes);
        this.#pods.push({
          namespace: app.namespace,
          name: `${rsName}-${rng.suffix(5)}`,
          uid: rng.uuid(),
          app: app.app,
          rsName,
          rsUid,
          hash,
          image: app.image,
          node,
          ip: `10.244.${this.#nodes.indexOf(node) + 1}.${rng.int(2, 250)}`,
          createdUs: opts.startUs - rng.int(60, Math.floor(weekUs / 1e6)) * 1e6,
          resourceVersion: this.#nextRV(),
          serviceAccount: app.sa,
        });
      }
    }
  }

  #nextRV(): number {
    this.#resourceVersion += this.#rng.int(1, 37);
    return this.#resourceVersion;
  }

  #newDeployment(namespace: string, name: string, image: string, createdUs: number): DeploymentModel {
    const d: DeploymentModel = {
      namespace,
      name,
      uid: this.#rng.uuid(),
      replicas: 2,
      image,
      createdUs,
      generation: 1,
      resourceVersion: this.#nextRV(),
    };
    this.#deployments.push(d);
    return d;
  }

  /** A pod-bound service-account identity, as a projected token presents it. */
  #podUser(pod: PodModel): AuditUserInfo {
    return {
      username: saUsername({ namespace: pod.namespace, name: pod.serviceAccount }),
      uid: this.#saUid(pod.namespace, pod.serviceAccount),
      groups: saGroups(pod.namespace),
      extra: {
        'authentication.kubernetes.io/credential-id': [`JTI=${this.#tokenId(pod.uid)}`],
        'authentication.kubernetes.io/node-name': [pod.node.name],
        'authentication.kubernetes.io/node-uid': [pod.node.uid],
        'authentication.kubernetes.io/pod-name': [pod.name],
        'authentication.kubernetes.io/pod-uid': [pod.uid],
      },
    };
  }

  #tokenId(holder: string): string {
    let jti = this.#tokenIds.get(holder);
    if (jti === undefined) {
      jti = this.#rng.uuid();
      this.#tokenIds.set(holder, jti);
    }
    return jti;
  }

  #saUid(namespace: string, name: string): string {
    const key = `${namespace}/${name}`;
    let uid = this.#saUids.get(key);
    if (uid === undefined) {
      uid = this.#rng.uuid();
      this.#saUids.set(key, uid);
    }
    return uid;
  }

  #controllerUser(ctrl: string): AuditUserInfo {
    const sa = this.#controllerSAs.get(ctrl) ?? { namespace: 'kube-system', name: ctrl, uid: this.#rng.uuid() };
    return {
      username: saUsername(sa),
      uid: sa.uid,
      groups: saGroups(sa.namespace),
      // kube-controller-manager mints these tokens itself (TokenRequest), not bound to a pod.
      extra: { 'authentication.kubernetes.io/credential-id': [`JTI=${this.#tokenId(sa.uid)}`] },
    };
  }

  #podsOf(app: string): PodModel[] {
    return this.#pods.filter((p) => p.app === app);
  }

  #latency(kind: 'get' | 'list' | 'write' | 'big'): number {
    const r = this.#rng;
    switch (kind) {
      case 'get':
        return r.int(600, 4_000);
      case 'list':
        return r.int(2_500, 45_000);
      case 'write':
        return r.int(3_500, 28_000);
      case 'big':
        return r.int(150_000, 650_000);
    }
  }

  /**
   * Plans one request starting at `t`. `remaining` is how many events may still be scheduled:
   * near the end only requests that fit exactly are chosen, so counts come out exact.
   */
  plan(t: number, remaining: number): RequestPlan {
    if (remaining === 3) return this.#kubeletWatch(t);
    if (remaining === 2 || remaining === 4) return this.#lease(t);
    const scenario = this.#rng.weighted(this.#weights);
    switch (scenario) {
      case 'kubelet':
        return this.#kubelet(t);
      case 'lease':
        return this.#lease(t);
      case 'controller':
        return this.#controller(t);
      case 'podServiceAccount':
        return this.#podServiceAccount(t);
      case 'kubectl':
        return this.#kubectl(t);
      case 'exec':
        return this.#exec(t);
      case 'secret':
        return this.#secret(t);
      case 'configmap':
        return this.#configmap(t);
      case 'tokenreview':
        return this.#tokenreview(t);
      case 'event':
        return this.#event(t);
      case 'bigList':
        return this.#bigList(t);
      case 'error':
        return this.#error(t);
      case 'panic':
        return this.#panic(t);
    }
  }

  #simple(t: number, latency: number, opts: MakeAuditEventOptions): RequestPlan {
    return { opts: { auditID: this.#rng.uuid(), ...opts }, receivedUs: t, completedUs: t + latency };
  }

  #kubeletUA(): string {
    return `kubelet/${K8S_VERSION} (linux/amd64) kubernetes/${K8S_COMMIT}`;
  }

  #kubelet(t: number): RequestPlan {
    const r = this.#rng;
    const node = r.pick(this.#nodes);
    const pods = this.#pods.filter((p) => p.node === node);
    const pod = pods.length > 0 ? r.pick(pods) : r.pick(this.#pods);
    const base = { user: node.user, sourceIPs: [node.ip], userAgent: this.#kubeletUA(), annotations: allow('') };
    const kind = r.weighted({ getNode: 20, patchNodeStatus: 8, getPod: 18, patchPodStatus: 10, listConfigMap: 10, token: 8, watch: 16 });
    switch (kind) {
      case 'getNode':
        return this.#simple(t, this.#latency('get'), {
          ...base,
          verb: 'get',
          requestURI: `/api/v1/nodes/${node.name}?resourceVersion=0&timeout=10s`,
          objectRef: { resource: 'nodes', name: node.name, apiVersion: 'v1' },
        });
      case 'patchNodeStatus':
        return this.#simple(t, this.#latency('write'), {
          ...base,
          verb: 'patch',
          requestURI: `/api/v1/nodes/${node.name}/status?timeout=10s`,
          objectRef: { resource: 'nodes', name: node.name, apiVersion: 'v1', subresource: 'status' },
        });
      case 'getPod':
        return this.#simple(t, this.#latency('get'), {
          ...base,
          verb: 'get',
          requestURI: `/api/v1/namespaces/${pod.namespace}/pods/${pod.name}`,
          objectRef: { resource: 'pods', namespace: pod.namespace, name: pod.name, apiVersion: 'v1' },
        });
      case 'patchPodStatus':
        pod.resourceVersion = this.#nextRV();
        return this.#simple(t, this.#latency('write'), {
          ...base,
          verb: 'patch',
          requestURI: `/api/v1/namespaces/${pod.namespace}/pods/${pod.name}/status`,
          objectRef: { resource: 'pods', namespace: pod.namespace, name: pod.name, apiVersion: 'v1', subresource: 'status' },
        });
      case 'listConfigMap':
        return this.#simple(t, this.#latency('list'), {
          ...base,
          verb: 'list',
          requestURI: `/api/v1/namespaces/${pod.namespace}/configmaps?fieldSelector=metadata.name%3Dkube-root-ca.crt&limit=500&resourceVersion=0`,
          objectRef: { resource: 'configmaps', namespace: pod.namespace, apiVersion: 'v1' },
        });
      case 'token':
        return this.#simple(t, this.#latency('write'), {
          ...base,
          verb: 'create',
          requestURI: `/api/v1/namespaces/${pod.namespace}/serviceaccounts/${pod.serviceAccount}/token`,
          objectRef: { resource: 'serviceaccounts', namespace: pod.namespace, name: pod.serviceAccount, apiVersion: 'v1', subresource: 'token' },
          code: 201,
        });
      case 'watch':
        return this.#kubeletWatch(t, node);
    }
  }

  #kubeletWatch(t: number, node: NodeModel = this.#rng.pick(this.#nodes)): RequestPlan {
    const r = this.#rng;
    const { query, seconds } = watchTimeout(r);
    const target = r.pick([
      { path: '/api/v1/services', resource: 'services', selector: '' },
      { path: '/api/v1/nodes', resource: 'nodes', selector: `fieldSelector=metadata.name%3D${node.name}&` },
      { path: '/api/v1/pods', resource: 'pods', selector: `fieldSelector=spec.nodeName%3D${node.name}&` },
      { path: '/apis/node.k8s.io/v1/runtimeclasses', resource: 'runtimeclasses', selector: '' },
    ]);
    const group = target.path.startsWith('/apis/') ? (target.path.split('/')[2] as string) : '';
    return {
      opts: {
        auditID: r.uuid(),
        verb: 'watch',
        requestURI: `${target.path}?allowWatchBookmarks=true&${target.selector}resourceVersion=${this.#resourceVersion - r.int(0, 5000)}&${query}&watch=true`,
        user: node.user,
        sourceIPs: [node.ip],
        userAgent: this.#kubeletUA(),
        objectRef: { resource: target.resource, apiGroup: group, apiVersion: 'v1' },
        annotations: allow(''),
      },
      receivedUs: t,
      startedUs: t + r.int(300, 1_500),
      completedUs: t + seconds * 1e6 + r.int(0, 900),
    };
  }

  #lease(t: number): RequestPlan {
    const r = this.#rng;
    if (r.chance(0.85)) {
      const node = r.pick(this.#nodes);
      return this.#simple(t, this.#latency('write'), {
        verb: 'update',
        requestURI: `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${node.name}?timeout=10s`,
        user: node.user,
        sourceIPs: [node.ip],
        userAgent: this.#kubeletUA(),
        objectRef: { resource: 'leases', namespace: 'kube-node-lease', name: node.name, apiGroup: 'coordination.k8s.io', apiVersion: 'v1' },
        annotations: allow(''),
      });
    }
    const scheduler = r.chance(0.5);
    const component = scheduler ? 'kube-scheduler' : 'kube-controller-manager';
    return this.#simple(t, this.#latency('write'), {
      verb: 'update',
      requestURI: `/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/${component}?timeout=5s`,
      user: scheduler ? this.#schedulerUser : this.#kcmUser,
      sourceIPs: [CONTROL_PLANE_IP],
      userAgent: `${component}/${K8S_VERSION} (linux/amd64) kubernetes/${K8S_COMMIT}/leader-election`,
      objectRef: { resource: 'leases', namespace: 'kube-system', name: component, apiGroup: 'coordination.k8s.io', apiVersion: 'v1' },
      annotations: allow(
        rbacReason(`system:${component}`, `system:${component}`, `User "system:${component}"`),
      ),
    });
  }

  #controller(t: number): RequestPlan {
    const r = this.#rng;
    const ctrl = r.pick(CONTROLLERS);
    const user = this.#controllerUser(ctrl);
    const base = {
      user,
      sourceIPs: [CONTROL_PLANE_IP],
      userAgent: `kube-controller-manager/${K8S_VERSION} (linux/amd64) kubernetes/${K8S_COMMIT}/${user.username}`,
      annotations: allow(rbacReason(`system:controller:${ctrl}`, `system:controller:${ctrl}`, `ServiceAccount "${ctrl}/kube-system"`)),
    };
    const pod = r.pick(this.#pods);
    switch (ctrl) {
      case 'replicaset-controller': {
        // Scale-up: a new pod from the ReplicaSet template, logged at Request level.
        const createdUs = t;
        const node = r.pick(this.#nodes);
        const newPod: PodModel = { ...pod, name: `${pod.rsName}-${r.suffix(5)}`, uid: r.uuid(), node, createdUs, resourceVersion: this.#nextRV() };
        const requestObject = podObject(newPod, { typeMeta: true, forCreate: true });
        return this.#simple(t, this.#latency('write'), {
          ...base,
          level: 'Request',
          verb: 'create',
          requestURI: `/api/v1/namespaces/${pod.namespace}/pods`,
          objectRef: { resource: 'pods', namespace: pod.namespace, name: newPod.name, apiVersion: 'v1' },
          requestObject,
          annotations: { ...base.annotations, 'pod-security.kubernetes.io/enforce-policy': 'privileged:latest' },
        });
      }
      case 'deployment-controller':
        return this.#simple(t, this.#latency('write'), {
          ...base,
          verb: 'update',
          requestURI: `/apis/apps/v1/namespaces/${pod.namespace}/replicasets/${pod.rsName}/status`,
          objectRef: { resource: 'replicasets', namespace: pod.namespace, name: pod.rsName, uid: pod.rsUid, apiGroup: 'apps', apiVersion: 'v1', resourceVersion: String(this.#nextRV()), subresource: 'status' },
        });
      case 'endpointslice-controller': {
        const name = `${pod.app}-${r.suffix(5)}`;
        return this.#simple(t, this.#latency('write'), {
          ...base,
          verb: 'update',
          requestURI: `/apis/discovery.k8s.io/v1/namespaces/${pod.namespace}/endpointslices/${name}`,
          objectRef: { resource: 'endpointslices', namespace: pod.namespace, name, uid: r.uuid(), apiGroup: 'discovery.k8s.io', apiVersion: 'v1', resourceVersion: String(this.#nextRV()) },
        });
      }
      default:
        return this.#simple(t, this.#latency('list'), {
          ...base,
          verb: 'list',
          requestURI: `/apis/apps/v1/controllerrevisions?limit=500&resourceVersion=0`,
          objectRef: { resource: 'controllerrevisions', apiGroup: 'apps', apiVersion: 'v1' },
        });
    }
  }

  #podServiceAccount(t: number): RequestPlan {
    const r = this.#rng;
    if (r.chance(0.6)) {
      const pod = r.pick(this.#podsOf('prometheus'));
      const base = {
        user: this.#podUser(pod),
        sourceIPs: [pod.ip],
        userAgent: 'Prometheus/2.53.0',
        annotations: allow(rbacReason('prometheus', 'prometheus', 'ServiceAccount "prometheus/monitoring"')),
      };
      const kind = r.weighted({ list: 3, watch: 3, proxy: 4 });
      if (kind === 'proxy') {
        const node = r.pick(this.#nodes);
        return this.#simple(t, this.#latency('list'), {
          ...base,
          verb: 'get',
          requestURI: `/api/v1/nodes/${node.name}/proxy/metrics/cadvisor`,
          objectRef: { resource: 'nodes', name: node.name, apiVersion: 'v1', subresource: 'proxy' },
        });
      }
      const resource = r.pick(['pods', 'endpoints', 'services'] as const);
      if (kind === 'list') {
        return this.#simple(t, this.#latency('list'), {
          ...base,
          verb: 'list',
          requestURI: `/api/v1/${resource}?limit=500&resourceVersion=0`,
          objectRef: { resource, apiVersion: 'v1' },
        });
      }
      const { query, seconds } = watchTimeout(r);
      return {
        opts: {
          ...base,
          auditID: r.uuid(),
          verb: 'watch',
          requestURI: `/api/v1/${resource}?allowWatchBookmarks=true&resourceVersion=${this.#resourceVersion - r.int(0, 5000)}&${query}&watch=true`,
          objectRef: { resource, apiVersion: 'v1' },
        },
        receivedUs: t,
        startedUs: t + r.int(300, 1_500),
        completedUs: t + seconds * 1e6 + r.int(0, 900),
      };
    }
    const pod = r.pick(this.#podsOf('coredns'));
    return this.#simple(t, this.#latency('list'), {
      user: this.#podUser(pod),
      sourceIPs: [pod.ip],
      userAgent: 'coredns/v1.11.1 (linux/amd64) kubernetes/$Format',
      verb: 'list',
      requestURI: '/apis/discovery.k8s.io/v1/endpointslices?limit=500&resourceVersion=0',
      objectRef: { resource: 'endpointslices', apiGroup: 'discovery.k8s.io', apiVersion: 'v1' },
      annotations: allow(rbacReason('system:coredns', 'system:coredns', 'ServiceAccount "coredns/kube-system"')),
    });
  }

  #alice(): Pick<MakeAuditEventOptions, 'user' | 'sourceIPs' | 'userAgent' | 'annotations'> {
    return {
      user: { username: 'alice@example.com', groups: ['platform-team', 'system:authenticated'] },
      sourceIPs: ['203.0.113.25'],
      userAgent: KUBECTL_UA,
      annotations: allow(rbacReason('platform-team-admin', 'cluster-admin', 'Group "platform-team"')),
    };
  }

  #kubectl(t: number): RequestPlan {
    const r = this.#rng;
    const base = { ...this.#alice(), level: 'RequestResponse' as const };
    const userCreated = this.#deployments.filter((d) => d.namespace === 'default' && d.name.startsWith('demo-'));
    const action =
      userCreated.length === 0 ? 'create' : userCreated.length > 3 ? 'delete' : r.weighted({ create: 2, scale: 3, apply: 3, delete: 1, list: 2 });
    if (action === 'create') {
      const d = this.#newDeployment('default', `demo-${r.suffix(5)}`, r.pick(APPS).image, t);
      return this.#simple(t, this.#latency('write'), {
        ...base,
        verb: 'create',
        requestURI: '/apis/apps/v1/namespaces/default/deployments?fieldManager=kubectl-create&fieldValidation=Strict',
        objectRef: { resource: 'deployments', namespace: 'default', name: d.name, apiGroup: 'apps', apiVersion: 'v1' },
        requestObject: deploymentObject(d, { forCreate: true }),
        responseObject: deploymentObject(d, { forCreate: false }),
      });
    }
    if (action === 'list') {
      const items = this.#deployments.filter((d) => d.namespace === 'default').map((d) => deploymentObject(d, { forCreate: false, inList: true }));
      return this.#simple(t, this.#latency('list'), {
        ...base,
        verb: 'list',
        requestURI: '/apis/apps/v1/namespaces/default/deployments?limit=500',
        objectRef: { resource: 'deployments', namespace: 'default', apiGroup: 'apps', apiVersion: 'v1' },
        responseObject: { kind: 'DeploymentList', apiVersion: 'apps/v1', metadata: { resourceVersion: String(this.#resourceVersion) }, items },
      });
    }
    const d = action === 'delete' ? (userCreated[0] as DeploymentModel) : r.pick(userCreated);
    const ref = { resource: 'deployments', namespace: d.namespace, name: d.name, apiGroup: 'apps', apiVersion: 'v1' };
    if (action === 'delete') {
      this.#deployments.splice(this.#deployments.indexOf(d), 1);
      return this.#simple(t, this.#latency('write'), {
        ...base,
        verb: 'delete',
        requestURI: `/apis/apps/v1/namespaces/${d.namespace}/deployments/${d.name}`,
        objectRef: ref,
        requestObject: { kind: 'DeleteOptions', apiVersion: 'meta.k8s.io/v1', propagationPolicy: 'Background' },
        responseObject: {
          kind: 'Status',
          apiVersion: 'v1',
          metadata: {},
          status: 'Success',
          details: { name: d.name, group: 'apps', kind: 'deployments', uid: d.uid },
        },
      });
    }
    d.generation++;
    d.resourceVersion = this.#nextRV();
    let requestObject: JsonObject;
    let fieldManager: string;
    if (action === 'scale') {
      d.replicas = r.int(1, 6);
      requestObject = { spec: { replicas: d.replicas } };
      fieldManager = 'kubectl-patch';
    } else {
      d.image = `${d.image.split(':')[0]}:${r.int(1, 9)}.${r.int(0, 30)}.${r.int(0, 9)}`;
      const applied = deploymentObject(d, { forCreate: true, minimal: true });
      requestObject = {
        metadata: { annotations: { 'kubectl.kubernetes.io/last-applied-configuration': `${goJsonStringify(applied)}\n` } },
        spec: { template: { spec: { '$setElementOrder/containers': [{ name: 'app' }], containers: [{ image: d.image, name: 'app' }] } } },
      };
      fieldManager = 'kubectl-client-side-apply';
    }
    return this.#simple(t, this.#latency('write'), {
      ...base,
      verb: 'patch',
      requestURI: `/apis/apps/v1/namespaces/${d.namespace}/deployments/${d.name}?fieldManager=${fieldManager}&fieldValidation=Strict`,
      objectRef: ref,
      requestObject,
      responseObject: deploymentObject(d, { forCreate: false }),
    });
  }

  #exec(t: number): RequestPlan {
    const r = this.#rng;
    const pod = r.pick(this.#pods);
    const command = r.pick(['%2Fbin%2Fsh', 'bash', 'env', 'cat&command=%2Fetc%2Fresolv.conf']);
    const tty = command === '%2Fbin%2Fsh' || command === 'bash';
    return {
      opts: {
        ...this.#alice(),
        auditID: r.uuid(),
        verb: 'create',
        requestURI: `/api/v1/namespaces/${pod.namespace}/pods/${pod.name}/exec?command=${command}&container=app&stdin=${tty}&stdout=true${tty ? '&tty=true' : '&stderr=true'}`,
        objectRef: { resource: 'pods', namespace: pod.namespace, name: pod.name, apiVersion: 'v1', subresource: 'exec' },
        code: 101,
      },
      receivedUs: t,
      startedUs: t + r.int(20_000, 80_000),
      completedUs: t + (tty ? r.int(20, 600) * 1e6 : r.int(150_000, 900_000)),
    };
  }

  #secret(t: number): RequestPlan {
    const r = this.#rng;
    const create = this.#secrets.length === 0 || r.chance(0.3);
    if (create) {
      const app = r.pick(APPS.filter((a) => a.namespace !== 'kube-system'));
      const data = fakeSecretData(r);
      const s = { namespace: app.namespace, name: `${app.app}-${r.pick(['db', 'api-key', 'tls', 'oauth'])}-${r.suffix(4)}`, uid: r.uuid(), createdUs: t, resourceVersion: this.#nextRV(), data };
      this.#secrets.push(s);
      return this.#simple(t, this.#latency('write'), {
        ...this.#alice(),
        level: 'RequestResponse',
        verb: 'create',
        requestURI: `/api/v1/namespaces/${s.namespace}/secrets?fieldManager=kubectl-create&fieldValidation=Strict`,
        objectRef: { resource: 'secrets', namespace: s.namespace, name: s.name, apiVersion: 'v1' },
        requestObject: { kind: 'Secret', apiVersion: 'v1', metadata: { name: s.name, namespace: s.namespace, creationTimestamp: null }, data, type: 'Opaque' },
        responseObject: secretObject(s, data, 'kubectl-create'),
      });
    }
    const s = r.pick(this.#secrets);
    // Most secret reads are an app's own service account at start-up.
    const pods = this.#pods.filter((p) => p.namespace === s.namespace);
    const byApp = pods.length > 0 && r.chance(0.7);
    const who = byApp
      ? (() => {
          const pod = r.pick(pods);
          return {
            user: this.#podUser(pod),
            sourceIPs: [pod.ip],
            userAgent: `${pod.app}/0.0.0 (linux/amd64) kubernetes/$Format`,
            annotations: allow(`RBAC: allowed by RoleBinding "${pod.app}-secrets/${pod.namespace}" of Role "secret-reader" to ServiceAccount "${pod.serviceAccount}/${pod.namespace}"`),
          };
        })()
      : this.#alice();
    return this.#simple(t, this.#latency('get'), {
      ...who,
      level: 'RequestResponse',
      verb: 'get',
      requestURI: `/api/v1/namespaces/${s.namespace}/secrets/${s.name}`,
      objectRef: { resource: 'secrets', namespace: s.namespace, name: s.name, apiVersion: 'v1' },
      responseObject: secretObject(s, s.data, 'kubectl-create'),
    });
  }

  #configmap(t: number): RequestPlan {
    const r = this.#rng;
    const app = r.pick(APPS.filter((a) => a.namespace !== 'kube-system'));
    const name = `${app.app}-config`;
    const key = `${app.namespace}/${name}`;
    const existing = this.#configMaps.get(key);
    const data: JsonObject = {
      'LOG_LEVEL': r.pick(['info', 'debug', 'warn']),
      'FEATURE_FLAGS': r.pick(['new-checkout,fast-path', 'fast-path', '']),
      'app.yaml': `server:\n  port: 8080\n  readTimeout: ${r.int(5, 60)}s\ncache:\n  ttl: ${r.int(1, 30)}m\n`,
    };
    const applied: JsonObject = { apiVersion: 'v1', data, kind: 'ConfigMap', metadata: { annotations: {}, name, namespace: app.namespace } };
    const lastApplied = `${goJsonStringify(applied)}\n`;
    const state = existing ?? { uid: r.uuid(), createdUs: t, applied: 0 };
    state.applied++;
    this.#configMaps.set(key, state);
    const rv = this.#nextRV();
    const responseObject: JsonObject = {
      kind: 'ConfigMap',
      apiVersion: 'v1',
      metadata: {
        name,
        namespace: app.namespace,
        uid: state.uid,
        resourceVersion: String(rv),
        creationTimestamp: formatTime(state.createdUs),
        annotations: { 'kubectl.kubernetes.io/last-applied-configuration': lastApplied },
        managedFields: [
          {
            manager: 'kubectl-client-side-apply',
            operation: 'Update',
            apiVersion: 'v1',
            time: formatTime(t),
            fieldsType: 'FieldsV1',
            fieldsV1: { 'f:data': { '.': {}, 'f:FEATURE_FLAGS': {}, 'f:LOG_LEVEL': {}, 'f:app.yaml': {} }, 'f:metadata': { 'f:annotations': { '.': {}, 'f:kubectl.kubernetes.io/last-applied-configuration': {} } } },
          },
        ],
      },
      data,
    };
    const common = {
      ...this.#alice(),
      level: 'RequestResponse' as const,
      objectRef: { resource: 'configmaps', namespace: app.namespace, name, apiVersion: 'v1' },
      responseObject,
    };
    if (existing === undefined) {
      return this.#simple(t, this.#latency('write'), {
        ...common,
        verb: 'create',
        requestURI: `/api/v1/namespaces/${app.namespace}/configmaps?fieldManager=kubectl-client-side-apply&fieldValidation=Strict`,
        requestObject: {
          kind: 'ConfigMap',
          apiVersion: 'v1',
          metadata: { name, namespace: app.namespace, creationTimestamp: null, annotations: { 'kubectl.kubernetes.io/last-applied-configuration': lastApplied } },
          data,
        },
      });
    }
    return this.#simple(t, this.#latency('write'), {
      ...common,
      verb: 'patch',
      requestURI: `/api/v1/namespaces/${app.namespace}/configmaps/${name}?fieldManager=kubectl-client-side-apply&fieldValidation=Strict`,
      requestObject: { data, metadata: { annotations: { 'kubectl.kubernetes.io/last-applied-configuration': lastApplied } } },
    });
  }

  #tokenreview(t: number): RequestPlan {
    const r = this.#rng;
    const pod = r.pick(this.#podsOf('metrics-server'));
    return this.#simple(t, this.#latency('write'), {
      user: this.#podUser(pod),
      sourceIPs: [pod.ip],
      userAgent: 'metrics-server/v0.7.1 (linux/amd64) kubernetes/$Format',
      verb: 'create',
      requestURI: '/apis/authentication.k8s.io/v1/tokenreviews',
      objectRef: { resource: 'tokenreviews', apiGroup: 'authentication.k8s.io', apiVersion: 'v1' },
      annotations: allow(rbacReason('metrics-server:system:auth-delegator', 'system:auth-delegator', 'ServiceAccount "metrics-server/kube-system"')),
    });
  }

  #event(t: number): RequestPlan {
    const r = this.#rng;
    const pod = r.pick(this.#pods);
    if (r.chance(0.25)) {
      // The scheduler reports through events.k8s.io/v1.
      const name = `${pod.name}.${r.hex(16)}`;
      return this.#simple(t, this.#latency('write'), {
        level: 'Request',
        user: this.#schedulerUser,
        sourceIPs: [CONTROL_PLANE_IP],
        userAgent: `kube-scheduler/${K8S_VERSION} (linux/amd64) kubernetes/${K8S_COMMIT}/scheduler`,
        verb: 'create',
        requestURI: `/apis/events.k8s.io/v1/namespaces/${pod.namespace}/events`,
        objectRef: { resource: 'events', namespace: pod.namespace, name, apiGroup: 'events.k8s.io', apiVersion: 'v1' },
        annotations: allow(rbacReason('system:kube-scheduler', 'system:kube-scheduler', 'User "system:kube-scheduler"')),
        requestObject: {
          kind: 'Event',
          apiVersion: 'events.k8s.io/v1',
          metadata: { name, namespace: pod.namespace, creationTimestamp: null },
          eventTime: formatMicroTime(t - r.int(100, 5000)),
          reportingController: 'default-scheduler',
          reportingInstance: 'default-scheduler-control-plane-1',
          action: 'Binding',
          reason: 'Scheduled',
          regarding: { kind: 'Pod', namespace: pod.namespace, name: pod.name, uid: pod.uid, apiVersion: 'v1', resourceVersion: String(pod.resourceVersion) },
          note: `Successfully assigned ${pod.namespace}/${pod.name} to ${pod.node.name}`,
          type: 'Normal',
          deprecatedSource: {},
          deprecatedFirstTimestamp: null,
          deprecatedLastTimestamp: null,
        },
      });
    }
    const [reason, message] = r.pick([
      ['Pulled', `Container image "${pod.image}" already present on machine`],
      ['Created', 'Created container app'],
      ['Started', 'Started container app'],
      ['Killing', 'Stopping container app'],
      ['Unhealthy', 'Readiness probe failed: HTTP probe failed with statuscode: 503'],
    ] as const);
    const name = `${pod.name}.${r.hex(16)}`;
    const ts = formatTime(t);
    return this.#simple(t, this.#latency('write'), {
      level: 'Request',
      user: pod.node.user,
      sourceIPs: [pod.node.ip],
      userAgent: this.#kubeletUA(),
      verb: 'create',
      requestURI: `/api/v1/namespaces/${pod.namespace}/events`,
      objectRef: { resource: 'events', namespace: pod.namespace, name, apiVersion: 'v1' },
      annotations: allow(''),
      requestObject: {
        kind: 'Event',
        apiVersion: 'v1',
        metadata: { name, namespace: pod.namespace, creationTimestamp: null },
        involvedObject: { kind: 'Pod', namespace: pod.namespace, name: pod.name, uid: pod.uid, apiVersion: 'v1', resourceVersion: String(pod.resourceVersion), fieldPath: 'spec.containers{app}' },
        reason,
        message,
        source: { component: 'kubelet', host: pod.node.name },
        firstTimestamp: ts,
        lastTimestamp: ts,
        count: 1,
        type: reason === 'Unhealthy' ? 'Warning' : 'Normal',
        eventTime: null,
        reportingComponent: 'kubelet',
        reportingInstance: pod.node.name,
      },
    });
  }

  /** `kubectl get pods -A -o json` at RequestResponse: the ~1 MB lines a tailer must survive. */
  #bigList(t: number): RequestPlan {
    const r = this.#rng;
    const items: JsonObject[] = [];
    let bytes = 0;
    const budget = this.#maxLineBytes - 4096;
    for (let i = 0; i < this.#bigListPods; i++) {
      const template = this.#pods[i % this.#pods.length] as PodModel;
      const pod: PodModel =
        i < this.#pods.length ? template : { ...template, name: `${template.rsName}-${r.suffix(5)}`, uid: r.uuid(), node: r.pick(this.#nodes), ip: `10.244.${r.int(1, this.#nodes.length)}.${r.int(2, 250)}` };
      const item = podObject(pod, { typeMeta: false, forCreate: false });
      const size = goJsonStringify(item).length + 1;
      if (bytes + size > budget) break;
      bytes += size;
      items.push(item);
    }
    return this.#simple(t, this.#latency('big'), {
      ...this.#alice(),
      level: 'RequestResponse',
      verb: 'list',
      requestURI: '/api/v1/pods?limit=500',
      objectRef: { resource: 'pods', apiVersion: 'v1' },
      responseObject: { kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: String(this.#resourceVersion) }, items },
    });
  }

  #error(t: number): RequestPlan {
    const r = this.#rng;
    const kind = r.weighted({ forbidden: 3, notFound: 2, conflict: 1 });
    if (kind === 'forbidden') {
      const name = r.pick(['bootstrap-token-abcdef', 'sh.helm.release.v1.ingress.v3', 'cloud-credentials']);
      return this.#simple(t, this.#latency('get'), {
        user: { username: 'bob@example.com', groups: ['developers', 'system:authenticated'] },
        sourceIPs: ['198.51.100.7'],
        userAgent: KUBECTL_UA,
        verb: 'get',
        requestURI: `/api/v1/namespaces/kube-system/secrets/${name}`,
        objectRef: { resource: 'secrets', namespace: 'kube-system', name, apiVersion: 'v1' },
        responseStatus: failureStatus(
          403,
          'Forbidden',
          `secrets "${name}" is forbidden: User "bob@example.com" cannot get resource "secrets" in API group "" in the namespace "kube-system"`,
          { name, kind: 'secrets' },
        ),
        annotations: { 'authorization.k8s.io/decision': 'forbid', 'authorization.k8s.io/reason': '' },
      });
    }
    if (kind === 'notFound') {
      const name = `demo-${r.suffix(5)}`;
      return this.#simple(t, this.#latency('get'), {
        ...this.#alice(),
        verb: 'get',
        requestURI: `/apis/apps/v1/namespaces/default/deployments/${name}`,
        objectRef: { resource: 'deployments', namespace: 'default', name, apiGroup: 'apps', apiVersion: 'v1' },
        responseStatus: failureStatus(404, 'NotFound', `deployments.apps "${name}" not found`, { name, group: 'apps', kind: 'deployments' }),
      });
    }
    const app = r.pick(APPS);
    return this.#simple(t, this.#latency('write'), {
      ...this.#alice(),
      verb: 'create',
      requestURI: `/apis/apps/v1/namespaces/${app.namespace}/deployments?fieldManager=kubectl-create&fieldValidation=Strict`,
      objectRef: { resource: 'deployments', namespace: app.namespace, name: app.app, apiGroup: 'apps', apiVersion: 'v1' },
      responseStatus: failureStatus(409, 'AlreadyExists', `deployments.apps "${app.app}" already exists`, { name: app.app, group: 'apps', kind: 'deployments' }),
    });
  }

  #panic(t: number): RequestPlan {
    const plan = this.#kubelet(t);
    if (plan.startedUs !== undefined) return plan;
    return { ...plan, panic: true };
  }
}

function b64(s: string): string {
  return Buffer.from(s).toString('base64');
}

/** Obviously fake credentials, base64-encoded as in a real Secret. */
function fakeSecretData(r: SeededRandom): JsonObject {
  return {
    password: b64(`fake-password-${r.hex(12)}`),
    username: b64(r.pick(['app', 'admin', 'svc-checkout', 'readonly'])),
    'api-key': b64(`FAKE-KEY-${r.hex(24).toUpperCase()}`),
  };
}

function secretObject(s: { namespace: string; name: string; uid: string; createdUs: number; resourceVersion: number }, data: JsonObject, manager: string): JsonObject {
  return {
    kind: 'Secret',
    apiVersion: 'v1',
    metadata: {
      name: s.name,
      namespace: s.namespace,
      uid: s.uid,
      resourceVersion: String(s.resourceVersion),
      creationTimestamp: formatTime(s.createdUs),
      managedFields: [
        {
          manager,
          operation: 'Update',
          apiVersion: 'v1',
          time: formatTime(s.createdUs),
          fieldsType: 'FieldsV1',
          fieldsV1: { 'f:data': { '.': {}, 'f:api-key': {}, 'f:password': {}, 'f:username': {} }, 'f:type': {} },
        },
      ],
    },
    data: sortedRecord(data),
    type: 'Opaque',
  };
}

function containerSpec(image: string, withRuntimeFields: boolean, saVolume: string): JsonObject {
  const c: JsonObject = {
    name: 'app',
    image,
    ports: [
      { name: 'http', containerPort: 8080, protocol: 'TCP' },
      { name: 'metrics', containerPort: 9090, protocol: 'TCP' },
    ],
    env: [
      { name: 'POD_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } },
      { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } } },
      { name: 'GOMAXPROCS', valueFrom: { resourceFieldRef: { resource: 'limits.cpu', divisor: '1' } } },
    ],
    resources: { limits: { cpu: '1', memory: '512Mi' }, requests: { cpu: '100m', memory: '128Mi' } },
    livenessProbe: { httpGet: { path: '/healthz', port: 'http', scheme: 'HTTP' }, initialDelaySeconds: 10, timeoutSeconds: 1, periodSeconds: 10, successThreshold: 1, failureThreshold: 3 },
    readinessProbe: { httpGet: { path: '/ready', port: 'http', scheme: 'HTTP' }, timeoutSeconds: 1, periodSeconds: 5, successThreshold: 1, failureThreshold: 3 },
  };
  if (withRuntimeFields) {
    c.volumeMounts = [{ name: saVolume, readOnly: true, mountPath: '/var/run/secrets/kubernetes.io/serviceaccount' }];
  }
  c.terminationMessagePath = '/dev/termination-log';
  c.terminationMessagePolicy = 'File';
  c.imagePullPolicy = 'IfNotPresent';
  c.securityContext = { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, capabilities: { drop: ['ALL'] } };
  return c;
}

function podObject(p: PodModel, opts: { typeMeta: boolean; forCreate: boolean }): JsonObject {
  const created = formatTime(p.createdUs);
  const saVolume = `kube-api-access-${p.uid.slice(0, 5).replace(/[^a-z0-9]/g, 'x')}`;
  const labels = sortedRecord({ app: p.app, 'pod-template-hash': p.hash });
  const ownerReferences = [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: p.rsName, uid: p.rsUid, controller: true, blockOwnerDeletion: true }];
  const spec: JsonObject = {
    volumes: [
      {
        name: saVolume,
        projected: {
          sources: [
            { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
            { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
            { downwardAPI: { items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }] } },
          ],
          defaultMode: 420,
        },
      },
    ],
    containers: [containerSpec(p.image, true, saVolume)],
    restartPolicy: 'Always',
    terminationGracePeriodSeconds: 30,
    dnsPolicy: 'ClusterFirst',
    serviceAccountName: p.serviceAccount,
    serviceAccount: p.serviceAccount,
    securityContext: { fsGroup: 65532, seccompProfile: { type: 'RuntimeDefault' } },
    schedulerName: 'default-scheduler',
    tolerations: [
      { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
      { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
    ],
    priority: 0,
    enableServiceLinks: true,
    preemptionPolicy: 'PreemptLowerPriority',
  };
  if (!opts.forCreate) spec.nodeName = p.node.name;
  const metadata: JsonObject = opts.forCreate
    ? { generateName: `${p.rsName}-`, namespace: p.namespace, creationTimestamp: null, labels, ownerReferences }
    : {
        name: p.name,
        generateName: `${p.rsName}-`,
        namespace: p.namespace,
        uid: p.uid,
        resourceVersion: String(p.resourceVersion),
        creationTimestamp: created,
        labels,
        ownerReferences,
        managedFields: [
          {
            manager: 'kube-controller-manager',
            operation: 'Update',
            apiVersion: 'v1',
            time: created,
            fieldsType: 'FieldsV1',
            fieldsV1: {
              'f:metadata': {
                'f:generateName': {},
                'f:labels': { '.': {}, 'f:app': {}, 'f:pod-template-hash': {} },
                'f:ownerReferences': { '.': {}, [`k:{"uid":"${p.rsUid}"}`]: {} },
              },
              'f:spec': {
                'f:containers': {
                  'k:{"name":"app"}': {
                    '.': {},
                    'f:env': { '.': {}, 'k:{"name":"GOMAXPROCS"}': {}, 'k:{"name":"POD_NAME"}': {}, 'k:{"name":"POD_NAMESPACE"}': {} },
                    'f:image': {},
                    'f:imagePullPolicy': {},
                    'f:livenessProbe': {},
                    'f:name': {},
                    'f:ports': { '.': {}, 'k:{"containerPort":8080,"protocol":"TCP"}': {}, 'k:{"containerPort":9090,"protocol":"TCP"}': {} },
                    'f:readinessProbe': {},
                    'f:resources': {},
                    'f:securityContext': {},
                  },
                },
                'f:dnsPolicy': {},
                'f:restartPolicy': {},
                'f:schedulerName': {},
                'f:securityContext': {},
                'f:serviceAccountName': {},
              },
            },
          },
          {
            manager: 'kubelet',
            operation: 'Update',
            apiVersion: 'v1',
            time: created,
            fieldsType: 'FieldsV1',
            fieldsV1: {
              'f:status': {
                'f:conditions': { 'k:{"type":"ContainersReady"}': {}, 'k:{"type":"Initialized"}': {}, 'k:{"type":"PodReadyToStartContainers"}': {}, 'k:{"type":"Ready"}': {} },
                'f:containerStatuses': {},
                'f:hostIP': {},
                'f:hostIPs': {},
                'f:phase': {},
                'f:podIP': {},
                'f:podIPs': { '.': {}, [`k:{"ip":"${p.ip}"}`]: {} },
                'f:startTime': {},
              },
            },
            subresource: 'status',
          },
        ],
      };
  const obj: JsonObject = opts.typeMeta ? { kind: 'Pod', apiVersion: 'v1', metadata } : { metadata };
  obj.spec = spec;
  if (opts.forCreate) {
    obj.status = {};
    return obj;
  }
  const started = formatTime(p.createdUs + 2e6);
  const ready = formatTime(p.createdUs + 9e6);
  obj.status = {
    phase: 'Running',
    conditions: [
      { type: 'PodReadyToStartContainers', status: 'True', lastProbeTime: null, lastTransitionTime: started },
      { type: 'Initialized', status: 'True', lastProbeTime: null, lastTransitionTime: created },
      { type: 'Ready', status: 'True', lastProbeTime: null, lastTransitionTime: ready },
      { type: 'ContainersReady', status: 'True', lastProbeTime: null, lastTransitionTime: ready },
      { type: 'PodScheduled', status: 'True', lastProbeTime: null, lastTransitionTime: created },
    ],
    hostIP: p.node.ip,
    hostIPs: [{ ip: p.node.ip }],
    podIP: p.ip,
    podIPs: [{ ip: p.ip }],
    startTime: created,
    containerStatuses: [
      {
        name: 'app',
        state: { running: { startedAt: started } },
        lastState: {},
        ready: true,
        restartCount: 0,
        image: p.image,
        imageID: `${p.image.split(':')[0]}@sha256:${p.rsUid.replaceAll('-', '')}${p.rsUid.replaceAll('-', '').slice(0, 32)}`,
        containerID: `containerd://${p.uid.replaceAll('-', '')}${p.uid.replaceAll('-', '')}`,
        started: true,
      },
    ],
    qosClass: 'Burstable',
  };
  return obj;
}

function deploymentObject(d: DeploymentModel, opts: { forCreate: boolean; inList?: boolean; minimal?: boolean }): JsonObject {
  const labels = { app: d.name };
  const template: JsonObject = {
    metadata: opts.minimal ? { labels } : { creationTimestamp: null, labels },
    spec: opts.minimal
      ? { containers: [{ image: d.image, name: 'app' }] }
      : {
          containers: [
            {
              name: 'app',
              image: d.image,
              resources: {},
              terminationMessagePath: '/dev/termination-log',
              terminationMessagePolicy: 'File',
              imagePullPolicy: 'IfNotPresent',
            },
          ],
          restartPolicy: 'Always',
          terminationGracePeriodSeconds: 30,
          dnsPolicy: 'ClusterFirst',
          securityContext: {},
          schedulerName: 'default-scheduler',
        },
  };
  if (opts.minimal) {
    return { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { annotations: {}, labels, name: d.name, namespace: d.namespace }, spec: { replicas: d.replicas, selector: { matchLabels: labels }, template } };
  }
  const typeMeta: JsonObject = opts.inList ? {} : { kind: 'Deployment', apiVersion: 'apps/v1' };
  if (opts.forCreate) {
    return {
      ...typeMeta,
      metadata: { name: d.name, namespace: d.namespace, creationTimestamp: null, labels },
      spec: { replicas: d.replicas, selector: { matchLabels: labels }, template, strategy: {} },
      status: {},
    };
  }
  return {
    ...typeMeta,
    metadata: {
      name: d.name,
      namespace: d.namespace,
      uid: d.uid,
      resourceVersion: String(d.resourceVersion),
      generation: d.generation,
      creationTimestamp: formatTime(d.createdUs),
      labels,
      annotations: { 'deployment.kubernetes.io/revision': String(d.generation) },
      managedFields: [
        {
          manager: 'kubectl-create',
          operation: 'Update',
          apiVersion: 'apps/v1',
          time: formatTime(d.createdUs),
          fieldsType: 'FieldsV1',
          fieldsV1: { 'f:metadata': { 'f:labels': { '.': {}, 'f:app': {} } }, 'f:spec': { 'f:replicas': {}, 'f:selector': {}, 'f:template': {} } },
        },
      ],
    },
    spec: {
      replicas: d.replicas,
      selector: { matchLabels: labels },
      template,
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '25%', maxSurge: '25%' } },
      revisionHistoryLimit: 10,
      progressDeadlineSeconds: 600,
    },
    status: {},
  };
}

// ---------------------------------------------------------------------------------------------
// Streams

/** Binary min-heap on (atUs, seq): stages leave in time order, ties in scheduling order. */
class StageQueue<T> {
  #items: { atUs: number; seq: number; value: T }[] = [];
  #seq = 0;

  get size(): number {
    return this.#items.length;
  }

  peekTime(): number {
    return this.#items[0]?.atUs ?? Number.POSITIVE_INFINITY;
  }

  push(atUs: number, value: T): void {
    const items = this.#items;
    items.push({ atUs, seq: this.#seq++, value });
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#less(i, parent)) break;
      this.#swap(i, parent);
      i = parent;
    }
  }

  pop(): T | undefined {
    const items = this.#items;
    const top = items[0];
    if (top === undefined) return undefined;
    const last = items.pop() as { atUs: number; seq: number; value: T };
    if (items.length > 0) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < items.length && this.#less(l, m)) m = l;
        if (r < items.length && this.#less(r, m)) m = r;
        if (m === i) break;
        this.#swap(i, m);
        i = m;
      }
    }
    return top.value;
  }

  #less(a: number, b: number): boolean {
    const x = this.#items[a] as { atUs: number; seq: number };
    const y = this.#items[b] as { atUs: number; seq: number };
    return x.atUs < y.atUs || (x.atUs === y.atUs && x.seq < y.seq);
  }

  #swap(a: number, b: number): void {
    const items = this.#items;
    [items[a], items[b]] = [items[b] as (typeof items)[number], items[a] as (typeof items)[number]];
  }
}

function stagesOf(plan: RequestPlan): { stage: AuditStage; atUs: number }[] {
  const stages: { stage: AuditStage; atUs: number }[] = [{ stage: 'RequestReceived', atUs: plan.receivedUs }];
  if (plan.startedUs !== undefined) stages.push({ stage: 'ResponseStarted', atUs: plan.startedUs });
  stages.push({ stage: plan.panic ? 'Panic' : 'ResponseComplete', atUs: plan.completedUs });
  return stages;
}

function eventFor(plan: RequestPlan, stage: AuditStage, atUs: number): AuditEvent {
  return makeAuditEvent({
    ...plan.opts,
    stage,
    requestReceivedTimestamp: formatMicroTime(plan.receivedUs),
    stageTimestamp: formatMicroTime(atUs),
  });
}

interface Emitted {
  event: AuditEvent;
  line: string | undefined;
}

function* simulate(opts: AuditStreamOptions, withLines: boolean): Generator<Emitted> {
  const rng = new SeededRandom(opts.seed ?? 1);
  const startMs = opts.startTime === undefined ? Date.UTC(2024, 4, 1, 10) : new Date(opts.startTime).getTime();
  if (!Number.isFinite(startMs)) throw new RangeError(`invalid startTime: ${String(opts.startTime)}`);
  const count = opts.approxBytes === undefined ? (opts.count ?? 1000) : opts.count;
  if (count !== undefined && (count === 1 || count < 0 || !Number.isInteger(count))) {
    throw new RangeError(`count must be 0 or an integer ≥ 2 (every request has ≥ 2 stages), got ${count}`);
  }
  const meanGapUs = 1e6 / (opts.requestsPerSecond ?? 50);
  const sim = new ClusterSim(rng, {
    nodes: opts.nodes ?? 5,
    startUs: startMs * 1000,
    mix: { ...DEFAULT_AUDIT_MIX, ...opts.mix },
    bigListPods: opts.bigListPods ?? 200,
    maxLineBytes: opts.maxLineBytes ?? Number.POSITIVE_INFINITY,
  });
  const queue = new StageQueue<Emitted>();
  let emittedEvents = 0;
  let accountedBytes = 0;
  let t = startMs * 1000;

  const more = (): boolean => {
    if (count !== undefined && emittedEvents + queue.size >= count) return false;
    if (opts.approxBytes !== undefined && accountedBytes >= opts.approxBytes) return false;
    return true;
  };

  while (more()) {
    t += Math.max(1, Math.floor(-Math.log(1 - rng.next()) * meanGapUs));
    while (queue.peekTime() <= t) {
      emittedEvents++;
      yield queue.pop() as Emitted;
    }
    const remaining = count === undefined ? Number.POSITIVE_INFINITY : count - emittedEvents - queue.size;
    const plan = sim.plan(t, remaining);
    for (const { stage, atUs } of stagesOf(plan)) {
      const event = eventFor(plan, stage, atUs);
      const line = withLines || opts.approxBytes !== undefined ? goJsonStringify(event) : undefined;
      if (line !== undefined) accountedBytes += Buffer.byteLength(line) + 1;
      queue.push(atUs, { event, line });
    }
  }
  while (queue.size > 0) {
    emittedEvents++;
    yield queue.pop() as Emitted;
  }
}

/**
 * A deterministic, realistic sequence of audit events (lazy). With `count` it yields exactly
 * that many; with `approxBytes` it stops once the serialized lines reach that size.
 */
export function* auditStream(opts: AuditStreamOptions = {}): Generator<AuditEvent> {
  for (const { event } of simulate(opts, false)) yield event;
}

/** Like auditStream, as log lines (no trailing newline) — for benchmarks and file writers. */
export function* auditLines(opts: AuditStreamOptions = {}): Generator<string> {
  for (const { event, line } of simulate(opts, true)) yield line ?? goJsonStringify(event);
}
