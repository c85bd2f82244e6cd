import { Counter } from 'prom-client';
import { logEvents } from '../../telemetry/log-events.ts';
import { pluginMetrics } from '../../telemetry/metrics.ts';

/** The series only the `otlp_http` plugin exports (docs/metrics.md lists them with the rest). */
export const otlpHttpMetrics = pluginMetrics('otlp_http', (registers) => ({
  rejected: new Counter({
    name: 'ktrail_otlp_http_rejected_log_records_total',
    help: 'Log records an OTLP receiver reported rejected (partial_success.rejected_log_records), by what was done: dead_letter (the request\'s records dead-lettered) or count (on_partial_success: count).',
    labelNames: ['output', 'action'],
    registers,
  }),
}));

/** The log lines of the `otlp_http` plugin an operator may act on (docs/logs.md lists them). */
export const { names: otlpHttpEvent, catalog: otlpHttpLogEvents } = logEvents('otlp_http', {
  partial_success: {
    level: 'warn',
    help: 'The receiver rejected some or all log records of a request (partial success) and says why; they are dead-lettered, or only counted with on_partial_success: count. At most once a minute.',
  },
  warning: { level: 'warn', help: 'The receiver accepted every log record but sent a warning (partial_success with 0 rejected). At most once a minute.' },
});
