import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.join(import.meta.dirname, '..', '..');

describe('config/examples for the outputs pass `ktrail check`', () => {
  for (const name of ['elasticsearch', 's3', 'http', 'splunk-hec', 'otlp-http']) {
    it(`${name}.yaml`, () => {
      const file = path.join(root, 'config', 'examples', `${name}.yaml`);
      // Defaults (${VAR:-...}) are used; the environment must not change the verdict.
      const env = { ...process.env };
      for (const k of ['ES_URL', 'AUDIT_BUCKET', 'SIEM_URL', 'SPLUNK_HEC_URL', 'OTLP_ENDPOINT', 'NODE_NAME']) delete env[k];
      const out = execFileSync(process.execPath, [path.join(root, 'bin', 'ktrail.js'), 'check', '-c', file], { env, encoding: 'utf8' });
      expect(out).toContain(': valid (');
      // Secrets given as files are shown as files; nothing inline leaks.
      expect(out).not.toMatch(/"(password|api_key|bearer_token|secret_access_key|token)": "(?!\*\*\*)/);
    });
  }
});
