import { afterEach, describe, expect, it } from 'vitest';
import { startEsBulkServer, type EsBulkServer } from '../helpers/es-bulk-server.ts';
import { counterValue, HttpSink, makeAgent, pendingIds, tempDir, until } from './support/harness.ts';

/**
 * Two outputs on one input: a broken sink must not slow the healthy one (its
 * own backlog grows, bounded by the spool), and catches up with nothing lost
 * once it recovers. A full spool pauses the input instead of dropping.
 */
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function sinks(): Promise<{ es: EsBulkServer; web: HttpSink; broken: { on: boolean } }> {
  const es = await startEsBulkServer();
  cleanups.push(() => es.close());
  const web = await new HttpSink().listen();
  cleanups.push(() => web.close());
  const broken = { on: true };
  web.reply = () => (broken.on ? { status: 503, headers: { 'retry-after': '0' } } : { status: 200 });
  return { es, web, broken };
}

function yaml(dir: string, es: EsBulkServer, web: HttpSink, input: string, spool = '') {
  return `
service: { state_dir: ${dir}, shutdown_timeout: 5s, metrics: { enabled: false } }
${spool}
inputs: { gen: { type: fake, ${input} } }
outputs:
  es: { type: elasticsearch, url: "${es.url}", index: audit, batch: { max_records: 200, flush_interval: 20ms }, retry: { initial_backoff: 5ms, max_backoff: 50ms } }
  web: { type: http, url: "${web.url}/", batch: { max_records: 200, flush_interval: 20ms }, retry: { initial_backoff: 5ms, max_backoff: 50ms } }`;
}

function seqsAccepted(web: HttpSink): number[] {
  return web.acceptedLines().map((l) => (JSON.parse(l) as { seq: number }).seq);
}

describe('output isolation', () => {
  it('the healthy output delivers everything with ~zero lag while the other returns 503; the broken one catches up after recovery', async () => {
    const { es, web, broken } = await sinks();
    const dir = tempDir(cleanups);
    const { agent, metrics } = makeAgent(yaml(dir, es, web, 'total: 2000, batch: 50'));
    cleanups.push(() => agent.stop());
    await agent.start();

    await until(() => es.docCount('audit') === 2000, 20_000, 'elasticsearch has every record');
    await until(() => pendingIds(dir, 'es').length === 0, 5_000, 'elasticsearch lag is zero');
    // The broken output has everything still pending, and has been trying.
    expect(new Set(pendingIds(dir, 'web')).size).toBe(2000);
    expect(web.requests.length).toBeGreaterThan(3);
    expect(web.accepted.size).toBe(0);
    await metrics.registry.metrics(); // refresh the lag gauges as a scrape would
    expect(await counterValue(metrics, 'ktrail_output_lag_records', { output: 'es' })).toBe(0);
    expect(await counterValue(metrics, 'ktrail_output_lag_records', { output: 'web' })).toBe(2000);

    broken.on = false;
    await until(() => seqsAccepted(web).length === 2000, 20_000, 'http catches up');
    await until(() => agent.spool.records === 0, 5_000, 'spool drained');
    expect(new Set(seqsAccepted(web)).size).toBe(2000);
    expect(es.docCount('audit')).toBe(2000);
    expect(await counterValue(metrics, 'ktrail_component_discarded_events_total')).toBe(0);
  });

  it('with a small spool the input pauses (when_full: block) instead of dropping; after recovery both sinks get everything', async () => {
    const { es, web, broken } = await sinks();
    const dir = tempDir(cleanups);
    const { agent, metrics } = makeAgent(
      yaml(dir, es, web, 'total: 1500, batch: 50, bytes_per_record: 100', 'spool: { max_bytes: 32KiB, when_full: block }'),
    );
    cleanups.push(() => agent.stop());
    await agent.start();

    const committed = () => counterValue(metrics, 'ktrail_component_sent_events_total', { component_kind: 'input' });
    await until(async () => (await counterValue(metrics, 'ktrail_spool_full_waits_total')) > 0, 20_000, 'input blocked on the full spool');
    const blockedAt = await committed();
    await new Promise((r) => setTimeout(r, 300));
    // Paused: no progress while the spool is full, nothing dropped, the spool stays bounded.
    expect(await committed()).toBe(blockedAt);
    expect(blockedAt).toBeLessThan(1500);
    expect(agent.spool.bytes).toBeLessThanOrEqual(32 * 1024 + 16 * 1024);
    // Elasticsearch has all that entered the spool; only the broken sink holds the spool.
    await until(() => es.docCount('audit') === blockedAt, 5_000, 'elasticsearch caught up with the input');
    expect(pendingIds(dir, 'es')).toEqual([]);

    broken.on = false;
    await until(() => seqsAccepted(web).length === 1500 && es.docCount('audit') === 1500, 30_000, 'both sinks complete');
    await until(() => agent.spool.records === 0);
    expect(new Set(seqsAccepted(web)).size).toBe(1500);
    expect(await committed()).toBe(1500);
    expect(await counterValue(metrics, 'ktrail_component_discarded_events_total')).toBe(0);
  });
});
