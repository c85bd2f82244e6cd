import { Counter, Gauge, Histogram } from 'prom-client';
import { logEvents } from '../../telemetry/log-events.ts';
import { pluginMetrics } from '../../telemetry/metrics.ts';

/** The series only the `audit_webhook` plugin exports (docs/metrics.md lists them with the rest). */
export const auditWebhookMetrics = pluginMetrics('audit_webhook', (registers) => ({
  requests: new Counter({ name: 'ktrail_audit_webhook_requests_total', help: 'Requests answered, by HTTP status code (401/403: authentication failed; 413: body over max_body_bytes; 429: refused).', labelNames: ['input', 'code'], registers }),
  events: new Counter({ name: 'ktrail_audit_webhook_events_total', help: 'Audit events received in EventList bodies (committed or dead-lettered).', labelNames: ['input'], registers }),
  badRequests: new Counter({ name: 'ktrail_audit_webhook_bad_requests_total', help: 'Bodies or events that could not be taken as audit events, by reason (not_json, not_event_list, invalid_event, oversize).', labelNames: ['input', 'reason'], registers }),
  batchEvents: new Histogram({ name: 'ktrail_audit_webhook_batch_events', help: 'Events in one EventList body.', labelNames: ['input'], buckets: [1, 10, 50, 100, 200, 400, 1000, 5000], registers }),
  commitSeconds: new Histogram({ name: 'ktrail_audit_webhook_commit_duration_seconds', help: 'Time from the end of the request body to the spool commit (the 2xx answer).', labelNames: ['input'], buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers }),
  batchesAtRisk: new Counter({
    name: 'ktrail_audit_webhook_batches_at_risk_total',
    help: 'Batches refused, by reason (413 oversize; 429 spool_full: even the webhook reserve is used up, too_many_requests; 503 stopping, commit_timeout): the apiserver retries a refused batch 5 times and then drops it.',
    labelNames: ['input', 'reason'],
    registers,
  }),
  inFlight: new Gauge({ name: 'ktrail_audit_webhook_in_flight_requests', help: 'Requests being read or committed.', labelNames: ['input'], registers }),
}));

/** The log lines of the `audit_webhook` plugin an operator may act on (docs/logs.md lists them). */
export const { names: auditWebhookEvent, catalog: auditWebhookLogEvents } = logEvents('audit_webhook', {
  listening: { level: 'info', help: 'The receiver is listening (address, TLS, mTLS, token).' },
  stopped: { level: 'info', help: 'The receiver stopped after draining in-flight requests.' },
  server_error: { level: 'error', help: 'The HTTPS server failed (e.g. the port is taken).' },
  reloaded: { level: 'info', help: 'The serving certificate, client CA or bearer token changed on disk and was re-read.' },
  reload_failed: { level: 'warn', help: 'Changed certificate or token files cannot be loaded; the previous ones stay in use.' },
  auth_failed: { level: 'warn', help: 'A request was refused 401/403 (wrong or missing token, client certificate rejected). Rate-limited.' },
  request_failed: { level: 'warn', help: 'A request failed while being read or committed. Rate-limited.' },
  oversize: { level: 'warn', help: 'A body over `max_body_bytes` was refused (413): the apiserver drops that batch after its retries. Rate-limited.' },
  refused: { level: 'warn', help: 'A batch was refused (429): the apiserver retries it, 5 attempts in all, then drops it. Rate-limited.' },
  bad_body: { level: 'warn', help: 'A body that is not an EventList (or not JSON) was stored whole as a dead letter and answered 2xx. Rate-limited.' },
  invalid_events: { level: 'warn', help: 'Events without auditID/stage were dead-lettered; the rest of the body was accepted. Rate-limited.' },
});
