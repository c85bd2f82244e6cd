import { Counter, Gauge } from 'prom-client';
import { logEvents } from '../../telemetry/log-events.ts';
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

/** The log lines of the `k8s_events` plugin an operator may act on (docs/logs.md lists them). */
export const { names: k8sEventsEvent, catalog: k8sEventsLogEvents } = logEvents('k8s_events', {
  starting: { level: 'info', help: 'The input starts: API server, mode, namespaces, leader election.' },
  kubeconfig_warning: { level: 'warn', help: 'Something in the kubeconfig is ignored or unusual (e.g. kubectl-only keys).' },
  leading: { level: 'info', help: 'This instance holds the Lease and runs the collector (with the cursors adopted from the Lease mirror).' },
  failed: { level: 'error', help: 'The collector failed and is restarted with backoff.' },
  final_commit_failed: { level: 'error', help: 'The commit at shutdown failed; the next leader reads those events again.' },
  leadership_lost: { level: 'warn', help: 'The Lease was lost before a commit; the next leader reads those events again (same ids).' },
  handover_timeout: { level: 'warn', help: '`handover_wait` ran out with records not yet acknowledged; the next leader re-emits them (same ids).' },
  handover: { level: 'info', help: 'Everything committed is acknowledged; the Lease is handed over.' },
  ended_with_error: { level: 'error', help: 'The input ended with an error.' },
  relist: { level: 'info', help: 'The watch answered 410 Gone, or a list continue token expired: listing again.' },
  watch_ended: { level: 'warn', help: 'A watch or list failed; resuming with backoff. Rate-limited.' },
  gap: { level: 'warn', help: 'Possible gap: every Event listed is newer than the cursor, so versions written in between may have expired (Event TTL) before they could be read.' },
});
