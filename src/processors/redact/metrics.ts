import { Counter } from 'prom-client';
import { pluginMetrics } from '../../telemetry/metrics.ts';

/** The series only the `redact` plugin exports (docs/metrics.md lists them with the rest). */
export const redactMetrics = pluginMetrics('redact', (registers) => ({
  fields: new Counter({ name: 'ktrail_redact_fields_total', help: 'Fields removed or masked, by rule.', labelNames: ['processor', 'rule'], registers }),
}));
