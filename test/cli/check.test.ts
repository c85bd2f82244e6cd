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

describe('ktrail check: warnings about this machine', () => {
  it('lists the files each input path covers (backups included), and warns about a path that matches nothing', async () => {
    const dir = tmpDir(dirs);
    const file = writeConfig(dir, {
      inputs: `  typo:\n    type: audit_file\n    paths: ["${dir}/logz/audit*.log", "${dir}/logs/kube-audit*.log"]`,
      outputs: FILE_OUT(dir),
    });
    for (const n of ['audit.log', 'audit-2024-05-01T10-00-00.000.log', 'audit-2024-05-01T09-00-00.000.log.gz', 'other.txt']) fs.writeFileSync(path.join(dir, 'logs', n), '');
    const r = await ktrail(['check', '-c', file]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(
      `inputs.audit: paths[0] "${dir}/logs/audit*.log*" covers 3 files in ${dir}/logs: audit-2024-05-01T09-00-00.000.log.gz, audit-2024-05-01T10-00-00.000.log, audit.log`,
    );
    expect(r.stderr).toContain(`warning: inputs.typo: paths[0] "${dir}/logz/audit*.log" matches no file: directory ${dir}/logz does not exist`);
    expect(r.stderr).toContain(`warning: inputs.typo: paths[1] "${dir}/logs/kube-audit*.log" matches no file (`);
    expect(r.stdout).toMatch(/, 2 warnings \(on stderr\)/);
    // With --json, stdout is the resolved config alone; the covered files are notes on stderr.
    const j = await ktrail(['check', '-c', file, '--json']);
    expect(j.status).toBe(0);
    expect(JSON.parse(j.stdout)).toHaveProperty('inputs.audit.type', 'audit_file');
    expect(j.stderr).toContain(`note: inputs.audit: paths[0] "${dir}/logs/audit*.log*" covers 3 files in ${dir}/logs:`);
  });

  it('warns when an output path or the state directory cannot be written (a parent that is a file fails for root too)', async () => {
    const dir = tmpDir(dirs);
    fs.writeFileSync(path.join(dir, 'logs-not-a-dir'), '');
    const blocker = path.join(dir, 'logs-not-a-dir');
    const file = writeConfig(dir, {
      stateDir: `${blocker}/state`,
      outputs: `  out:\n    type: file\n    path: ${blocker}/out/audit.ndjson\n  ok:\n    type: file\n    path: ${dir}/new/dir/audit.ndjson`,
    });
    fs.writeFileSync(path.join(dir, 'logs', 'audit.log'), '');
    const r = await ktrail(['check', '-c', file]);
    expect(r.status).toBe(0);
    expect(r.stderr).toContain(`warning: service.state_dir: the spool and checkpoints cannot be written: ${blocker} is not a directory, so ${blocker}/state cannot be created`);
    expect(r.stderr).toContain(`warning: outputs.out: path: the output cannot write its files: ${blocker} is not a directory, so ${blocker}/out cannot be created`);
    expect(r.stderr).not.toContain('outputs.ok');
    expect(r.stderr.trim().split('\n')).toHaveLength(2);
  });

  it('a read-only directory is reported unless this user may write it anyway (root)', async () => {
    const dir = tmpDir(dirs);
    const ro = path.join(dir, 'ro');
    fs.mkdirSync(ro);
    fs.chmodSync(ro, 0o555);
    const file = writeConfig(dir, { outputs: `  out:\n    type: file\n    path: ${ro}/audit.ndjson` });
    fs.writeFileSync(path.join(dir, 'logs', 'audit.log'), '');
    let writable = true;
    let r;
    try {
      r = await ktrail(['check', '-c', file]);
      try {
        fs.accessSync(ro, fs.constants.W_OK);
      } catch {
        writable = false;
      }
    } finally {
      fs.chmodSync(ro, 0o755);
    }
    expect(r.status).toBe(0);
    // The check asks the kernel the same question (access(2)), so both agree for any user.
    expect(r.stderr.includes(`${ro} is not writable by this user`)).toBe(!writable);
  });

  it('reports several type errors at once, each naming the expected type, what was given and a fix', async () => {
    const dir = tmpDir(dirs);
    const file = path.join(dir, 'bad.yaml');
    fs.writeFileSync(
      file,
      [
        'service:',
        '  progress: "yes"',
        'inputs:',
        '  audit:',
        '    type: audit_file',
        '    paths: /var/log/audit.log',
        'outputs:',
        '  es:',
        '    type: elasticsearch',
        '    url: https://es:9200',
        '    auth: { username: elastic, password: [x] }',
        '    tls: yes',
        '    batch: { max_records: 1.5 }',
        '  s3:',
        '    type: s3',
        '    bucket: audit',
        '    access_key_id: { file: 3 }',
        '    secret_access_key: { path: /x }',
        '',
      ].join('\n'),
    );
    const r = await ktrail(['check', '-c', file]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('7 problems found');
    const expectations = [
      ['service.progress (line 2): expected true or false, got "yes"', 'fix: write true or false, without quotes'],
      ['inputs.audit.paths (line 6): expected a list, got "/var/log/audit.log"', 'fix: write a list, e.g. ["/var/log/audit.log"]'],
      [
        'outputs.es.auth.password (line 11): expected a string or a mapping { file }, got a list',
        'fix: write the value as a string (e.g. "${MY_SECRET}", from the environment) or read it from a file: { file: /path/to/secret }',
      ],
      ['outputs.es.tls (line 12): expected a mapping, got "yes"', 'fix: write a mapping with these keys indented below it: ca_file, cert_file, key_file, server_name, insecure_skip_verify'],
      ['outputs.es.batch.max_records (line 13): expected a whole number, got number 1.5', 'fix: write a whole number, e.g. 2'],
      ['outputs.s3.access_key_id (line 17): file: expected a string, got number 3', 'fix: quote it: "3"'],
      ['outputs.s3.secret_access_key (line 18): unknown key "path"; file: required key is missing (expected a string)', 'fix: remove it; known keys here: file'],
    ];
    for (const [message, fix] of expectations) expect(r.stderr).toContain(`${message}\n    ${fix}`);
    expect(r.stderr).not.toContain('Invalid input');
  });
});
