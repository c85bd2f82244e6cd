import { afterEach, describe, expect, it } from 'vitest';
import { createMetrics, ComponentTelemetry } from '../../src/telemetry/metrics.ts';
import { TelemetryServer } from '../../src/telemetry/server.ts';

const servers: TelemetryServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

async function start(ready: () => boolean) {
  const metrics = createMetrics();
  const server = new TelemetryServer({
    listen: '127.0.0.1:0',
    registry: metrics.registry,
    readiness: () => ({ ready: ready(), checks: { 'output:es': ready() ? { ok: true } : { ok: false, detail: 'no progress for 301 s with data pending' } } }),
  });
  servers.push(server);
  const addr = await server.listen();
  return { metrics, base: `http://127.0.0.1:${addr.port}` };
}

describe('telemetry endpoints', () => {
  it('/metrics serves the Prometheus text format with the standard component counters', async () => {
    const { metrics, base } = await start(() => true);
    const t = new ComponentTelemetry(metrics, 'output', 'es', 'elasticsearch');
    t.sent(42, 4200);
    t.discarded('dead_letter_http_400', 3);
    metrics.spoolBytes.set(1234);
    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const body = await res.text();
    expect(body).toContain('# TYPE ktrail_component_sent_events_total counter');
    expect(body).toContain('ktrail_component_sent_events_total{component_kind="output",component_id="es",component_type="elasticsearch"} 42');
    expect(body).toContain('ktrail_component_sent_bytes_total{component_kind="output",component_id="es",component_type="elasticsearch"} 4200');
    expect(body).toContain('ktrail_component_discarded_events_total{component_kind="output",component_id="es",component_type="elasticsearch",reason="dead_letter_http_400"} 3');
    expect(body).toContain('ktrail_spool_bytes 1234');
  });

  it('/healthz is live; /readyz follows readiness with 200 or 503 and the failing checks', async () => {
    let ready = true;
    const { base } = await start(() => ready);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const ok = await fetch(`${base}/readyz`);
    expect(ok.status).toBe(200);
    ready = false;
    const notReady = await fetch(`${base}/readyz`);
    expect(notReady.status).toBe(503);
    expect(await notReady.json()).toEqual({ ready: false, checks: { 'output:es': { ok: false, detail: 'no progress for 301 s with data pending' } } });
    expect((await fetch(`${base}/nope`)).status).toBe(404);
    expect((await fetch(`${base}/metrics`, { method: 'POST' })).status).toBe(405);
  });
});
