import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.join(import.meta.dirname, '..', '..', '..');

describe('config/examples/events-*.yaml pass `ktrail check`', () => {
  for (const name of ['events-watch', 'events-poll-warnings', 'events-leader']) {
    it(`${name}.yaml`, () => {
      const env = { ...process.env };
      for (const k of ['KTRAIL_STATE_DIR', 'ES_URL', 'KUBECONFIG']) delete env[k];
      const out = execFileSync(process.execPath, [path.join(root, 'bin', 'ktrail.js'), 'check', '-c', path.join(root, 'config', 'examples', `${name}.yaml`)], {
        env,
        encoding: 'utf8',
      });
      expect(out).toContain(': valid (');
      expect(out).toContain('"type": "k8s_events"');
    });
  }
});
