import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfigText, type AgentConfig } from '../../src/config/load.ts';
import { Secret } from '../../src/config/secret.ts';
import { find, loadObjects, REPO, yamlFiles, type K8sObject, type PolicyRule, type Workload } from './manifests.ts';

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
const exampleSecret = find<K8sObject & { stringData: Record<string, string> }>(objects, 'Secret', 'ktrail-output-credentials');

/** What the downward API gives the pods (and nothing else: no other variable may be needed). */
const POD_ENV = { NODE_NAME: 'cp-1', POD_NAME: 'ktrail-events-collector-7d9f-abcde', POD_NAMESPACE: 'ktrail' };

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

/** The config's secret files are in a read-only Secret mount of the workload, under keys the example Secret has. */
function expectFilesMounted(cfg: AgentConfig, w: Workload): void {
  const pod = w.spec.template.spec;
  const mounts = pod.containers[0]!.volumeMounts!;
  const refs = filesRead(cfg.outputs.map((o) => o.config)).concat(filesRead(cfg.processors.map((p) => p.config)), filesRead(cfg.inputs.map((i) => i.config)));
  for (const { at, file } of refs) {
    const mount = mounts.find((m) => file.startsWith(`${m.mountPath}/`));
    expect(mount, `${at}: ${file} is not inside any mount of ${w.metadata.name}`).toBeDefined();
    expect(mount!.readOnly).toBe(true);
    const vol = pod.volumes!.find((v) => v.name === mount!.name)!;
    expect(vol.secret?.secretName, `${at}: ${file} must come from a Secret`).toBe(exampleSecret.metadata.name);
    expect(Object.keys(exampleSecret.stringData), `${at}: the Secret has no key ${path.basename(file)}`).toContain(path.relative(mount!.mountPath, file));
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

async function ktrailCheck(text: string, name: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, text);
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [path.join(REPO, 'bin/ktrail.js'), 'check', '-c', file], {
      env: { PATH: process.env.PATH ?? '', ...POD_ENV },
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
    const r = await ktrailCheck(text, 'audit-agent.yaml');
    // This machine is not the pod: warnings about its paths and the API are expected, nothing else.
    expect(notWarnings(r.stderr)).toEqual([]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('valid');
    // Secrets are read from files, never inline: nothing to mask but file paths.
    expect(r.stdout).not.toContain('REPLACE-ME');
  });
});

describe('deploy configs: the events collector ConfigMap', () => {
  const text = configMapText('ktrail-events-collector');
  const load = () => loadConfigText(text, 'manifests/events-collector-configmap.yaml', { env: POD_ENV });

  it('passes ktrail validation with the pod environment', () => {
    const cfg = load();
    expect(cfg.inputs.map((i) => i.plugin.type)).toEqual(['k8s_events']);
    expect(cfg.outputs.length).toBeGreaterThan(0);
  });

  it('runs with leader election on the one Lease its Role allows, in its own namespace, as its pod', () => {
    const cfg = load();
    const le = cfg.inputs[0]!.config.leader_election as { enabled: boolean; lease_name: string; lease_namespace: string; identity: string };
    expect(le.enabled).toBe(true);
    expect(le.lease_namespace).toBe(POD_ENV.POD_NAMESPACE);
    expect(le.identity).toBe(POD_ENV.POD_NAME);
    const role = find<K8sObject & { rules: PolicyRule[] }>(objects, 'Role', 'ktrail-events-collector-lease');
    expect(role.metadata.namespace).toBe(POD_ENV.POD_NAMESPACE);
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
    expect(cfg.service.node_name).toBe(POD_ENV.NODE_NAME);
    expectServiceMatchesWorkload(cfg, deployment);
    expectFilesMounted(cfg, deployment);
  });

  it('is accepted by `ktrail check` as the container runs it', async () => {
    const r = await ktrailCheck(text, 'events-collector.yaml');
    // This machine is not the pod: warnings about its paths and the API are expected, nothing else.
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
      const cfg = loadConfigText(fs.readFileSync(path.join(REPO, f), 'utf8'), f, { env: POD_ENV });
      const w = cfg.inputs.some((i) => i.plugin.type === 'audit_file') ? daemonSet : deployment;
      expectServiceMatchesWorkload(cfg, w);
      expectFilesMounted(cfg, w);
      // Examples need no variable without a default: `ktrail check` works on them anywhere.
      expect(() => loadConfigText(fs.readFileSync(path.join(REPO, f), 'utf8'), f, { env: {} })).not.toThrow();
      if (cfg.inputs.some((i) => i.plugin.type === 'k8s_events')) {
        const le = cfg.inputs[0]!.config.leader_election as { enabled: boolean; lease_name: string };
        expect(le.enabled).toBe(true);
        const role = find<K8sObject & { rules: PolicyRule[] }>(objects, 'Role', 'ktrail-events-collector-lease');
        expect(role.rules.find((r) => r.resourceNames)!.resourceNames).toEqual([le.lease_name]);
      }
    });
  }
});
