import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { loadConfigText, type AgentConfig } from '../../src/config/load.ts';
import { Secret } from '../../src/config/secret.ts';
import { build, find, loadObjects, REPO, yamlFiles, type K8sObject, type PolicyRule, type Workload } from './manifests.ts';

/**
 * The configs the manifests ship — the ConfigMaps and the
 * config/examples/deploy-*.yaml variants — pass ktrail's own validation with
 * the environment the pods give them, and agree with the manifests: the
 * files they read are mounted, the secrets they name exist in the Secret,
 * the Lease they use is the one RBAC allows.
 */

const objects = loadObjects();
const daemonSet = find<Workload>(objects, 'DaemonSet', 'ktrail-audit-agent');
const deployment = find<Workload>(objects, 'Deployment', 'ktrail-events-collector');
const webhook = find<Workload>(objects, 'Deployment', 'ktrail-webhook');
/** The example Secret of the workload's namespace (there is one per namespace). */
const exampleSecret = (w: Workload) => find<K8sObject & { stringData: Record<string, string> }>(objects, 'Secret', 'ktrail-output-credentials', w.metadata.namespace);

/** What the downward API gives the pods (and nothing else: no other variable may be needed). */
const POD_ENV = { NODE_NAME: 'cp-1', POD_NAME: 'ktrail-audit-agent-x7k2p', POD_NAMESPACE: daemonSet.metadata.namespace! };
const EVENTS_ENV = { NODE_NAME: 'node-3', POD_NAME: 'ktrail-events-collector-7d9f-abcde', POD_NAMESPACE: deployment.metadata.namespace! };
const WEBHOOK_ENV = { NODE_NAME: 'node-2', POD_NAME: 'ktrail-webhook-6c8d-fghij', POD_NAMESPACE: webhook.metadata.namespace! };
const envOf = (w: Workload) => (w === daemonSet ? POD_ENV : EVENTS_ENV);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-deploy-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function configMapText(name: string): string {
  const cm = find<K8sObject & { data: Record<string, string> }>(objects, 'ConfigMap', name);
  expect(Object.keys(cm.data)).toEqual(['ktrail.yaml']);
  return cm.data['ktrail.yaml']!;
}

/** Every file a validated config will read: secret files and TLS/CA files. */
function filesRead(value: unknown, at = '', out: Array<{ at: string; file: string }> = []): Array<{ at: string; file: string }> {
  if (value instanceof Secret) {
    if (value.file !== undefined) out.push({ at, file: value.file });
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => filesRead(v, `${at}[${i}]`, out));
  } else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k.endsWith('_file') && typeof v === 'string') out.push({ at: `${at}.${k}`, file: v });
      else filesRead(v, at ? `${at}.${k}` : k, out);
    }
  }
  return out;
}

/**
 * The config's secret files are in a read-only Secret mount of the workload, under keys the example
 * Secret has, or (`operatorSecrets`: Secrets the operator creates, e.g. TLS) under the keys listed.
 */
function expectFilesMounted(cfg: AgentConfig, w: Workload, operatorSecrets: Record<string, string[]> = {}): void {
  const pod = w.spec.template.spec;
  const mounts = pod.containers[0]!.volumeMounts!;
  const refs = filesRead(cfg.outputs.map((o) => o.config)).concat(filesRead(cfg.processors.map((p) => p.config)), filesRead(cfg.inputs.map((i) => i.config)));
  for (const { at, file } of refs) {
    const mount = mounts.find((m) => file.startsWith(`${m.mountPath}/`));
    expect(mount, `${at}: ${file} is not inside any mount of ${w.metadata.name}`).toBeDefined();
    expect(mount!.readOnly).toBe(true);
    const vol = pod.volumes!.find((v) => v.name === mount!.name)!;
    const own = operatorSecrets[vol.secret?.secretName ?? ''];
    if (own) {
      expect(own, `${at}: the Secret ${vol.secret!.secretName} has no key ${path.basename(file)}`).toContain(path.relative(mount!.mountPath, file));
      continue;
    }
    expect(vol.secret?.secretName, `${at}: ${file} must come from a Secret`).toBe(exampleSecret(w).metadata.name);
    expect(Object.keys(exampleSecret(w).stringData), `${at}: the Secret has no key ${path.basename(file)}`).toContain(path.relative(mount!.mountPath, file));
  }
}

