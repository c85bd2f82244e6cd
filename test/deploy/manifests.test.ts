import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { serviceSchema } from '../../src/config/schema.ts';
import { loadConfigText } from '../../src/config/load.ts';
import { allMetrics } from '../../src/config/reference.ts';
import { unknownFields } from './k8s-fields.ts';
import { podSecurityViolations } from './pod-security.ts';
import {
  build,
  find,
  kustomizationFiles,
  loadFile,
  loadKustomization,
  loadObjects,
  MANIFESTS,
  REPO,
  type Container,
  type K8sObject,
  type LoadedObject,
  type PodSpec,
  type PolicyRule,
  type Workload,
} from './manifests.ts';

/**
 * The Kubernetes manifests: every object is valid against the Kubernetes
 * schemas (kubernetes-models) with no unknown field, and the deployment
 * invariants docs/deploy.md and docs/security.md promise hold — each one
 * fails here if a manifest edit breaks it.
 */

/** The audit agent's namespace (Pod Security privileged, for its hostPath mounts), the events collector's and the webhook receiver's (restricted). */
const NAMESPACE = 'ktrail';
const EVENTS_NAMESPACE = 'ktrail-events';
const WEBHOOK_NAMESPACE = 'ktrail-webhook';
/** Where an object belongs: by its component label; the shared ones (monitoring) live with the audit agent. */
const namespaceOf = (obj: K8sObject) =>
  ({ 'events-collector': EVENTS_NAMESPACE, 'audit-webhook': WEBHOOK_NAMESPACE })[obj.metadata.labels?.['app.kubernetes.io/component'] ?? ''] ?? NAMESPACE;
const objects = loadObjects();
const daemonSet = find<Workload>(objects, 'DaemonSet', 'ktrail-audit-agent');
const deployment = find<Workload>(objects, 'Deployment', 'ktrail-events-collector');
/** manifests/audit-webhook/: the audit_webhook receiver, a kustomization of its own. */
const webhook = find<Workload>(objects, 'Deployment', 'ktrail-webhook');
const workloads = [daemonSet, deployment, webhook];
const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string };

/** Kinds the Prometheus Operator defines: not in kubernetes-models, checked by hand below. */
const OPERATOR_KINDS = new Set(['ServiceMonitor', 'PrometheusRule']);
const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'PriorityClass']);

function mainContainer(w: Workload): Container {
  expect(w.spec.template.spec.containers).toHaveLength(1);
  return w.spec.template.spec.containers[0]!;
}

function embeddedConfig(cmName: string): { text: string; doc: Record<string, unknown> } {
  const cm = find<K8sObject & { data: Record<string, string> }>(objects, 'ConfigMap', cmName);
  const text = cm.data['ktrail.yaml']!;
  expect(typeof text).toBe('string');
  return { text, doc: parseYaml(text) as Record<string, unknown> };
}

function allStrings(value: unknown, out: string[] = []): string[] {
  if (typeof value === 'string') out.push(value);
  else if (Array.isArray(value)) value.forEach((v) => allStrings(v, out));
  else if (value && typeof value === 'object') Object.values(value).forEach((v) => allStrings(v, out));
  return out;
}

