import { Counter, Gauge } from 'prom-client';
import { pluginMetrics } from '../../telemetry/metrics.ts';

/** The series only the `k8s_events` plugin exports (docs/metrics.md lists them with the rest). */
export const k8sEventsMetrics = pluginMetrics('k8s_events', (registers) => ({
  received: new Counter({ name: 'ktrail_k8s_events_received_total', help: 'Event objects received from list and watch.', labelNames: ['input', 'source'], registers }),
  emitted: new Counter({ name: 'ktrail_k8s_events_emitted_total', help: 'Event versions emitted as records.', labelNames: ['input'], registers }),
  deduplicated: new Counter({ name: 'ktrail_k8s_events_deduplicated_total', help: 'Event versions skipped because they were emitted before.', labelNames: ['input'], registers }),
  watchRestarts: new Counter({ name: 'ktrail_k8s_events_watch_restarts_total', help: 'Watch streams restarted, by reason (timeout, closed, error, gone).', labelNames: ['input', 'reason'], registers }),
  relists: new Counter({ name: 'ktrail_k8s_events_relists_total', help: 'Full lists performed (start, 410 Gone, poll).', labelNames: ['input', 'reason'], registers }),
  gone: new Counter({ name: 'ktrail_k8s_events_gone_total', help: '410 Gone / Expired answers received.', labelNames: ['input'], registers }),
  gaps: new Counter({ name: 'ktrail_k8s_events_gaps_total', help: 'Possible gaps: event versions may have expired before they could be read.', labelNames: ['input', 'reason'], registers }),
  leader: new Gauge({ name: 'ktrail_k8s_events_leader', help: '1 when this instance holds the lease and runs the input.', labelNames: ['input'], registers }),
  cursorAge: new Gauge({ name: 'ktrail_k8s_events_cursor_age_seconds', help: 'Seconds since the stored resourceVersion cursor last advanced.', labelNames: ['input'], registers }),
  seenSetSize: new Gauge({ name: 'ktrail_k8s_events_seen_set_size', help: 'Entries (uid to last emitted resourceVersion) in the dedup seen-set.', labelNames: ['input'], registers }),
}));
