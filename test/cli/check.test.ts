import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ktrail, tmpDir, writeConfig } from './check-support.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

const FILE_OUT = (dir: string) => `  out:\n    type: file\n    path: ${dir}/out/audit.ndjson`;

describe('ktrail check: kubeconfig', () => {
  it('reports unknown kubeconfig keys with their path and referenced files that do not exist, as warnings (exit 0)', async () => {
    const dir = tmpDir(dirs);
    const kubeconfig = path.join(dir, 'kubeconfig');
    fs.writeFileSync(
      kubeconfig,
      [
        'apiVersion: v1',
        'clusters:',
        '- name: c',
        '  cluster: { server: "https://api.example:6443", certificate-authority: ca.crt }',
        'users:',
        '- name: u',
        '  user: { tokenFile: /nonexistent/token, client-certificat: x }',
        'contexts:',
        '- name: c',
        '  context: { cluster: c, user: u }',
        'current-context: c',
        '',
      ].join('\n'),
    );
    const file = writeConfig(dir, {
      inputs: `  events:\n    type: k8s_events\n    kubeconfig: ${kubeconfig}\n    leader_election: { enabled: false }`,
      processors: `  meta:\n    type: k8s_metadata\n    kubeconfig: ${kubeconfig}`,
      outputs: FILE_OUT(dir),
    });
    fs.writeFileSync(path.join(dir, 'logs', 'audit.log'), '');
    const r = await ktrail(['check', '-c', file]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/valid \(2 inputs, 1 processors, 1 outputs\), 6 warnings/);
    for (const where of ['inputs.events', 'processors.meta']) {
      expect(r.stderr).toContain(`warning: ${where}: kubeconfig ${kubeconfig}: users[0].user.client-certificat: unknown key "client-certificat" (of "u"), ignored; did you mean "client-certificate"?`);
      expect(r.stderr).toContain(`warning: ${where}: kubeconfig ${kubeconfig}: clusters[0].cluster.certificate-authority: file ${path.join(dir, 'ca.crt')} does not exist`);
      expect(r.stderr).toContain(`warning: ${where}: kubeconfig ${kubeconfig}: users[0].user.tokenFile: token file /nonexistent/token does not exist`);
    }
  });
});