describe('manifests: files and kustomizations', () => {
  it('parses every manifest file (multi-document YAML) into objects with apiVersion, kind and name', () => {
    expect(objects.length).toBeGreaterThan(10);
    for (const { file, obj } of objects) {
      expect(typeof obj.apiVersion, file).toBe('string');
      expect(typeof obj.kind, file).toBe('string');
      expect(obj.metadata?.name, `${file} ${obj.kind}`).toMatch(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);
    }
  });

  it('has no two objects with the same kind, namespace and name', () => {
    const keys = objects.map(({ obj }) => `${obj.kind}/${obj.metadata.namespace ?? ''}/${obj.metadata.name}`);
    expect(new Set(keys).size).toBe(keys.length);
  });

  // Each kustomization must list exactly the YAML files of its directory (as
  // resources or patches): a file left out is silently not installed.
  const kustomizations = kustomizationFiles();
  it('has the default kustomization, the optional monitoring one and the components', () => {
    expect(kustomizations).toEqual([
      'manifests/audit-webhook/kustomization.yaml',
      'manifests/components/k8s-metadata/kustomization.yaml',
      'manifests/examples/events-collector-single-replica/kustomization.yaml',
      'manifests/kustomization.yaml',
      'manifests/monitoring/kustomization.yaml',
    ]);
  });
  for (const k of kustomizations) {
    it(`${k} lists every manifest file of its directory, and only existing ones`, () => {
      const dir = path.dirname(path.join(REPO, k));
      const doc = loadKustomization(path.dirname(k));
      // A Component is applied on top of the base; only manifests/components/ and examples/ hold them.
      if (/^manifests\/(components|examples)\//.test(k)) {
        expect(doc.apiVersion).toBe('kustomize.config.k8s.io/v1alpha1');
        expect(doc.kind).toBe('Component');
      } else {
        expect(doc.apiVersion).toBe('kustomize.config.k8s.io/v1beta1');
        expect(doc.kind).toBe('Kustomization');
      }
      const here = fs
        .readdirSync(dir)
        .filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml')
        .sort();
      expect([...(doc.resources ?? []), ...(doc.patches ?? []).map((p) => p.path!)].sort()).toEqual(here);
      expect(doc.components ?? []).toEqual([]);
    });
  }

  it('keeps the optional parts (monitoring CRDs, the example Secret) out of the default kustomization', () => {
    const doc = parseYaml(fs.readFileSync(path.join(MANIFESTS, 'kustomization.yaml'), 'utf8')) as { resources: string[] };
    for (const r of doc.resources) expect(r).not.toMatch(/\//);
    const defaults = doc.resources.flatMap((r) => loadFile(`manifests/${r}`));
    expect(defaults.filter(({ obj }) => OPERATOR_KINDS.has(obj.kind) || obj.kind === 'Secret')).toEqual([]);
    expect(objects.some(({ file, obj }) => file.startsWith('manifests/examples/') && obj.kind === 'Secret')).toBe(true);
  });

  it('pins the image to the package version (one place per kustomization to change on upgrade)', () => {
    for (const dir of ['manifests', 'manifests/audit-webhook']) {
      const k = loadKustomization(dir) as { images?: Array<{ name: string; newTag?: string }> };
      expect(k.images, dir).toEqual([expect.objectContaining({ name: 'ktrail', newTag: pkg.version })]);
    }
    for (const w of workloads) expect(mainContainer(w).image).toBe(`ktrail:${pkg.version}`);
  });
});

describe('manifests: Kubernetes schemas', () => {
  for (const { file, obj } of objects.filter(({ obj }) => !OPERATOR_KINDS.has(obj.kind))) {
    it(`${file}: ${obj.kind}/${obj.metadata.name} validates against ${obj.apiVersion} ${obj.kind} with no unknown field`, async () => {
      const mod = (await import(/* @vite-ignore */ `kubernetes-models/${obj.apiVersion}/${obj.kind}`)) as Record<string, new (data: unknown) => { validate(): void }>;
      const Model = mod[obj.kind];
      expect(Model, `kubernetes-models has no ${obj.apiVersion} ${obj.kind}`).toBeTypeOf('function');
      expect(() => new Model!(obj).validate()).not.toThrow();
      expect(unknownFields(obj, obj.apiVersion, obj.kind)).toEqual([]);
    });
  }

  it('the unknown-field check catches a misspelt security setting (the check itself works)', () => {
    const copy = structuredClone(daemonSet) as unknown as { spec: { template: { spec: { containers: Array<{ securityContext: Record<string, unknown> }> } } } };
    copy.spec.template.spec.containers[0]!.securityContext.readOnlyRootFileSystem = true;
    expect(unknownFields(copy, 'apps/v1', 'DaemonSet')).toEqual(['spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem']);
  });

  it('puts the events collector in ktrail-events, the webhook receiver in ktrail-webhook, everything else namespaced in ktrail, no cluster-scoped object in any', () => {
    for (const { file, obj } of objects) {
      if (CLUSTER_SCOPED.has(obj.kind)) expect(obj.metadata.namespace, `${file} ${obj.kind}`).toBeUndefined();
      // The example Secret is needed in every workload namespace (one document each).
      else if (obj.kind === 'Secret') expect([NAMESPACE, EVENTS_NAMESPACE, WEBHOOK_NAMESPACE]).toContain(obj.metadata.namespace);
      else expect(obj.metadata.namespace, `${file} ${obj.kind}/${obj.metadata.name}`).toBe(namespaceOf(obj));
    }
    expect(deployment.metadata.namespace).toBe(EVENTS_NAMESPACE);
    expect(daemonSet.metadata.namespace).toBe(NAMESPACE);
    expect(webhook.metadata.namespace).toBe(WEBHOOK_NAMESPACE);
    expect(objects.filter(({ obj }) => obj.kind === 'Namespace').map(({ obj }) => obj.metadata.name).sort()).toEqual([NAMESPACE, EVENTS_NAMESPACE, WEBHOOK_NAMESPACE]);
  });

  it('labels every object as part of ktrail', () => {
    for (const { file, obj } of objects) {
      expect(obj.metadata.labels?.['app.kubernetes.io/part-of'], `${file} ${obj.kind}/${obj.metadata.name}`).toBe('ktrail');
    }
  });
});

describe('manifests: RBAC is least privilege', () => {
  const rbac = objects.filter(({ obj }) => ['ClusterRole', 'Role'].includes(obj.kind));
  const rulesOf = (kind: string, name: string) => find<K8sObject & { rules: PolicyRule[] }>(objects, kind, name).rules;
  /** A rule set as "group/resource[:names] verb" strings, to compare exactly. */
  const grants = (rules: PolicyRule[]) =>
    rules
      .flatMap((r) =>
        (r.apiGroups ?? []).flatMap((g) =>
          (r.resources ?? []).flatMap((res) => r.verbs.map((v) => `${g || 'core'}/${res}${r.resourceNames ? `:${r.resourceNames.join(',')}` : ''} ${v}`)),
        ),
      )
      .sort();

  it('has no wildcard anywhere in any rule, and no non-resource URLs', () => {
    expect(rbac.length).toBe(3);
    for (const { obj } of rbac) {
      for (const rule of (obj as unknown as { rules: PolicyRule[] }).rules) {
        for (const v of [...(rule.apiGroups ?? []), ...(rule.resources ?? []), ...(rule.verbs ?? []), ...(rule.resourceNames ?? [])]) {
          expect(v, `${obj.kind}/${obj.metadata.name}`).not.toContain('*');
        }
        expect(rule.nonResourceURLs).toBeUndefined();
      }
    }
  });

  it('never grants access to Secrets, ConfigMaps or write access to anything but the Lease', () => {
    for (const { obj } of rbac) {
      for (const rule of (obj as unknown as { rules: PolicyRule[] }).rules) {
        expect(rule.resources).not.toContain('secrets');
        expect(rule.resources).not.toContain('configmaps');
        const writes = rule.verbs.filter((v) => !['get', 'list', 'watch'].includes(v));
        if (writes.length > 0) {
          expect(obj.kind).toBe('Role');
          expect(rule.resources).toEqual(['leases']);
        }
      }
    }
  });

  /** Every rule bound (by any binding) to the ServiceAccount `sa`, in a rendered object set. */
  const rulesBoundTo = (set: LoadedObject[], sa: string) =>
    set
      .filter(({ obj }) => obj.kind === 'ClusterRoleBinding' || obj.kind === 'RoleBinding')
      .map(({ obj }) => obj as unknown as { roleRef: { kind: string; name: string }; subjects: Array<{ kind: string; name: string }> })
      .filter((b) => b.subjects.some((s) => s.kind === 'ServiceAccount' && s.name === sa))
      .flatMap((b) => find<K8sObject & { rules: PolicyRule[] }>(set, b.roleRef.kind, b.roleRef.name).rules);
  const K8S_METADATA_GRANTS = ['core/pods', 'core/namespaces', 'apps/replicasets'].flatMap((r) => ['get', 'list', 'watch'].map((v) => `${r} ${v}`)).sort();

  it('audit agent, base install: no API access at all (no cluster-wide read on pods, namespaces or replicasets)', () => {
    const base = build('manifests');
    expect(rulesBoundTo(base, 'ktrail-audit-agent')).toEqual([]);
    expect(base.filter(({ obj }) => obj.kind === 'ClusterRole' && obj.metadata.name === 'ktrail-audit-agent')).toEqual([]);
    find(base, 'ServiceAccount', 'ktrail-audit-agent', NAMESPACE);
    // Not even a token: the base DaemonSet does not mount one.
    expect(find<Workload>(base, 'DaemonSet', 'ktrail-audit-agent').spec.template.spec.automountServiceAccountToken).toBe(false);
  });

  it('audit agent, with components/k8s-metadata: get/list/watch pods, namespaces and replicasets, nothing else', () => {
    const withComponent = build('manifests', ['manifests/components/k8s-metadata']);
    expect(grants(rulesBoundTo(withComponent, 'ktrail-audit-agent'))).toEqual(K8S_METADATA_GRANTS);
    // The processor authenticates with the ServiceAccount token, which the component mounts.
    const ds = find<Workload>(withComponent, 'DaemonSet', 'ktrail-audit-agent');
    expect(ds.spec.template.spec.automountServiceAccountToken).toBe(true);
    // ...and changes nothing else of the DaemonSet.
    const strip = (w: Workload) => {
      const x = structuredClone(w);
      delete x.spec.template.spec.automountServiceAccountToken;
      return x;
    };
    expect(strip(ds)).toEqual(strip(daemonSet));
    const cr = find(withComponent, 'ClusterRole', 'ktrail-audit-agent');
    expect(objects.find(({ obj }) => obj === cr || (obj.kind === 'ClusterRole' && obj.metadata.name === 'ktrail-audit-agent'))!.file).toMatch(/^manifests\/components\/k8s-metadata\//);
    // The component grants nothing to the events collector: it stays exactly as in the base.
    expect(grants(rulesBoundTo(withComponent, 'ktrail-events-collector'))).toEqual(grants(rulesBoundTo(build('manifests'), 'ktrail-events-collector')));
  });

  it('events collector: list/watch events in both API groups, get/list/watch pods, namespaces and replicasets', () => {
    expect(grants(rulesOf('ClusterRole', 'ktrail-events-collector'))).toEqual(
      [
        'core/events list',
        'core/events watch',
        'events.k8s.io/events list',
        'events.k8s.io/events watch',
        ...['core/pods', 'core/namespaces', 'apps/replicasets'].flatMap((r) => ['get', 'list', 'watch'].map((v) => `${r} ${v}`)),
      ].sort(),
    );
  });

  it('events collector: get/create/update/watch of its one Lease, in its own namespace only (a Role, not a ClusterRole)', () => {
    const role = find<K8sObject & { rules: PolicyRule[] }>(objects, 'Role', 'ktrail-events-collector-lease');
    expect(role.metadata.namespace).toBe(EVENTS_NAMESPACE);
    expect(grants(role.rules)).toEqual(
      [
        'coordination.k8s.io/leases create',
        'coordination.k8s.io/leases:ktrail-events-collector get',
        'coordination.k8s.io/leases:ktrail-events-collector update',
        'coordination.k8s.io/leases:ktrail-events-collector watch',
      ].sort(),
    );
    for (const { obj } of objects.filter(({ obj }) => obj.kind === 'ClusterRole')) {
      expect(JSON.stringify(obj)).not.toContain('leases');
    }
    const binding = find<K8sObject & { roleRef: { kind: string; name: string }; subjects: unknown[] }>(objects, 'RoleBinding', 'ktrail-events-collector-lease');
    expect(binding.metadata.namespace).toBe(EVENTS_NAMESPACE);
    expect(binding.roleRef).toMatchObject({ kind: 'Role', name: role.metadata.name });
  });

  it('binds each role to its own workload ServiceAccount only', () => {
    const bindings = objects.filter(({ obj }) => obj.kind === 'ClusterRoleBinding' || obj.kind === 'RoleBinding');
    expect(bindings).toHaveLength(3);
    for (const { obj } of bindings) {
      const b = obj as unknown as { roleRef: { apiGroup: string; kind: string; name: string }; subjects: Array<{ kind: string; name: string; namespace: string }> };
      find(objects, b.roleRef.kind, b.roleRef.name);
      expect(b.subjects).toHaveLength(1);
      const sa = find(objects, 'ServiceAccount', b.subjects[0]!.name);
      expect(b.subjects[0]).toMatchObject({ kind: 'ServiceAccount', namespace: sa.metadata.namespace });
      // The role is meant for the same component as the account it is bound to.
      expect(b.roleRef.name.startsWith(b.subjects[0]!.name)).toBe(true);
    }
    expect(daemonSet.spec.template.spec.serviceAccountName).toBe('ktrail-audit-agent');
    expect(deployment.spec.template.spec.serviceAccountName).toBe('ktrail-events-collector');
  });
});

describe('manifests: Pod Security Standards per namespace', () => {
  const labelsOf = (ns: string) => find(objects, 'Namespace', ns).metadata.labels ?? {};
  const podOf = (w: Workload) => w.spec.template.spec;

  it('ktrail-events and ktrail-webhook enforce, audit and warn at restricted; ktrail enforces privileged (hostPath of the audit agent)', () => {
    for (const ns of [EVENTS_NAMESPACE, WEBHOOK_NAMESPACE]) {
      expect(labelsOf(ns)).toMatchObject({
        'pod-security.kubernetes.io/enforce': 'restricted',
        'pod-security.kubernetes.io/enforce-version': 'latest',
        'pod-security.kubernetes.io/audit': 'restricted',
        'pod-security.kubernetes.io/warn': 'restricted',
      });
    }
    expect(labelsOf(NAMESPACE)['pod-security.kubernetes.io/enforce']).toBe('privileged');
  });

  it('the events collector pod passes every restricted control (also in the single-replica shape)', () => {
    expect(podSecurityViolations(podOf(deployment), 'restricted', deployment.spec.template.metadata.annotations)).toEqual([]);
    const single = find<Workload>(build('manifests', ['manifests/examples/events-collector-single-replica']), 'Deployment', 'ktrail-events-collector');
    expect(podSecurityViolations(podOf(single), 'restricted')).toEqual([]);
    // Not a PSS control, but promised: nothing in the image can be changed at runtime.
    expect(mainContainer(deployment).securityContext?.readOnlyRootFilesystem).toBe(true);
  });

  it('every workload passes the level its namespace enforces; the audit agent would be refused by baseline and restricted', () => {
    for (const w of workloads) {
      const level = labelsOf(w.metadata.namespace!)['pod-security.kubernetes.io/enforce'];
      if (level !== 'privileged') expect(podSecurityViolations(podOf(w), level as 'baseline' | 'restricted'), w.metadata.name).toEqual([]);
    }
    // Why ktrail must stay privileged: hostPath (baseline) and uid 0 (restricted).
    expect(podSecurityViolations(podOf(daemonSet), 'baseline')).toEqual(['volumes[audit-logs].hostPath', 'volumes[state].hostPath']);
    expect(podSecurityViolations(podOf(daemonSet), 'restricted')).toEqual(
      expect.arrayContaining(['volumes[audit-logs] type hostPath', 'securityContext.runAsUser 0', 'containers[ktrail] runAsNonRoot must be true']),
    );
  });

  // Each restricted control, broken on a copy of the collector pod, is caught: the check above can fail.
  const breaks: Array<[string, (p: PodSpec, c: Record<string, unknown>) => void]> = [
    ['runAsNonRoot false on the container', (_p, c) => void (c.runAsNonRoot = false)],
    ['runAsNonRoot unset everywhere', (p, c) => void (delete c.runAsNonRoot, delete (p.securityContext as Record<string, unknown>).runAsNonRoot)],
    ['runAsUser 0', (_p, c) => void (c.runAsUser = 0)],
    ['allowPrivilegeEscalation unset', (_p, c) => void delete c.allowPrivilegeEscalation],
    ['capabilities not dropped', (_p, c) => void (c.capabilities = { drop: ['NET_RAW'] })],
    ['a capability added', (_p, c) => void (c.capabilities = { drop: ['ALL'], add: ['SYS_PTRACE'] })],
    ['seccomp Unconfined', (_p, c) => void (c.seccompProfile = { type: 'Unconfined' })],
    ['no seccomp profile', (p, c) => void (delete c.seccompProfile, delete (p.securityContext as Record<string, unknown>).seccompProfile)],
    ['privileged', (_p, c) => void (c.privileged = true)],
    ['hostNetwork', (p) => void (p.hostNetwork = true)],
    ['a hostPath volume', (p) => void (p.volumes![0] = { name: p.volumes![0]!.name, hostPath: { path: '/var/lib/ktrail' } })],
    ['a hostPort', (p) => void ((p.containers[0]!.ports![0] as Record<string, unknown>).hostPort = 9464)],
  ];
  for (const [what, mutate] of breaks) {
    it(`the restricted check refuses the collector pod with ${what}`, () => {
      const pod = structuredClone(podOf(deployment));
      mutate(pod, pod.containers[0]!.securityContext as Record<string, unknown>);
      expect(podSecurityViolations(pod, 'restricted')).not.toEqual([]);
    });
  }
});

describe('manifests: pod security (every workload)', () => {
  for (const w of workloads) {
    const name = `${w.kind}/${w.metadata.name}`;
    const pod = w.spec.template.spec;
    it(`${name}: read-only root fs, no privilege escalation, all capabilities dropped, seccomp RuntimeDefault`, () => {
      const sc = mainContainer(w).securityContext!;
      expect(sc.readOnlyRootFilesystem).toBe(true);
      expect(sc.allowPrivilegeEscalation).toBe(false);
      expect(sc.privileged ?? false).toBe(false);
      expect(sc.capabilities?.drop).toEqual(['ALL']);
      expect(sc.capabilities?.add ?? []).toEqual([]);
      expect(pod.securityContext?.seccompProfile?.type).toBe('RuntimeDefault');
      expect((sc.seccompProfile as { type: string } | undefined)?.type ?? 'RuntimeDefault').toBe('RuntimeDefault');
      expect(pod.hostNetwork ?? false).toBe(false);
      expect(pod.hostPID ?? false).toBe(false);
      expect(pod.hostIPC ?? false).toBe(false);
      expect(pod.initContainers ?? []).toEqual([]);
    });

    it(`${name}: a size-limited tmpfs on /tmp, since the root filesystem is read-only`, () => {
      const mount = mainContainer(w).volumeMounts!.find((m) => m.mountPath === '/tmp')!;
      const vol = pod.volumes!.find((v) => v.name === mount.name)!;
      expect(vol.emptyDir).toMatchObject({ medium: 'Memory' });
      expect(vol.emptyDir?.sizeLimit).toBeDefined();
    });

    it(`${name}: every mount names a volume, every volume is mounted, only the state and /tmp are writable`, () => {
      const mounts = mainContainer(w).volumeMounts!;
      const vols = pod.volumes!;
      expect(new Set(mounts.map((m) => m.name))).toEqual(new Set(vols.map((v) => v.name)));
      for (const m of mounts) {
        expect(m.subPath, `${m.name}: subPath mounts never see updates (rotated Secrets)`).toBeUndefined();
        if (m.mountPath === '/tmp' || m.mountPath === '/var/lib/ktrail') continue;
        expect(m.readOnly, `${name} ${m.mountPath}`).toBe(true);
      }
      for (const v of vols.filter((v) => v.configMap)) find(objects, 'ConfigMap', v.configMap!.name);
    });

    it(`${name}: secrets arrive as files with restrictive modes, never as environment variables`, () => {
      const c = mainContainer(w);
      for (const e of c.env ?? []) expect(e.valueFrom?.secretKeyRef, e.name).toBeUndefined();
      const secrets = pod.volumes!.filter((v) => v.secret);
      expect(secrets.length).toBeGreaterThan(0);
      // Owner-only, or owner and group (the collector's fsGroup); read as the API server reads `0440` (octal).
      for (const v of secrets) expect([0o400, 0o440]).toContain(v.secret!.defaultMode);
    });

    it(`${name}: NODE_NAME, POD_NAME and POD_NAMESPACE from the downward API`, () => {
      const env = Object.fromEntries((mainContainer(w).env ?? []).map((e) => [e.name, e.valueFrom?.fieldRef?.fieldPath]));
      expect(env).toMatchObject({ NODE_NAME: 'spec.nodeName', POD_NAME: 'metadata.name', POD_NAMESPACE: 'metadata.namespace' });
    });

    it(`${name}: memory requests and limits, and a V8 heap ceiling well below the limit`, () => {
      const c = mainContainer(w);
      const mib = (q: string) => {
        const m = /^(\d+)(Mi|Gi)$/.exec(q);
        expect(m, q).not.toBeNull();
        return Number(m![1]) * (m![2] === 'Gi' ? 1024 : 1);
      };
      expect(c.resources?.requests?.cpu).toBeDefined();
      const request = mib(c.resources!.requests!.memory!);
      const limit = mib(c.resources!.limits!.memory!);
      expect(request).toBeLessThanOrEqual(limit);
      const heap = /--max-old-space-size=(\d+)/.exec(c.env!.find((e) => e.name === 'NODE_OPTIONS')!.value!);
      expect(Number(heap![1])).toBeLessThanOrEqual(limit * 0.65);
    });

    it(`${name}: liveness on /healthz, readiness on /readyz, both on the metrics port of the embedded config`, () => {
      const c = mainContainer(w);
      const cm = pod.volumes!.find((v) => v.configMap)!.configMap!.name;
      const listen = serviceSchema.parse((embeddedConfig(cm).doc.service ?? {}) as object).metrics.listen;
      const port = Number(listen.slice(listen.lastIndexOf(':') + 1));
      expect(listen.startsWith('0.0.0.0:')).toBe(true);
      const named = c.ports!.find((p) => p.name === 'metrics')!;
      expect(named.containerPort).toBe(port);
      expect(c.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
      expect(c.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
      // Startup gets its own generous budget so a slow first start is not killed by liveness.
      expect(c.startupProbe?.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    });

    it(`${name}: terminationGracePeriodSeconds exceeds the config's service.shutdown_timeout`, () => {
      const cm = pod.volumes!.find((v) => v.configMap)!.configMap!.name;
      const service = serviceSchema.parse((embeddedConfig(cm).doc.service ?? {}) as object);
      const graceMs = pod.terminationGracePeriodSeconds! * 1000;
      // Stopping inputs and flushing happen before the outputs' drain deadline: leave >= 10 s.
      expect(graceMs).toBeGreaterThanOrEqual(service.shutdown_timeout + 10_000);
    });

    it(`${name}: runs the config mounted at /etc/ktrail/ktrail.yaml, with state in /var/lib/ktrail`, () => {
      const c = mainContainer(w);
      expect(c.args).toEqual(['run', '-c', '/etc/ktrail/ktrail.yaml']);
      const cfgMount = c.volumeMounts!.find((m) => m.mountPath === '/etc/ktrail')!;
      expect(pod.volumes!.find((v) => v.name === cfgMount.name)!.configMap).toBeDefined();
      const cm = pod.volumes!.find((v) => v.configMap)!.configMap!.name;
      const service = serviceSchema.parse((embeddedConfig(cm).doc.service ?? {}) as object);
      expect(c.volumeMounts!.some((m) => m.mountPath === service.state_dir)).toBe(true);
    });
  }
});

/** Whether a taint is tolerated, as the scheduler and the taint manager decide it. */
function tolerates(tolerations: NonNullable<PodSpec['tolerations']>, taint: { key: string; value?: string; effect: string }): boolean {
  return tolerations.some(
    (t) =>
      (t.effect === undefined || t.effect === '' || t.effect === taint.effect) &&
      (t.key === undefined ? t.operator === 'Exists' : t.key === taint.key) &&
      (t.operator === 'Exists' || (t.value ?? '') === (taint.value ?? '')),
  );
}

describe('manifests: audit agent DaemonSet', () => {
  const pod = daemonSet.spec.template.spec;
  const c = mainContainer(daemonSet);

  it('is scheduled only on control-plane nodes and tolerates their taints of every effect (NoSchedule and NoExecute)', () => {
    const terms = pod.affinity!.nodeAffinity!.requiredDuringSchedulingIgnoredDuringExecution!.nodeSelectorTerms;
    // Terms are ORed; each must require a control-plane role label.
    expect(terms.map((t) => t.matchExpressions)).toEqual([
      [{ key: 'node-role.kubernetes.io/control-plane', operator: 'Exists' }],
      [{ key: 'node-role.kubernetes.io/master', operator: 'Exists' }],
    ]);
    expect(pod.nodeSelector ?? {}).toEqual({});
    // operator Exists and no effect: any value, any effect (a NoExecute taint would otherwise evict the agent).
    expect(pod.tolerations).toEqual([
      { key: 'node-role.kubernetes.io/control-plane', operator: 'Exists' },
      { key: 'node-role.kubernetes.io/master', operator: 'Exists' },
    ]);
    for (const effect of ['NoSchedule', 'PreferNoSchedule', 'NoExecute']) {
      for (const key of ['node-role.kubernetes.io/control-plane', 'node-role.kubernetes.io/master']) {
        expect(tolerates(pod.tolerations!, { key, value: '', effect }), `${key}:${effect}`).toBe(true);
      }
    }
    expect(tolerates(pod.tolerations!, { key: 'node.kubernetes.io/unschedulable', effect: 'NoSchedule' })).toBe(false);
    // No blanket toleration that would also put it on every worker.
    for (const t of pod.tolerations!) expect(t.key).toBeDefined();
  });

  it('mounts the audit log directory read-only from the host, and nothing else of the host but its state dir', () => {
    const hostVols = pod.volumes!.filter((v) => v.hostPath);
    expect(hostVols.map((v) => v.hostPath!.path).sort()).toEqual(['/var/lib/ktrail', '/var/log/kubernetes/audit']);
    const audit = hostVols.find((v) => v.hostPath!.path === '/var/log/kubernetes/audit')!;
    expect(audit.hostPath!.type).toBe('Directory');
    const mount = c.volumeMounts!.find((m) => m.name === audit.name)!;
    expect(mount.readOnly).toBe(true);
    expect(mount.mountPath).toBe('/var/log/kubernetes/audit');
  });

  it('keeps its state on a hostPath (DirectoryOrCreate) so checkpoints survive pod restarts', () => {
    const state = pod.volumes!.find((v) => v.hostPath?.path === '/var/lib/ktrail')!;
    expect(state.hostPath!.type).toBe('DirectoryOrCreate');
    expect(c.volumeMounts!.find((m) => m.name === state.name)!.mountPath).toBe('/var/lib/ktrail');
  });

  it('runs as uid 0 only to read the 0600 root-owned audit files: with no capability at all', () => {
    expect(pod.securityContext?.runAsUser).toBe(0);
    expect(c.securityContext?.capabilities).toEqual({ drop: ['ALL'] });
    expect(JSON.stringify(daemonSet)).not.toMatch(/DAC_OVERRIDE|DAC_READ_SEARCH|SYS_ADMIN/);
  });

  it('rolls one node at a time and never runs two pods on one node (they would share the SQLite state)', () => {
    expect(daemonSet.spec.updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1, maxSurge: 0 } });
  });

  it('has a priority class that outranks ordinary pods but not the system classes', () => {
    const pc = find<K8sObject & { value: number; globalDefault?: boolean }>(objects, 'PriorityClass', pod.priorityClassName!);
    expect(pc.value).toBeGreaterThan(0);
    expect(pc.value).toBeLessThanOrEqual(1_000_000_000);
    expect(pc.globalDefault ?? false).toBe(false);
  });
});

describe('manifests: events collector Deployment', () => {
  const pod = deployment.spec.template.spec;
  const c = mainContainer(deployment);

  it('runs two replicas, and a rollout starts a new pod before it stops an old one', () => {
    expect(deployment.spec.replicas).toBe(2);
    // maxUnavailable 0: the leader is stopped only once a new standby is ready to take its Lease.
    expect(deployment.spec.strategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } });
  });

  it('prefers to put the two replicas on different nodes (one lost node never takes both)', () => {
    const terms = pod.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? [];
    expect(terms).toHaveLength(1);
    expect(terms[0]!.podAffinityTerm.topologyKey).toBe('kubernetes.io/hostname');
    expect(terms[0]!.podAffinityTerm.labelSelector?.matchLabels).toEqual(deployment.spec.selector.matchLabels);
    // Preferred, not required: a one-node cluster (or a node down during a rollout) still runs both.
    expect(pod.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution).toBeUndefined();
  });

  it('has a PodDisruptionBudget that lets a drain take one collector at a time, never both', () => {
    const pdb = find<K8sObject & { spec: { maxUnavailable?: number; minAvailable?: number; selector: { matchLabels: Record<string, string> } } }>(
      objects,
      'PodDisruptionBudget',
      'ktrail-events-collector',
    );
    expect(pdb.metadata.namespace).toBe(deployment.metadata.namespace);
    expect(pdb.spec.selector.matchLabels).toEqual(deployment.spec.selector.matchLabels);
    expect(pdb.spec.minAvailable).toBeUndefined();
    expect(pdb.spec.maxUnavailable).toBe(1);
    expect(pdb.spec.maxUnavailable!).toBeLessThan(deployment.spec.replicas!);
  });

  it('keeps its state on a size-limited emptyDir (the Lease holds the delivered cursor), with no PVC in the default install', () => {
    const mount = c.volumeMounts!.find((m) => m.mountPath === '/var/lib/ktrail')!;
    const v = pod.volumes!.find((v) => v.name === mount.name)!;
    expect(v.persistentVolumeClaim).toBeUndefined();
    expect(v.emptyDir?.medium).toBeUndefined(); // on disk, not counted against the memory limit
    const limit = /^(\d+)Gi$/.exec(v.emptyDir!.sizeLimit!);
    const spool = /^(\d+)MiB$/.exec((embeddedConfig('ktrail-events-collector').doc.spool as { max_bytes: string }).max_bytes);
    // Room for the spool, SQLite's WAL and free pages: at least 3 x spool.max_bytes.
    expect(Number(limit![1]) * 1024).toBeGreaterThanOrEqual(3 * Number(spool![1]));
    const base = build('manifests');
    expect(base.filter(({ obj }) => obj.kind === 'PersistentVolumeClaim')).toEqual([]);
  });

  it('has room in terminationGracePeriodSeconds for the handover: handover_wait fits in shutdown_timeout', () => {
    const cfg = loadConfigText(embeddedConfig('ktrail-events-collector').text, 'events-collector', {
      env: { NODE_NAME: 'n', POD_NAME: 'p', POD_NAMESPACE: deployment.metadata.namespace! },
    });
    const service = cfg.service;
    const le = cfg.inputs[0]!.config.leader_election as { enabled: boolean; handover_wait: number };
    expect(le.enabled).toBe(true);
    expect(le.handover_wait).toBeLessThan(service.shutdown_timeout);
    expect(pod.terminationGracePeriodSeconds! * 1000).toBeGreaterThan(service.shutdown_timeout + le.handover_wait);
  });

  it('examples/events-collector-single-replica turns it into one replica, Recreate, state on a ReadWriteOnce PVC', () => {
    const built = build('manifests', ['manifests/examples/events-collector-single-replica']);
    const d = find<Workload>(built, 'Deployment', 'ktrail-events-collector');
    expect(d.spec.replicas).toBe(1);
    // Recreate: the old pod has released the volume before the new one mounts it.
    expect(d.spec.strategy).toEqual({ type: 'Recreate' });
    const p = d.spec.template.spec;
    const state = p.volumes!.find((v) => v.name === p.containers[0]!.volumeMounts!.find((m) => m.mountPath === '/var/lib/ktrail')!.name)!;
    expect(Object.keys(state).sort()).toEqual(['name', 'persistentVolumeClaim']);
    const pvc = find<K8sObject & { spec: { accessModes: string[]; resources: { requests: { storage: string } } } }>(
      built,
      'PersistentVolumeClaim',
      state.persistentVolumeClaim!.claimName,
    );
    expect(pvc.metadata.namespace).toBe(d.metadata.namespace);
    expect(pvc.spec.accessModes).toEqual(['ReadWriteOnce']);
    // Everything else of the pod is the base's: only replicas, strategy, the state volume and the anti-affinity differ.
    const strip = (w: Workload) => {
      const x = structuredClone(w) as unknown as { spec: Record<string, unknown> & { template: { spec: Record<string, unknown> & { volumes: Array<{ name: string }> } } } };
      delete x.spec.replicas;
      delete x.spec.strategy;
      delete x.spec.template.spec.affinity;
      x.spec.template.spec.volumes = x.spec.template.spec.volumes.filter((v) => v.name !== 'state');
      return x;
    };
    expect(strip(d)).toEqual(strip(deployment));
    for (const { obj } of built.filter(({ obj }) => ['Deployment', 'PersistentVolumeClaim'].includes(obj.kind))) {
      expect(unknownFields(obj, obj.apiVersion, obj.kind)).toEqual([]);
    }
  });

  it('runs as a non-root user with an fsGroup for its volume and Secret files', () => {
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000 });
    expect(c.securityContext?.runAsUser ?? 1000).not.toBe(0);
    expect(pod.volumes!.some((v) => v.hostPath)).toBe(false);
  });
});

