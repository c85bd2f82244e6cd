import { logEvents } from '../../telemetry/log-events.ts';

/** The log lines of the `splunk_hec` plugin an operator may act on (docs/logs.md lists them). */
export const { names: splunkHecEvent, catalog: splunkHecLogEvents } = logEvents('splunk_hec', {
  healthy: { level: 'info', help: 'The HEC health endpoint answered healthy at start.' },
  unhealthy: { level: 'warn', help: 'The HEC health check failed at start; records stay spooled until HEC takes them.' },
});
