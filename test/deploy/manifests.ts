import fs from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';

/** Loading the Kubernetes manifests under manifests/ for the deploy tests. */

export const REPO = path.join(import.meta.dirname, '../..');
export const MANIFESTS = path.join(REPO, 'manifests');

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

export interface LoadedObject {
  /** Path relative to the repository, e.g. manifests/namespace.yaml. */
  file: string;
  obj: K8sObject;
}

/** Every YAML file below `dir`, relative to the repository, sorted. */
export function yamlFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.ya?ml$/.test(e.name)) out.push(path.relative(REPO, p));
    }
  };
  walk(dir);
  return out.sort();
}

/** Parses a multi-document YAML file; a syntax error or an empty document fails loudly. */
export function loadFile(file: string): LoadedObject[] {
  const text = fs.readFileSync(path.join(REPO, file), 'utf8');
  const docs = parseAllDocuments(text, { uniqueKeys: true });
  if (!Array.isArray(docs)) throw new Error(`${file}: not a YAML stream`);
  const out: LoadedObject[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const obj = doc.toJS() as K8sObject | null;
    if (obj === null) continue;
    out.push({ file, obj });
  }
  return out;
}

/** Kubernetes objects (not kustomize files) below manifests/. */
export function loadObjects(): LoadedObject[] {
  return yamlFiles(MANIFESTS)
    .filter((f) => path.basename(f) !== 'kustomization.yaml')
    .flatMap((f) => loadFile(f));
}

export function find<T = K8sObject>(objects: LoadedObject[], kind: string, name: string): T {
  const hit = objects.filter((o) => o.obj.kind === kind && o.obj.metadata.name === name);
  if (hit.length !== 1) throw new Error(`expected exactly one ${kind}/${name}, found ${hit.length}`);
  return hit[0]!.obj as T;
}

// Just the fields the invariant tests read; validation against the full
// schemas is done by kubernetes-models.
export interface Probe {
  httpGet?: { path?: string; port: string | number };
  periodSeconds?: number;
  failureThreshold?: number;
}
export interface Container {
  name: string;
  image: string;
  args?: string[];
  env?: Array<{ name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string }; secretKeyRef?: unknown } }>;
  ports?: Array<{ name?: string; containerPort: number }>;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  securityContext?: Record<string, unknown> & { capabilities?: { add?: string[]; drop?: string[] } };
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean; subPath?: string }>;
}
export interface Volume {
  name: string;
  hostPath?: { path: string; type?: string };
  configMap?: { name: string };
  secret?: { secretName: string; defaultMode?: number; optional?: boolean };
  emptyDir?: { medium?: string; sizeLimit?: string };
  persistentVolumeClaim?: { claimName: string };
}
export interface PodSpec {
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  priorityClassName?: string;
  terminationGracePeriodSeconds?: number;
  hostNetwork?: boolean;
  hostPID?: boolean;
  hostIPC?: boolean;
  nodeSelector?: Record<string, string>;
  affinity?: {
    nodeAffinity?: {
      requiredDuringSchedulingIgnoredDuringExecution?: {
        nodeSelectorTerms: Array<{ matchExpressions?: Array<{ key: string; operator: string; values?: string[] }> }>;
      };
    };
  };
  tolerations?: Array<{ key?: string; operator?: string; value?: string; effect?: string }>;
  securityContext?: Record<string, unknown> & { seccompProfile?: { type: string } };
  containers: Container[];
  initContainers?: Container[];
  volumes?: Volume[];
}
export interface Workload extends K8sObject {
  spec: {
    replicas?: number;
    selector: { matchLabels: Record<string, string> };
    strategy?: { type: string; rollingUpdate?: Record<string, unknown> };
    updateStrategy?: { type: string; rollingUpdate?: { maxUnavailable?: number | string; maxSurge?: number | string } };
    template: { metadata: { labels: Record<string, string>; annotations?: Record<string, string> }; spec: PodSpec };
  };
}
export interface PolicyRule {
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  verbs: string[];
  nonResourceURLs?: string[];
}