describe('manifests: audit webhook Deployment (manifests/audit-webhook)', () => {
  const pod = webhook.spec.template.spec;
  const c = mainContainer(webhook);
  const cfg = loadConfigText(embeddedConfig('ktrail-webhook').text, 'audit-webhook', {
    env: { NODE_NAME: 'n', POD_NAME: 'p', POD_NAMESPACE: WEBHOOK_NAMESPACE },
  });
  const hook = cfg.inputs.find((i) => i.plugin.type === 'audit_webhook')!.config as {
    port: number;
    path: string;
    request_timeout: number;
    max_concurrent_requests: number;
    max_body_bytes: number;
    tls: { enabled: boolean; cert_file: string; key_file: string; client_ca_file?: string };
  };
  const mib = (q: string) => {
    const m = /^(\d+)(Mi|Gi)$/.exec(q);
    expect(m, q).not.toBeNull();
    return Number(m![1]) * (m![2] === 'Gi' ? 1024 : 1);
  };

  it('is a kustomization of its own: nothing of it in the default install, all of it in ktrail-webhook', () => {
    const base = build('manifests');
    expect(base.filter(({ obj }) => obj.metadata.labels?.['app.kubernetes.io/component'] === 'audit-webhook')).toEqual([]);
    const built = build('manifests/audit-webhook');
    expect(built.map(({ obj }) => `${obj.kind}/${obj.metadata.name}`).sort()).toEqual(
      ['ConfigMap/ktrail-webhook', 'Deployment/ktrail-webhook', 'Namespace/ktrail-webhook', 'PodDisruptionBudget/ktrail-webhook', 'Service/ktrail-webhook', 'Service/ktrail-webhook-metrics', 'ServiceAccount/ktrail-webhook'].sort(),
    );
    for (const { obj } of built) if (obj.kind !== 'Namespace') expect(obj.metadata.namespace).toBe(WEBHOOK_NAMESPACE);
    // The only input is the webhook: no host files, no Lease.
    expect(cfg.inputs.map((i) => i.plugin.type)).toEqual(['audit_webhook']);
    expect(pod.volumes!.some((v) => v.hostPath)).toBe(false);
  });

  it('runs 2+ replicas with no leader, a rollout starts a new receiver before it stops an old one, and prefers different nodes', () => {
    expect(webhook.spec.replicas).toBeGreaterThanOrEqual(2);
    expect(webhook.spec.strategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } });
    const terms = pod.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? [];
    expect(terms).toHaveLength(1);
    expect(terms[0]!.podAffinityTerm.topologyKey).toBe('kubernetes.io/hostname');
    expect(terms[0]!.podAffinityTerm.labelSelector?.matchLabels).toEqual(webhook.spec.selector.matchLabels);
    expect(pod.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution).toBeUndefined();
  });

  it('has no API access: no role bound to its ServiceAccount and no token mounted', () => {
    expect(pod.serviceAccountName).toBe('ktrail-webhook');
    const sa = find<K8sObject & { automountServiceAccountToken?: boolean }>(objects, 'ServiceAccount', 'ktrail-webhook', WEBHOOK_NAMESPACE);
    expect(sa.automountServiceAccountToken).toBe(false);
    expect(pod.automountServiceAccountToken).toBe(false);
    const bindings = objects.filter(({ obj }) => obj.kind === 'ClusterRoleBinding' || obj.kind === 'RoleBinding');
    expect(bindings.filter(({ obj }) => JSON.stringify(obj).includes('ktrail-webhook'))).toEqual([]);
  });

  it('the Service ktrail-webhook load-balances port 8443 over the ready receivers, to the port the input listens on', () => {
    const svc = find<K8sObject & { spec: { type?: string; clusterIP?: string; publishNotReadyAddresses?: boolean; selector: Record<string, string>; ports: Array<{ name: string; port: number; targetPort: string }> } }>(
      objects,
      'Service',
      'ktrail-webhook',
      WEBHOOK_NAMESPACE,
    );
    expect(svc.spec.type ?? 'ClusterIP').toBe('ClusterIP');
    expect(svc.spec.clusterIP).not.toBe('None');
    // A stopping or unready pod leaves the endpoints: no new batch is sent to it.
    expect(svc.spec.publishNotReadyAddresses ?? false).toBe(false);
    expect(svc.spec.selector).toEqual(webhook.spec.selector.matchLabels);
    expect(svc.spec.ports).toEqual([{ name: 'webhook', port: 8443, targetPort: 'webhook', protocol: 'TCP' }]);
    expect(c.ports!.find((p) => p.name === 'webhook')!.containerPort).toBe(hook.port);
    // The URL docs/deploy.md puts in the apiserver's webhook kubeconfig reaches it.
    const deployDoc = fs.readFileSync(path.join(REPO, 'docs/deploy.md'), 'utf8');
    expect(deployDoc).toContain(`server: https://ktrail-webhook.${WEBHOOK_NAMESPACE}.svc:8443${hook.path}`);
  });

  it('has a PodDisruptionBudget that lets a drain take one receiver at a time', () => {
    const pdb = find<K8sObject & { spec: { maxUnavailable?: number; selector: { matchLabels: Record<string, string> } } }>(objects, 'PodDisruptionBudget', 'ktrail-webhook');
    expect(pdb.metadata.namespace).toBe(WEBHOOK_NAMESPACE);
    expect(pdb.spec.selector.matchLabels).toEqual(webhook.spec.selector.matchLabels);
    expect(pdb.spec.maxUnavailable).toBe(1);
    expect(pdb.spec.maxUnavailable!).toBeLessThan(webhook.spec.replicas!);
  });

  it('serves TLS with mutual TLS from whole Secret volumes (rotation reaches the files): the config names files in them', () => {
    expect(hook.tls.enabled).toBe(true);
    const expected: Array<[string | undefined, string, string]> = [
      [hook.tls.cert_file, 'ktrail-webhook-tls', 'tls.crt'],
      [hook.tls.key_file, 'ktrail-webhook-tls', 'tls.key'],
      [hook.tls.client_ca_file, 'ktrail-webhook-client-ca', 'ca.crt'],
    ];
    for (const [file, secretName, key] of expected) {
      expect(file).toBeDefined();
      const mount = c.volumeMounts!.find((m) => file!.startsWith(`${m.mountPath}/`))!;
      expect(mount, file).toBeDefined();
      expect(mount.readOnly).toBe(true);
      expect(mount.subPath).toBeUndefined();
      expect(pod.volumes!.find((v) => v.name === mount.name)!.secret?.secretName).toBe(secretName);
      expect(path.relative(mount.mountPath, file!)).toBe(key);
    }
  });

  it('drains within terminationGracePeriodSeconds: preStop sleep, then in-flight requests and the outputs', () => {
    const preStopSeconds = (c as unknown as { lifecycle?: { preStop?: { sleep?: { seconds: number } } } }).lifecycle?.preStop?.sleep?.seconds ?? 0;
    expect(preStopSeconds).toBeGreaterThan(0);
    // In-flight requests (each within request_timeout) finish while the outputs' deadline (shutdown_timeout) runs.
    const drainMs = Math.max(hook.request_timeout, cfg.service.shutdown_timeout);
    expect(pod.terminationGracePeriodSeconds! * 1000).toBeGreaterThan(preStopSeconds * 1000 + drainMs + 10_000);
    expect(c.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
  });

  it('keeps its spool on a size-limited emptyDir with room for 3 x spool.max_bytes, and bounds request memory within its limit', () => {
    const mount = c.volumeMounts!.find((m) => m.mountPath === cfg.service.state_dir)!;
    const v = pod.volumes!.find((v) => v.name === mount.name)!;
    expect(v.persistentVolumeClaim).toBeUndefined();
    expect(v.emptyDir?.medium).toBeUndefined();
    expect(mib(v.emptyDir!.sizeLimit!) * 1024 * 1024).toBeGreaterThanOrEqual(3 * cfg.spool.max_bytes);
    // Bodies are held whole and parsed with JSON.parse (~3x): docs/inputs/audit_webhook.md, Memory.
    expect(hook.max_concurrent_requests * hook.max_body_bytes * 3).toBeLessThanOrEqual(mib(c.resources!.limits!.memory!) * 1024 * 1024);
  });
});

