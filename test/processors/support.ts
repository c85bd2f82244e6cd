import { Registry } from 'prom-client';
import type { ComponentContext } from '../../src/plugin.ts';
import { LogRecord } from '../../src/pipeline/record.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { ComponentTelemetry, createMetrics, type Metrics } from '../../src/telemetry/metrics.ts';

/** A processor context with its own metrics registry, so tests can read the counters. */
export function processorContext(name: string, type: string): ComponentContext & { metrics: Metrics } {
  const metrics = createMetrics(new Registry());
  return {
    name,
    log: createLogger('silent'),
    telemetry: new ComponentTelemetry(metrics, 'processor', name, type),
    metrics,
    nodeName: 'node-a',
    stateDir: '/nonexistent',
  };
}

/** Sum of a counter's series whose labels include `labels`. */
export async function counterValue(metrics: Metrics, metricName: string, labels: Record<string, string> = {}): Promise<number> {
  const json = await metrics.registry.getMetricsAsJSON();
  const m = json.find((x) => x.name === metricName);
  if (!m) return 0;
  let sum = 0;
  for (const v of m.values as Array<{ value: number; labels: Record<string, string | number> }>) {
    if (Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want)) sum += v.value;
  }
  return sum;
}

let seq = 0;
export function rawRecord(raw: string, input = 'audit'): LogRecord {
  seq++;
  return new LogRecord({ id: `r${seq}`, timeMs: 1_714_557_600_000 + seq, input, raw });
}
