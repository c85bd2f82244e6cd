import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * Plugins load by the types the config names (issue #12): validating a
 * file → http config must not load the s3 output, the Kubernetes plugins or
 * their libraries. A child process records every module it loads.
 */

const ROOT = path.join(import.meta.dirname, '..', '..');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-lazy-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function modulesLoadedBy(configYaml: string): string[] {
  const cfg = path.join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  fs.writeFileSync(cfg, configYaml);
  const script = `
    import { registerHooks } from 'node:module';
    const seen = [];
    registerHooks({ load(url, ctx, next) { seen.push(url); return next(url, ctx); } });
    const { loadConfigFile } = await import(${JSON.stringify(path.join(ROOT, 'src', 'config', 'load.ts'))});
    loadConfigFile(${JSON.stringify(cfg)});
    process.stdout.write(JSON.stringify(seen));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', cwd: ROOT });
  expect(r.stderr).toBe('');
  return JSON.parse(r.stdout) as string[];
}

const base = (outputs: string, more = '') => `
service: { state_dir: ${dir}/state }
inputs:
  audit: { type: audit_file, paths: [${dir}/audit*.log*] }
${more}
outputs:
${outputs}
`;

const HEAVY = /@kubernetes\/client-node|@smithy|@aws-sdk|@aws-crypto|\/outputs\/s3\/|\/inputs\/k8s-events\/|\/processors\/k8s-metadata\/|\/outputs\/elasticsearch\//;

describe('plugins load by the types a config names', () => {
  it('a file → http config loads neither the s3 output, the Kubernetes code, nor their libraries', () => {
    const loaded = modulesLoadedBy(base('  sink: { type: http, url: "http://127.0.0.1:1/x" }\n  local: { type: file, path: ' + dir + '/out.ndjson }'));
    expect(loaded.some((u) => u.includes('/outputs/http/'))).toBe(true);
    expect(loaded.some((u) => u.includes('/inputs/audit-file/'))).toBe(true);
    expect(loaded.filter((u) => HEAVY.test(u))).toEqual([]);
  });

  it('an s3 output and a k8s_metadata processor load their own code (the check above can fail)', () => {
    const loaded = modulesLoadedBy(
      base('  archive: { type: s3, bucket: audit-archive, region: us-east-1 }', 'processors:\n  meta: { type: k8s_metadata, kubeconfig: /nonexistent }'),
    );
    expect(loaded.some((u) => u.includes('/outputs/s3/'))).toBe(true);
    expect(loaded.some((u) => u.includes('/processors/k8s-metadata/'))).toBe(true);
  });
});
