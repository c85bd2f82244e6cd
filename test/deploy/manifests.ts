import fs from 'node:fs';
import path from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';

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
  // YAML 1.1, as the Kubernetes tools read manifests (sigs.k8s.io/yaml): `defaultMode: 0440` is octal.
  const docs = parseAllDocuments(text, { uniqueKeys: true, version: '1.1' });
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

export interface Kustomization {
  apiVersion: string;
  kind: 'Kustomization' | 'Component';
  resources?: string[];
  components?: string[];
  patches?: Array<{ path?: string; patch?: string; target?: unknown }>;
  images?: Array<{ name: string; newName?: string; newTag?: string }>;
}

/** Every kustomization.yaml below manifests/, relative to the repository. */
export function kustomizationFiles(): string[] {
  return yamlFiles(MANIFESTS).filter((f) => path.basename(f) === 'kustomization.yaml');
}

export function loadKustomization(dir: string): Kustomization {
  return parseYaml(fs.readFileSync(path.join(REPO, dir, 'kustomization.yaml'), 'utf8')) as Kustomization;
}

/** Files that a kustomization names as (strategic merge) patches: partial objects, not resources. */
export function patchFiles(): Set<string> {
  const out = new Set<string>();
  for (const k of kustomizationFiles()) {
    const dir = path.dirname(k);
    for (const p of loadKustomization(dir).patches ?? []) if (p.path) out.add(path.join(dir, p.path));
  }
  return out;
}

/** Kubernetes objects (not kustomize files, not patches) below manifests/. */
export function loadObjects(): LoadedObject[] {
  const patches = patchFiles();
  return yamlFiles(MANIFESTS)
    .filter((f) => path.basename(f) !== 'kustomization.yaml' && !patches.has(f))
    .flatMap((f) => loadFile(f));
}

/**
 * Strategic merge patch as kustomize applies it, for the shapes used in
 * manifests/: maps merge key by key, `null` deletes a key, lists of objects
 * with a `name` merge element by element on it (`$patch: delete` removes
 * one), other lists are replaced.
 */
export function strategicMerge(target: unknown, patch: unknown): unknown {
  if (Array.isArray(patch)) {
    const named = (l: unknown[]) => l.every((e) => e !== null && typeof e === 'object' && typeof (e as { name?: unknown }).name === 'string');
    if (!Array.isArray(target) || !named(target) || !named(patch)) return structuredClone(patch);
    const out = structuredClone(target) as Array<Record<string, unknown>>;
    for (const p of patch as Array<Record<string, unknown>>) {
      const i = out.findIndex((e) => e.name === p.name);
      if (p.$patch === 'delete') {
        if (i >= 0) out.splice(i, 1);
      } else if (i >= 0) out[i] = strategicMerge(out[i], p) as Record<string, unknown>;
      else out.push(strategicMerge({}, p) as Record<string, unknown>);
    }
    return out;
  }
  if (patch === null || typeof patch !== 'object') return patch;
  const out: Record<string, unknown> = target !== null && typeof target === 'object' && !Array.isArray(target) ? structuredClone(target as Record<string, unknown>) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = strategicMerge(out[k], v);
  }
  return out;
}

/**
 * What `kubectl kustomize DIR` renders, for the features manifests/ uses:
 * resources (files and directories), components, strategic merge patches
 * from files. `extraComponents` are applied as if the kustomization listed
 * them (an overlay that adds a component). Without kubectl in CI, this is
 * how the tests see the combined result.
 */
export function build(dir: string, extraComponents: string[] = []): LoadedObject[] {
  const k = loadKustomization(dir);
  const out: LoadedObject[] = [];
  for (const r of k.resources ?? []) {
    const rel = path.join(dir, r);
    if (fs.statSync(path.join(REPO, rel)).isDirectory()) out.push(...build(rel));
    else out.push(...loadFile(rel));
  }
  for (const c of [...(k.components ?? []).map((c) => path.join(dir, c)), ...extraComponents]) {
    const comp = loadKustomization(c);
    if (comp.kind !== 'Component') throw new Error(`${c} is not a kustomize Component`);
    for (const r of comp.resources ?? []) out.push(...loadFile(path.join(c, r)));
    applyPatches(out, c, comp);
  }
  applyPatches(out, dir, k);
  return out;
}

function applyPatches(objects: LoadedObject[], dir: string, k: Kustomization): void {
  for (const p of k.patches ?? []) {
    if (!p.path || p.target !== undefined) throw new Error(`${dir}: only strategic merge patches from files are supported here`);
    for (const { obj: patch } of loadFile(path.join(dir, p.path))) {
      const hit = objects.filter(
        ({ obj }) => obj.kind === patch.kind && obj.metadata.name === patch.metadata.name && (patch.metadata.namespace === undefined || obj.metadata.namespace === patch.metadata.namespace),
      );
      if (hit.length !== 1) throw new Error(`${dir}/${p.path}: patch target ${patch.kind}/${patch.metadata.name} found ${hit.length} times`);
      hit[0]!.obj = strategicMerge(hit[0]!.obj, patch) as K8sObject;
    }
  }
}

export function find<T = K8sObject>(objects: LoadedObject[], kind: string, name: string, namespace?: string): T {
  const hit = objects.filter((o) => o.obj.kind === kind && o.obj.metadata.name === name && (namespace === undefined || o.obj.metadata.namespace === namespace));
  if (hit.length !== 1) throw new Error(`expected exactly one ${kind}/${name}${namespace ? ` in ${namespace}` : ''}, found ${hit.length}`);
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
    podAntiAffinity?: {
      preferredDuringSchedulingIgnoredDuringExecution?: Array<{
        weight: number;
        podAffinityTerm: { topologyKey: string; labelSelector?: { matchLabels?: Record<string, string> } };
      }>;
      requiredDuringSchedulingIgnoredDuringExecution?: unknown[];
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