describe('manifests: metrics Services and monitoring', () => {
  type Service = K8sObject & {
    spec: { type?: string; clusterIP?: string; publishNotReadyAddresses?: boolean; selector: Record<string, string>; ports: Array<{ name: string; port: number; targetPort: string | number; protocol?: string }> };
  };
  const allServices = objects.filter(({ obj }) => obj.kind === 'Service').map(({ obj }) => obj as Service);
  /** The Services Prometheus scrapes: those with a `metrics` port (the webhook's own Service has none). */
  const services = allServices.filter((s) => s.spec.ports.some((p) => p.name === 'metrics'));
  /** The workload whose pods a Service selects (exactly one). */
  const workloadOf = (s: Service) => {
    const hits = workloads.filter((w) => Object.entries(s.spec.selector).every(([k, v]) => w.spec.template.metadata.labels[k] === v));
    expect(hits, s.metadata.name).toHaveLength(1);
    return hits[0]!;
  };

  it('has one headless metrics Service per workload, selecting exactly its pods, with Prometheus scrape annotations', () => {
    expect(services.map((s) => s.metadata.name).sort()).toEqual(['ktrail-audit-agent', 'ktrail-events-collector', 'ktrail-webhook-metrics']);
    expect(new Set(services.map(workloadOf))).toEqual(new Set(workloads));
    for (const s of services) {
      const w = workloadOf(s);
      expect(s.metadata.namespace).toBe(w.metadata.namespace);
      expect(s.spec.selector).toEqual(w.spec.selector.matchLabels);
      expect(w.spec.template.metadata.labels).toMatchObject(s.spec.selector);
      // The other workloads' pods must not match (workloadOf found exactly one).
      expect(s.spec.clusterIP).toBe('None');
      expect(s.spec.publishNotReadyAddresses).toBe(true);
      const port = mainContainer(w).ports!.find((p) => p.name === 'metrics')!.containerPort;
      expect(s.spec.ports).toEqual([{ name: 'metrics', port, targetPort: 'metrics', protocol: 'TCP' }]);
      expect(s.metadata.annotations).toEqual({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(port), 'prometheus.io/path': '/metrics' });
    }
  });

  const monitoring = objects.filter(({ obj }) => OPERATOR_KINDS.has(obj.kind));

  it('ServiceMonitor selects every metrics Service by its labels and scrapes the metrics port', () => {
    const sm = find<K8sObject & { spec: Record<string, unknown> }>(monitoring, 'ServiceMonitor', 'ktrail');
    expect(sm.apiVersion).toBe('monitoring.coreos.com/v1');
    const spec = sm.spec as {
      namespaceSelector: { matchNames: string[] };
      selector: { matchLabels: Record<string, string>; matchExpressions: Array<{ key: string; operator: string; values: string[] }> };
      endpoints: Array<{ port: string; path: string; interval: string }>;
    };
    expect(Object.keys(sm.spec).sort()).toEqual(['endpoints', 'namespaceSelector', 'selector']);
    expect(spec.namespaceSelector.matchNames).toEqual([NAMESPACE, EVENTS_NAMESPACE, WEBHOOK_NAMESPACE]);
    expect(services.map((s) => s.metadata.namespace).sort()).toEqual([NAMESPACE, EVENTS_NAMESPACE, WEBHOOK_NAMESPACE]);
    const selects = (labels: Record<string, string>) =>
      Object.entries(spec.selector.matchLabels).every(([k, v]) => labels[k] === v) &&
      spec.selector.matchExpressions.every((e) => e.operator === 'In' && e.values.includes(labels[e.key]!));
    expect(services.every((s) => selects(s.metadata.labels!))).toBe(true);
    expect(spec.endpoints).toHaveLength(1);
    expect(spec.endpoints[0]).toMatchObject({ port: 'metrics', path: '/metrics' });
  });

  interface Rule {
    alert: string;
    expr: string;
    for?: string;
    labels: { severity: string };
    annotations: { summary: string; description: string; runbook: string };
  }
  const rules = (): Rule[] => {
    const pr = find<K8sObject & { spec: { groups: Array<{ name: string; rules: Rule[] }> } }>(monitoring, 'PrometheusRule', 'ktrail');
    expect(pr.apiVersion).toBe('monitoring.coreos.com/v1');
    return pr.spec.groups.flatMap((g) => g.rules);
  };

  it('PrometheusRule alerts on what matters: spool, lag, gaps, leadership, dead letters, targets', () => {
    const names = rules().map((r) => r.alert);
    expect(new Set(names).size).toBe(names.length);
    const exprs = rules().map((r) => r.expr).join('\n');
    for (const needed of [
      'ktrail_spool_bytes / ktrail_spool_max_bytes',
      'ktrail_output_lag_records',
      'ktrail_output_oldest_pending_age_seconds',
      'ktrail_audit_file_gap_files_total',
      'ktrail_k8s_events_gaps_total',
      'sum by (namespace, input) (ktrail_k8s_events_leader) == 0',
      'ktrail_dead_letters_total',
      'ktrail_manifest_oldest_unsealed_age_seconds',
      'up{',
    ]) {
      expect(exprs).toContain(needed);
    }
  });

  it('every metric an alert uses is declared in src/telemetry/metrics.ts, with the labels it groups by', () => {
    const declared = new Map<string, string[]>();
    for (const m of allMetrics().registry.getMetricsAsArray()) {
      declared.set(m.name, [...((m as unknown as { labelNames?: string[] }).labelNames ?? [])]);
    }
    const targetLabels = ['namespace', 'pod', 'job', 'instance'];
    for (const r of rules()) {
      const used = [...r.expr.matchAll(/\bktrail_[a-z0-9_]+/g)].map((m) => m[0]);
      expect(used.length + (r.expr.includes('up{') ? 1 : 0), r.alert).toBeGreaterThan(0);
      for (const name of used) {
        expect(declared.has(name), `${r.alert}: ${name} is not a ktrail metric`).toBe(true);
        for (const by of r.expr.matchAll(/by \(([^)]*)\)/g)) {
          for (const label of by[1]!.split(',').map((s) => s.trim())) {
            expect([...targetLabels, ...declared.get(name)!], `${r.alert}: ${name} has no label ${label}`).toContain(label);
          }
        }
      }
      for (const [, label] of `${r.annotations.summary} ${r.annotations.description}`.matchAll(/\$labels\.([a-z_]+)/g)) {
        const kept = /by \(([^)]*)\)/.exec(r.expr)?.[1]?.split(',').map((s) => s.trim());
        if (kept) expect(kept, `${r.alert} describes {{ $labels.${label} }} that its expression aggregates away`).toContain(label);
      }
    }
  });

  it('every alert has a severity, a summary, a description and a runbook section in docs/deploy.md', () => {
    const deployDoc = fs.readFileSync(path.join(REPO, 'docs/deploy.md'), 'utf8');
    const anchors = new Set(
      [...deployDoc.matchAll(/^#{2,4} (.+)$/gm)].map((m) =>
        m[1]!
          .toLowerCase()
          .replace(/[^a-z0-9 -]/g, '')
          .trim()
          .replace(/ /g, '-'),
      ),
    );
    for (const r of rules()) {
      expect(['warning', 'critical']).toContain(r.labels.severity);
      expect(r.annotations.summary.length).toBeGreaterThan(10);
      expect(r.annotations.description.length).toBeGreaterThan(20);
      const anchor = /^docs\/deploy\.md#(.+)$/.exec(r.annotations.runbook)?.[1];
      expect(anchor && anchors.has(anchor), `${r.alert}: runbook ${r.annotations.runbook} has no heading in docs/deploy.md`).toBe(true);
    }
  });

  it('the alert job names are the metrics Service names (the ServiceMonitor job label)', () => {
    for (const r of rules()) {
      for (const m of r.expr.matchAll(/job=~?"([^"]+)"/g)) {
        for (const job of m[1]!.split('|')) expect(services.map((s) => s.metadata.name)).toContain(job);
      }
    }
  });
});

