import { Counter } from 'prom-client';
import { logEvents } from '../../telemetry/log-events.ts';
import { pluginMetrics } from '../../telemetry/metrics.ts';

/** The series only the `redact` plugin exports (docs/metrics.md lists them with the rest). */
export const redactMetrics = pluginMetrics('redact', (registers) => ({
  fields: new Counter({ name: 'ktrail_redact_fields_total', help: 'Fields removed or masked, by rule.', labelNames: ['processor', 'rule'], registers }),
}));

/** The log lines of the `redact` plugin an operator may act on (docs/logs.md lists them). */
export const { names: redactEvent, catalog: redactLogEvents } = logEvents('redact', {
  rule_failed: { level: 'error', help: 'A rule failed on a record: the record is dropped (fail closed).' },
  unparsable: { level: 'warn', help: 'A rule may apply to a record that is not valid JSON, so it cannot be redacted: dropped (or kept, if configured). Logged once.' },
});