function expectServiceMatchesWorkload(cfg: AgentConfig, w: Workload): void {
  const c = w.spec.template.spec.containers[0]!;
  const stateMount = c.volumeMounts!.find((m) => m.mountPath === cfg.service.state_dir);
  expect(stateMount?.readOnly ?? false).toBe(false);
  expect(w.spec.template.spec.terminationGracePeriodSeconds! * 1000).toBeGreaterThan(cfg.service.shutdown_timeout);
}

function notWarnings(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l !== '' && !l.startsWith('warning: '));
}

async function ktrailCheck(text: string, name: string, env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, text);
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [path.join(REPO, 'bin/ktrail.js'), 'check', '-c', file], {
      env: { PATH: process.env.PATH ?? '', ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('deploy configs: the audit agent ConfigMap', () => {
  const text = configMapText('ktrail-audit-agent');
  const load = () => loadConfigText(text, 'manifests/audit-agent-configmap.yaml', { env: POD_ENV });

  it('passes ktrail validation with the pod environment', () => {
    const cfg = load();
    expect(cfg.inputs.map((i) => i.plugin.type)).toEqual(['audit_file']);
    expect(cfg.outputs.length).toBeGreaterThan(0);
  });

  it('tails only files in the read-only audit log mount', () => {
    const cfg = load();
    const paths = cfg.inputs[0]!.config.paths as string[];
    expect(paths.length).toBeGreaterThan(0);
    const mount = daemonSet.spec.template.spec.containers[0]!.volumeMounts!.find((m) => m.mountPath === '/var/log/kubernetes/audit')!;
    expect(mount.readOnly).toBe(true);
    for (const p of paths) expect(p.startsWith(`${mount.mountPath}/`), p).toBe(true);
  });

  it('redacts with the default rules before anything is spooled', () => {
    const cfg = load();
    const redact = cfg.processors.filter((p) => p.plugin.type === 'redact');
    expect(redact).toHaveLength(1);
    expect(redact[0]!.config.defaults).toBe(true);
    expect(redact[0]!.match).toEqual(['*']);
  });

  it('uses its state dir, node name, shutdown timeout and secret files consistently with the DaemonSet', () => {
    const cfg = load();
    expect(cfg.service.node_name).toBe(POD_ENV.NODE_NAME);
    expectServiceMatchesWorkload(cfg, daemonSet);
    expectFilesMounted(cfg, daemonSet);
  });

  it('is accepted by `ktrail check` as the container runs it', async () => {
    const r = await ktrailCheck(text, 'audit-agent.yaml', POD_ENV);
    // This machine is not the pod: warnings about its paths and the API are expected, nothing else.
    expect(notWarnings(r.stderr)).toEqual([]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('valid');
    // Secrets are read from files, never inline: nothing to mask but file paths.
    expect(r.stdout).not.toContain('REPLACE-ME');
  });
});

describe('deploy configs: the audit agent ConfigMap of components/k8s-metadata', () => {
  const built = build('manifests', ['manifests/components/k8s-metadata']);
  const cm = find<K8sObject & { data: Record<string, string> }>(built, 'ConfigMap', 'ktrail-audit-agent', daemonSet.metadata.namespace);
  const text = cm.data['ktrail.yaml']!;
  const load = () => loadConfigText(text, 'manifests/components/k8s-metadata/audit-agent-configmap-patch.yaml', { env: POD_ENV });

  it('the base config runs no k8s_metadata (its RBAC is not in the base)', () => {
    const base = loadConfigText(configMapText('ktrail-audit-agent'), 'manifests/audit-agent-configmap.yaml', { env: POD_ENV });
    expect(base.processors.map((p) => p.plugin.type)).not.toContain('k8s_metadata');
  });

  it('enables k8s_metadata, after redact, and is otherwise the base config', () => {
    const cfg = load();
    expect(cfg.processors.map((p) => p.plugin.type)).toEqual(['redact', 'k8s_metadata']);
    const doc = parseYaml(text) as { processors: Record<string, { type: string }> };
    const base = parseYaml(configMapText('ktrail-audit-agent')) as { processors: Record<string, unknown> };
    const name = Object.entries(doc.processors).find(([, p]) => p.type === 'k8s_metadata')![0];
    delete doc.processors[name];
    expect(doc).toEqual(base);
    expect(Object.keys(cm.data)).toEqual(['ktrail.yaml']);
  });

  it('uses its state dir, node name, shutdown timeout and secret files consistently with the DaemonSet', () => {
    const cfg = load();
    expectServiceMatchesWorkload(cfg, daemonSet);
    expectFilesMounted(cfg, daemonSet);
  });

  it('is accepted by `ktrail check` as the container runs it', async () => {
    const r = await ktrailCheck(text, 'audit-agent-k8s-metadata.yaml', POD_ENV);
    // This machine is not the pod: warnings about its paths and the API are expected, nothing else.
    expect(notWarnings(r.stderr)).toEqual([]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('valid');
  });
});

describe('deploy configs: the events collector ConfigMap', () => {
  const text = configMapText('ktrail-events-collector');
  const load = () => loadConfigText(text, 'manifests/events-collector-configmap.yaml', { env: EVENTS_ENV });

  it('passes ktrail validation with the pod environment', () => {
    const cfg = load();
    expect(cfg.inputs.map((i) => i.plugin.type)).toEqual(['k8s_events']);
    expect(cfg.outputs.length).toBeGreaterThan(0);
  });

  it('runs with leader election on the one Lease its Role allows, in its own namespace, as its pod', () => {
    const cfg = load();
    const le = cfg.inputs[0]!.config.leader_election as { enabled: boolean; lease_name: string; lease_namespace: string; identity: string };
    expect(le.enabled).toBe(true);
    expect(le.lease_namespace).toBe(EVENTS_ENV.POD_NAMESPACE);
    expect(le.identity).toBe(EVENTS_ENV.POD_NAME);
    const role = find<K8sObject & { rules: PolicyRule[] }>(objects, 'Role', 'ktrail-events-collector-lease');
    expect(role.metadata.namespace).toBe(EVENTS_ENV.POD_NAMESPACE);
    const named = role.rules.find((r) => r.resourceNames)!;
    expect(named.resourceNames).toEqual([le.lease_name]);
  });

  it('remembers emitted event versions longer than the apiserver keeps events (1h)', () => {
    const cfg = load();
    expect(cfg.inputs[0]!.config.seen_retention as number).toBeGreaterThan(3_600_000);
  });

  it('reads the Events API the ClusterRole allows', () => {
    const cfg = load();
    const api = cfg.inputs[0]!.config.api as string;
    const group = api === 'core/v1' ? '' : api.split('/')[0]!;
    const cr = find<K8sObject & { rules: PolicyRule[] }>(objects, 'ClusterRole', 'ktrail-events-collector');
    expect(cr.rules.some((r) => r.apiGroups!.includes(group) && r.resources!.includes('events') && r.verbs.includes('watch'))).toBe(true);
  });

  it('uses its state dir, node name, shutdown timeout and secret files consistently with the Deployment', () => {
    const cfg = load();
    expect(cfg.service.node_name).toBe(EVENTS_ENV.NODE_NAME);
    expectServiceMatchesWorkload(cfg, deployment);
    expectFilesMounted(cfg, deployment);
  });

  it('is accepted by `ktrail check` as the container runs it', async () => {
    const r = await ktrailCheck(text, 'events-collector.yaml', EVENTS_ENV);
    // This machine is not the pod: warnings about its paths and the API are expected, nothing else.
    expect(notWarnings(r.stderr)).toEqual([]);
    expect(r.code).toBe(0);
  });
});

describe('deploy configs: the audit webhook ConfigMap (manifests/audit-webhook)', () => {
  const text = configMapText('ktrail-webhook');
  const load = () => loadConfigText(text, 'manifests/audit-webhook/webhook-configmap.yaml', { env: WEBHOOK_ENV });

  it('passes ktrail validation with the pod environment: the webhook with mutual TLS, redacted', () => {
    const cfg = load();
    expect(cfg.inputs.map((i) => i.plugin.type)).toEqual(['audit_webhook']);
    const tls = cfg.inputs[0]!.config.tls as { enabled: boolean; client_ca_file?: string };
    expect(tls.enabled).toBe(true);
    expect(tls.client_ca_file).toBeDefined();
    expect(cfg.inputs[0]!.config.allow_unauthenticated).toBe(false);
    expect(cfg.processors.map((p) => p.plugin.type)).toContain('redact');
    expect(cfg.outputs.length).toBeGreaterThan(0);
  });

  it('ships to the index the audit agent writes, so both routes dedupe by record id', () => {
    const agentIndex = loadConfigText(configMapText('ktrail-audit-agent'), 'audit-agent', { env: POD_ENV }).outputs.find((o) => o.plugin.type === 'elasticsearch')!.config.index;
    expect(load().outputs.find((o) => o.plugin.type === 'elasticsearch')!.config.index).toBe(agentIndex);
  });

  it('uses its state dir, shutdown timeout, TLS and secret files consistently with the Deployment', () => {
    const cfg = load();
    expect(cfg.service.node_name).toBe(WEBHOOK_ENV.NODE_NAME);
    expectServiceMatchesWorkload(cfg, webhook);
    expectFilesMounted(cfg, webhook, { 'ktrail-webhook-tls': ['tls.crt', 'tls.key'], 'ktrail-webhook-client-ca': ['ca.crt'] });
  });

  it('is accepted by `ktrail check` as the container runs it', async () => {
    const r = await ktrailCheck(text, 'audit-webhook.yaml', WEBHOOK_ENV);
    expect(notWarnings(r.stderr)).toEqual([]);
    expect(r.code).toBe(0);
  });
});

describe('deploy configs: config/examples/deploy-*.yaml', () => {
  const examples = yamlFiles(path.join(REPO, 'config/examples')).filter((f) => path.basename(f).startsWith('deploy-'));

  it('has an Elasticsearch, an S3 and an HTTP variant', () => {
    const types = examples.flatMap((f) => loadConfigText(fs.readFileSync(path.join(REPO, f), 'utf8'), f, { env: POD_ENV }).outputs.map((o) => o.plugin.type));
    for (const t of ['elasticsearch', 's3', 'http']) expect(types).toContain(t);
  });

  for (const f of examples) {
    it(`${f} is valid and fits the workload it is written for`, () => {
      const w = /audit_file/.test(fs.readFileSync(path.join(REPO, f), 'utf8')) ? daemonSet : deployment;
      const cfg = loadConfigText(fs.readFileSync(path.join(REPO, f), 'utf8'), f, { env: envOf(w) });
      expectServiceMatchesWorkload(cfg, w);
      expectFilesMounted(cfg, w);
      // Examples need no variable without a default: `ktrail check` works on them anywhere.
      expect(() => loadConfigText(fs.readFileSync(path.join(REPO, f), 'utf8'), f, { env: {} })).not.toThrow();
      if (w === daemonSet && cfg.processors.some((p) => p.plugin.type === 'k8s_metadata')) {
        // The base binds the audit agent no role: this config needs components/k8s-metadata, whose RBAC covers the processor.
        const bound = (set: typeof objects) =>
          set
            .filter(({ obj }) => obj.kind === 'ClusterRoleBinding' && (obj as unknown as { subjects: Array<{ name: string }> }).subjects.some((x) => x.name === 'ktrail-audit-agent'))
            .flatMap(({ obj }) => find<K8sObject & { rules: PolicyRule[] }>(set, 'ClusterRole', (obj as unknown as { roleRef: { name: string } }).roleRef.name).rules);
        expect(bound(build('manifests'))).toEqual([]);
        const rules = bound(build('manifests', ['manifests/components/k8s-metadata']));
        for (const [group, res] of [['', 'pods'], ['', 'namespaces'], ['apps', 'replicasets']] as const) {
          expect(rules.some((r) => r.apiGroups!.includes(group) && r.resources!.includes(res) && r.verbs.includes('watch')), `${f}: ${res}`).toBe(true);
        }
      }
      if (cfg.inputs.some((i) => i.plugin.type === 'k8s_events')) {
        const le = cfg.inputs[0]!.config.leader_election as { enabled: boolean; lease_name: string };
        expect(le.enabled).toBe(true);
        const role = find<K8sObject & { rules: PolicyRule[] }>(objects, 'Role', 'ktrail-events-collector-lease');
        expect(role.rules.find((r) => r.resourceNames)!.resourceNames).toEqual([le.lease_name]);
      }
    });
  }
});