describe('manifests: the example Secret', () => {
  const examples = objects.filter(({ file }: LoadedObject) => file.startsWith('manifests/examples/'));
  it('is clearly a placeholder: stringData only, every value marks itself as one; one copy in each workload namespace', () => {
    const secrets = examples.filter(({ obj }) => obj.kind === 'Secret').map(({ obj }) => obj as K8sObject & { stringData: Record<string, string>; data?: unknown; type: string });
    expect(secrets.map((s) => s.metadata.namespace).sort()).toEqual([NAMESPACE, EVENTS_NAMESPACE, WEBHOOK_NAMESPACE]);
    for (const s of secrets) {
      expect(s.type).toBe('Opaque');
      expect(s.data).toBeUndefined();
      for (const v of Object.values(s.stringData)) expect(v).toMatch(/REPLACE-ME/);
      expect(s.stringData).toEqual(secrets[0]!.stringData);
    }
    for (const w of workloads) {
      const v = w.spec.template.spec.volumes!.find((v) => v.secret?.secretName === 'ktrail-output-credentials')!;
      // A pod can mount only a Secret of its own namespace.
      const s = find(objects, 'Secret', v.secret!.secretName, w.metadata.namespace);
      expect(s.metadata.namespace).toBe(w.metadata.namespace);
    }
    const s = secrets[0]!;
    expect(allStrings(s).length).toBeGreaterThan(0);
  });
});
