import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.ts';
import { elasticsearchDestination } from '../../src/manifest/destinations/elasticsearch.ts';
import { formatOutput, verifyDestination } from '../../src/manifest/verify-output.ts';
import { Agent } from '../../src/pipeline/agent.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createMetrics } from '../../src/telemetry/metrics.ts';
import { startEsBulkServer } from '../helpers/es-bulk-server.ts';
import { fakeInputPlugin } from '../support/fake-input.ts';

/**
 * A record the destination refuses for good is dead-lettered by the output;
 * the manifest that seals its batch names it, and verify reports it as known
 * instead of missing. Without that entry in the manifest it would be missing.
 */

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('output dead letters in the manifests', () => {
  it('a document Elasticsearch refuses (400) is named in the manifest and reported as known, not missing', async () => {
    const es = await startEsBulkServer();
    cleanups.push(() => es.close());
    es.failItems({ ids: ['rec-7'], status: 400 });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-manifest-dl-'));
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const yaml = `
service: { state_dir: ${dir}/state, metrics: { enabled: false } }
manifest: { enabled: true }
inputs:
  src: { type: fake, total: 30, batch: 10 }
outputs:
  es: { type: elasticsearch, url: "${es.url}", batch: { flush_interval: 20ms } }
`;
    const agent = new Agent(loadConfigText(yaml, 'test.yaml', { extraPlugins: [fakeInputPlugin()] }), { log: createLogger('silent'), metrics: createMetrics() });
    await agent.start();
    const end = Date.now() + 15_000;
    while (es.allDocs().length < 29 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    await agent.stop();
    expect(es.allDocs().some((d) => d.id === 'rec-7')).toBe(false);

    const report = await verifyDestination('es', await elasticsearchDestination({ url: es.url, manifest_index: 'ktrail-manifests' }, 'es'), {});
    expect(report.problems).toEqual([]);
    expect(report.ranges).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.deadLettered).toBe(1);
    expect(formatOutput(report, {})).toContain('1 record(s) the output dead-lettered are not at the destination');
    expect(report.streams[0]).toMatchObject({ records: 30, verified: 29 });
  });
});
