import { Counter, Gauge, Histogram } from 'prom-client';
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
    help: 'Batches refused (413 oversize, 429 spool full or too many requests): the apiserver retries a refused batch 5 times and then drops it, by reason.',
    labelNames: ['input', 'reason'],
    registers,
  }),
  inFlight: new Gauge({ name: 'ktrail_audit_webhook_in_flight_requests', help: 'Requests being read or committed.', labelNames: ['input'], registers }),
}));
