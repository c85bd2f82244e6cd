import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.ts';
import { Agent } from '../../src/pipeline/agent.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createMetrics, type Metrics } from '../../src/telemetry/metrics.ts';
import { fakeInputPlugin } from '../support/fake-input.ts';
import { Gate, gatedOutputPlugin } from '../support/gated-output.ts';
import { dropTensPipelineYaml } from './support.ts';

/**
 * The chain's and the seals' series move with what happens: entries by kind,
 * gaps by reason, entries held, manifests written and acknowledged per output,
 * and the unsealed age growing for an output that does not acknowledge (what
 * KtrailManifestSealStalled watches) until it does.
 */

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

type Labels = Partial<Record<string, string | number>>;
async function value(metric: { get(): Promise<{ values: Array<{ labels: Labels; value: number }> }> }, labels: Labels): Promise<number | undefined> {
  const v = (await metric.get()).values.find((x) => Object.entries(labels).every(([k, want]) => x.labels[k] === want));
  return v?.value;
}

async function until(what: string, cond: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('manifest metrics', () => {
  it('count entries, gaps, held entries and seals; the unsealed age grows while an output does not acknowledge, and returns to 0', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-manifest-metrics-'));
    dirs.push(dir);
    const out = path.join(dir, 'out.ndjson');
    const gate = new Gate();
    gate.set('closed');
    const yaml = `
service: { state_dir: ${dir}/state, metrics: { enabled: false } }
manifest: { enabled: true, seal_interval: 1s }
${dropTensPipelineYaml(out)}
  stuck: { type: gated, gate: g }
`;
    const cfg = loadConfigText(yaml, 'test.yaml', { extraPlugins: [fakeInputPlugin(), gatedOutputPlugin({ g: gate })] });
    const metrics: Metrics = createMetrics();
    const agent = new Agent(cfg, { log: createLogger('silent'), metrics });
    await agent.start();
    try {
      const dataLines = () => (fs.existsSync(out) ? fs.readFileSync(out, 'utf8').split('\n').filter((l) => l !== '' && !l.startsWith('{"ktrail_manifest"')).length : 0);
      await until('the file output to receive the records', async () => dataLines() === 90);

      expect(await value(metrics.manifestEntries, { input: 'src', kind: 'records' })).toBe(10);
      expect(await value(metrics.manifestEntries, { input: 'src', kind: 'gap' })).toBe(10);
      expect(await value(metrics.manifestGapEntries, { input: 'src', reason: 'filtered' })).toBe(10);
      expect(await value(metrics.manifestChainEntries, { input: 'src' })).toBe(20);
      expect(await value(metrics.manifestSealIntervalSeconds, { output: 'out' })).toBe(1);
      expect(await value(metrics.manifestSealIntervalSeconds, { output: 'stuck' })).toBe(1);

      // The file output acknowledges: its entries get sealed, its manifests delivered.
      await until('a manifest of out to be acknowledged', async () => ((await value(metrics.manifestLastAcknowledgedSeal, { output: 'out' })) ?? 0) > 0);
      await until('out to have nothing unsealed', async () => (await value(metrics.manifestOldestUnsealedSeconds, { output: 'out' })) === 0);
      const outSeals = (await value(metrics.manifestSeals, { output: 'out' })) ?? 0;
      expect(outSeals).toBeGreaterThanOrEqual(1);
      expect(await value(metrics.manifestSealsAcknowledged, { output: 'out' })).toBeGreaterThanOrEqual(1);
      expect(await value(metrics.manifestSealsAcknowledged, { output: 'out' })).toBeLessThanOrEqual(outSeals);

      // The gated output acknowledges nothing: no manifest for it, and its oldest unsealed entry ages.
      expect((await value(metrics.manifestSeals, { output: 'stuck' })) ?? 0).toBe(0);
      const age1 = (await value(metrics.manifestOldestUnsealedSeconds, { output: 'stuck' }))!;
      expect(age1).toBeGreaterThan(0);
      await until('the unsealed age of stuck to grow', async () => (await value(metrics.manifestOldestUnsealedSeconds, { output: 'stuck' }))! >= age1 + 1);

      // Once it delivers, its entries are sealed and the manifest acknowledged: the age is 0 again.
      gate.set('open');
      await until('a manifest of stuck to be acknowledged', async () => ((await value(metrics.manifestSealsAcknowledged, { output: 'stuck' })) ?? 0) >= 1);
      await until('stuck to have nothing unsealed', async () => (await value(metrics.manifestOldestUnsealedSeconds, { output: 'stuck' })) === 0);
      expect(gate.delivered.some((id) => id.startsWith('ktrail-manifest:stuck:'))).toBe(true);
      expect(await value(metrics.manifestSealFailures, {})).toBe(0);
    } finally {
      gate.set('open');
      await agent.stop();
    }
    // Scraped after shutdown closed the database: no throw, the last values stay.
    await expect(metrics.registry.metrics()).resolves.toContain('ktrail_manifest_seals_total');
  });
});
