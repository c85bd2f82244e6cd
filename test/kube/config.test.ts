import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadKubeConnection } from '../../src/kube/config.ts';

const dirs: string[] = [];
const savedEnv = { ...process.env };
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  for (const k of ['KUBECONFIG', 'HOME', 'KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT']) {
    if (savedEnv[k] === undefined) delete process.env[k];
    else process.env[k] = savedEnv[k];
  }
});

function dir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-kubeconfig-'));
  dirs.push(d);
  return d;
}

const CA = Buffer.from('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');

function kubeconfig(d: string, body: string): string {
  const file = path.join(d, 'config');
  fs.writeFileSync(file, body);
  return file;
}

describe('loadKubeConnection', () => {
  it('reads a kubeconfig: server, CA, inline token, context namespace', () => {
    const d = dir();
    const file = kubeconfig(
      d,
      `apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster: { server: "https://api.example:6443/", certificate-authority-data: ${CA.toString('base64')} }
users:
- name: me
  user: { token: abc }
contexts:
- name: prod
  context: { cluster: prod, user: me, namespace: ops }
current-context: prod
`,
    );
    const c = loadKubeConnection({ kubeconfig: file });
    expect(c).toMatchObject({ server: 'https://api.example:6443', namespace: 'ops', source: 'kubeconfig', auth: { kind: 'token', token: 'abc' } });
    expect(c.tls.ca?.equals(CA)).toBe(true);
  });

  it('keeps a token-file re-readable and honours context and insecure-skip-tls-verify', () => {
    const d = dir();
    fs.writeFileSync(path.join(d, 'token'), 'first\n');
    const file = kubeconfig(
      d,
      `apiVersion: v1
kind: Config
clusters:
- name: a
  cluster: { server: "https://a:6443" }
- name: b
  cluster: { server: "https://b:6443", insecure-skip-tls-verify: true, tls-server-name: api.b }
users:
- name: ua
  user: { token: x }
- name: ub
  user: { token-file: ${path.join(d, 'token')} }
contexts:
- name: a
  context: { cluster: a, user: ua }
- name: b
  context: { cluster: b, user: ub }
current-context: a
`,
    );
    const c = loadKubeConnection({ kubeconfig: file, context: 'b' });
    expect(c.server).toBe('https://b:6443');
    expect(c.tls).toMatchObject({ rejectUnauthorized: false, servername: 'api.b' });
    expect(c.auth.kind).toBe('token-file');
    if (c.auth.kind !== 'token-file') return;
    expect(c.auth.file.get()).toBe('first');
    fs.writeFileSync(path.join(d, 'token'), 'second-token\n');
    expect(c.auth.file.get()).toBe('second-token');
    expect(() => loadKubeConnection({ kubeconfig: file, context: 'nope' })).toThrow(/no context "nope"/);
  });

  it('uses $KUBECONFIG when no file is given, and fails with a clear message when nothing is configured', () => {
    const d = dir();
    const file = kubeconfig(
      d,
      'apiVersion: v1\nkind: Config\nclusters: [{ name: c, cluster: { server: "http://127.0.0.1:1" } }]\nusers: [{ name: u, user: { username: admin, password: pw } }]\ncontexts: [{ name: c, context: { cluster: c, user: u } }]\ncurrent-context: c\n',
    );
    delete process.env.KUBERNETES_SERVICE_HOST;
    process.env.KUBECONFIG = file;
    expect(loadKubeConnection().auth).toEqual({ kind: 'basic', username: 'admin', password: 'pw' });
    delete process.env.KUBECONFIG;
    process.env.HOME = dir();
    expect(() => loadKubeConnection()).toThrow(/no Kubernetes API configuration found/);
  });

  it('in a pod: the service account token (re-read), its CA and namespace, the service host', () => {
    const sa = dir();
    fs.writeFileSync(path.join(sa, 'token'), 'sa-token-1');
    fs.writeFileSync(path.join(sa, 'ca.crt'), CA);
    fs.writeFileSync(path.join(sa, 'namespace'), 'ktrail\n');
    process.env.KUBERNETES_SERVICE_HOST = 'fd00::1';
    process.env.KUBERNETES_SERVICE_PORT = '443';
    const c = loadKubeConnection({ serviceAccountDir: sa });
    expect(c).toMatchObject({ server: 'https://[fd00::1]:443', namespace: 'ktrail', source: 'in-cluster' });
    expect(c.tls.ca?.equals(CA)).toBe(true);
    expect(c.auth.kind === 'token-file' && c.auth.file.get()).toBe('sa-token-1');
    fs.writeFileSync(path.join(sa, 'token'), 'sa-token-rotated');
    expect(c.auth.kind === 'token-file' && c.auth.file.get()).toBe('sa-token-rotated');
  });
});
