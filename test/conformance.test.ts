import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfigText } from '../src/config/load.ts';
import { Agent } from '../src/pipeline/agent.ts';
import { allPlugins } from '../src/registry.ts';
import { createLogger } from '../src/telemetry/logger.ts';
import { createMetrics } from '../src/telemetry/metrics.ts';

const plugins = allPlugins();

/**
 * Every registered plugin goes through the same contract: a description, a
 * strict schema, a minimal config that validates, start() that returns
 * without waiting on its destination or source, stop() that is idempotent and
 * safe before start, readiness checks and output lag series. A new plugin
 * without an entry in `minimal` fails here until it has one.
 */
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-conformance-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

// Nothing listens on port 9 (discard) here: sinks and APIs are unreachable, as at a cold start.
const kubeconfig = path.join(dir, 'kubeconfig');
fs.writeFileSync(
  kubeconfig,
  `apiVersion: v1\nkind: Config\nclusters: [{ name: c, cluster: { server: "http://127.0.0.1:9" } }]\nusers: [{ name: u, user: { token: t } }]\ncontexts: [{ name: x, context: { cluster: c, user: u } }]\ncurrent-context: x\n`,
);
fs.mkdirSync(path.join(dir, 'logs'));

const minimal: Record<string, Record<string, unknown>> = {
  'input/audit_file': { paths: [`${dir}/logs/audit*.log*`] },
  'input/k8s_events': { kubeconfig },
  'input/audit_webhook': { address: '127.0.0.1', port: 0, tls: { enabled: false }, allow_unauthenticated: true },
  'processor/filter': { rules: [{ name: 'drop-watch', action: 'drop', when: { field: 'verb', equals: 'watch' } }] },
  'processor/redact': {},
  'processor/k8s_metadata': { kubeconfig },
  'output/stdout': {},
  'output/file': { path: `${dir}/out/file.ndjson` },
  'output/elasticsearch': { url: 'http://127.0.0.1:9' },
  'output/s3': { bucket: 'bucket', region: 'us-east-1', endpoint: 'http://127.0.0.1:9', force_path_style: true, access_key_id: 'k', secret_access_key: 's' },
  'output/http': { url: 'http://127.0.0.1:9/ingest' },
  'output/splunk_hec': { url: 'http://127.0.0.1:9', token: 't' },
  'output/otlp_http': { endpoint: 'http://127.0.0.1:9' },
};

describe('plugin conformance', () => {
  it('every registered plugin has a minimal config here', () => {
    expect(plugins.map((p) => `${p.kind}/${p.type}`).filter((k) => !(k in minimal))).toEqual([]);
  });

  for (const p of plugins) {
    const key = `${p.kind}/${p.type}`;
    it(`${key}: description, strict schema, minimal config`, () => {
      expect(p.description.length).toBeGreaterThan(10);
      const min = minimal[key];
      if (min === undefined) return;
      expect(p.schema.safeParse(min).success).toBe(true);
      const parsed = p.schema.safeParse({ ...min, no_such_option: 1 });
      expect(parsed.success).toBe(false);
      expect(JSON.stringify(parsed.error?.issues)).toContain('no_such_option');
    });
  }

  it('every plugin starts without waiting on its source or sink, reports readiness and lag, and stops twice', async () => {
    // YAML is a superset of JSON: build the config as data, one component per plugin.
    const section = (kind: string) =>
      Object.fromEntries(plugins.filter((p) => p.kind === kind).map((p) => [p.type.replace(/_/g, '-'), { type: p.type, ...minimal[`${kind}/${p.type}`] }]));
    const yaml = JSON.stringify({
      service: { state_dir: `${dir}/state`, shutdown_timeout: '500ms', metrics: { enabled: false } },
      inputs: section('input'),
      processors: section('processor'),
      outputs: section('output'),
    });
    const cfg = loadConfigText(yaml, 'conformance.yaml');
    expect(cfg.inputs.length + cfg.processors.length + cfg.outputs.length).toBe(plugins.length);
    const metrics = createMetrics();
    const agent = new Agent(cfg, { log: createLogger('silent'), metrics });
    const t0 = Date.now();
    await agent.start();
    expect(Date.now() - t0).toBeLessThan(15_000); // a bound against hanging on a dead endpoint, not a speed test
    const readiness = agent.readiness();
    expect(Object.keys(readiness.checks).sort()).toEqual(
      ['spool', ...cfg.inputs.map((i) => `input:${i.name}`), ...cfg.outputs.map((o) => `output:${o.name}`)].sort(),
    );
    const text = await metrics.registry.metrics();
    for (const o of cfg.outputs) expect(text).toContain(`ktrail_output_lag_records{output="${o.name}"} 0`);
    await agent.stop();
    await agent.stop();
    const never = new Agent(cfg, { log: createLogger('silent'), metrics: createMetrics() });
    await never.stop(); // safe before start
  });
});
