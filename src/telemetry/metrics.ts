import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Every metric ktrail exports is declared here, once. Components never import
 * prom-client: they get a `ComponentTelemetry` (the standard per-component
 * counters) and this `Metrics` object for their own series from their context.
 *
 * Conventions: `ktrail_` prefix; counters end in `_total`; units in names
 * (`_bytes`, `_seconds`); `reason` labels name why something was not delivered.
 * docs/metrics.md lists every series here; a test checks the two agree.
 */
export function createMetrics(registry: Registry = new Registry()) {
  const r = [registry];
  const component = ['component_kind', 'component_id', 'component_type'] as const;
  const output = ['output'] as const;
  const m = {
    registry,
    buildInfo: new Gauge({ name: 'ktrail_build_info', help: 'Always 1; labels carry the ktrail and Node.js versions.', labelNames: ['version', 'nodejs'], registers: r }),

    // Standard per-component set (inputs, processors, outputs).
    receivedEvents: new Counter({ name: 'ktrail_component_received_events_total', help: 'Records a component accepted.', labelNames: component, registers: r }),
    receivedBytes: new Counter({ name: 'ktrail_component_received_bytes_total', help: 'Bytes a component accepted (raw input bytes for inputs, encoded bytes for outputs).', labelNames: component, registers: r }),
    sentEvents: new Counter({ name: 'ktrail_component_sent_events_total', help: 'Records a component passed on (inputs: committed to the spool; outputs: acknowledged by the destination).', labelNames: component, registers: r }),
    sentBytes: new Counter({ name: 'ktrail_component_sent_bytes_total', help: 'Encoded bytes a component passed on.', labelNames: component, registers: r }),
    errors: new Counter({ name: 'ktrail_component_errors_total', help: 'Errors a component met, by reason. Errors may be retried and do not by themselves mean loss.', labelNames: [...component, 'reason'], registers: r }),
    discardedEvents: new Counter({ name: 'ktrail_component_discarded_events_total', help: 'Records a component deliberately did not pass on, by reason (filter rule, drop_newest, dead letter).', labelNames: [...component, 'reason'], registers: r }),

    // Spool.
    spoolBytes: new Gauge({ name: 'ktrail_spool_bytes', help: 'Encoded bytes of records held in the spool.', registers: r }),
    spoolMaxBytes: new Gauge({ name: 'ktrail_spool_max_bytes', help: 'Configured spool.max_bytes.', registers: r }),
    spoolBatches: new Gauge({ name: 'ktrail_spool_batches', help: 'Batches held in the spool.', registers: r }),
    spoolRecords: new Gauge({ name: 'ktrail_spool_records', help: 'Records held in the spool.', registers: r }),
    spoolCommits: new Counter({ name: 'ktrail_spool_commits_total', help: 'Input transactions committed (records plus checkpoint).', labelNames: ['input'], registers: r }),
    spoolCommitSeconds: new Histogram({ name: 'ktrail_spool_commit_duration_seconds', help: 'Time to commit one input transaction.', buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1], registers: r }),
    spoolFullWaits: new Counter({ name: 'ktrail_spool_full_waits_total', help: 'Times an input was paused because the spool was full (when_full: block).', labelNames: ['input'], registers: r }),
    spoolBlockedSeconds: new Counter({ name: 'ktrail_spool_blocked_seconds_total', help: 'Seconds inputs spent paused on a full spool.', labelNames: ['input'], registers: r }),
    deadLetters: new Counter({ name: 'ktrail_dead_letters_total', help: 'Records written to the dead-letter table, by component and reason code.', labelNames: ['component_id', 'reason'], registers: r }),
    deadLetterRows: new Gauge({ name: 'ktrail_dead_letter_rows', help: 'Rows currently in the dead-letter table.', registers: r }),
    deadLetterBytes: new Gauge({ name: 'ktrail_dead_letter_bytes', help: 'Bytes currently in the dead-letter table (bounded by spool.dead_letter_max_bytes).', registers: r }),
    deadLettersWithheld: new Counter({
      name: 'ktrail_dead_letters_withheld_total',
      help: 'Dead letters stored as metadata only (source, length, sha256), their bytes withheld because a redact rule could apply to content that could not be parsed; by component and reason.',
      labelNames: ['component_id', 'reason'],
      registers: r,
    }),
    deadLettersPruned: new Counter({ name: 'ktrail_dead_letters_pruned_total', help: 'Oldest dead-letter rows deleted to keep the table within spool.dead_letter_max_bytes.', registers: r }),
    spoolOrphanedBatches: new Gauge({ name: 'ktrail_spool_orphaned_batches', help: 'Batches still owed to an output that is no longer in the config (kept until it returns, or released with spool.release_removed_outputs).', labelNames: ['output'], registers: r }),

    // Outputs (beyond the standard set).
    outputLagRecords: new Gauge({ name: 'ktrail_output_lag_records', help: 'Records spooled for an output and not yet acknowledged by it.', labelNames: output, registers: r }),
    outputLagBytes: new Gauge({ name: 'ktrail_output_lag_bytes', help: 'Encoded bytes spooled for an output and not yet acknowledged by it.', labelNames: output, registers: r }),
    outputOldestPendingSeconds: new Gauge({ name: 'ktrail_output_oldest_pending_age_seconds', help: 'Age of the oldest batch an output has not acknowledged (0 when caught up).', labelNames: output, registers: r }),
    outputRequests: new Counter({ name: 'ktrail_output_requests_total', help: 'Send attempts by outcome (ok, partial, retryable, permanent, too_large, timeout).', labelNames: [...output, 'outcome'], registers: r }),
    outputRetries: new Counter({ name: 'ktrail_output_retries_total', help: 'Retries scheduled by the delivery runner, by reason.', labelNames: [...output, 'reason'], registers: r }),
    outputRequestSeconds: new Histogram({ name: 'ktrail_output_request_duration_seconds', help: 'Duration of one send attempt.', labelNames: [...output, 'outcome'], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: r }),
    outputLastSuccess: new Gauge({ name: 'ktrail_output_last_success_timestamp_seconds', help: 'Unix time of the last acknowledged request.', labelNames: output, registers: r }),
    outputDuplicates: new Counter({ name: 'ktrail_output_duplicates_total', help: 'Records the destination already had (Elasticsearch 409 on create): a replay made harmless by the record id.', labelNames: output, registers: r }),

    // audit_file input.
    auditBytesRead: new Counter({ name: 'ktrail_audit_file_read_bytes_total', help: 'Bytes read from audit log files.', labelNames: ['input'], registers: r }),
    auditLines: new Counter({ name: 'ktrail_audit_file_lines_total', help: 'Complete lines read from audit log files.', labelNames: ['input'], registers: r }),
    auditLagBytes: new Gauge({ name: 'ktrail_audit_file_lag_bytes', help: 'Bytes written to a tracked file but not yet read (size minus offset).', labelNames: ['input', 'file'], registers: r }),
    auditFilesTracked: new Gauge({ name: 'ktrail_audit_file_files_tracked', help: 'Files the input currently tracks (active file and unread backups).', labelNames: ['input'], registers: r }),
    auditRotations: new Counter({ name: 'ktrail_audit_file_rotations_total', help: 'Rotations observed (the active file renamed away and a new one seen).', labelNames: ['input'], registers: r }),
    auditTruncations: new Counter({ name: 'ktrail_audit_file_truncations_total', help: 'Files found shorter than their checkpoint and re-read from 0.', labelNames: ['input'], registers: r }),
    auditGapBytes: new Counter({ name: 'ktrail_audit_file_gap_bytes_total', help: 'Bytes that could not be read because the file was deleted before the input reached its end.', labelNames: ['input', 'reason'], registers: r }),
    auditGapFiles: new Counter({
      name: 'ktrail_audit_file_gap_files_total',
      help: 'Files lost before the input read them to the end, by reason (deleted, truncated, rotated_unseen: rotated away while ktrail was not running, an estimate).',
      labelNames: ['input', 'reason'],
      registers: r,
    }),
    auditGapSeconds: new Counter({
      name: 'ktrail_audit_file_gap_seconds_total',
      help: 'Seconds of audit log rotated away unseen while ktrail was not running (from the last checkpoint to the first record of the oldest file found).',
      labelNames: ['input'],
      registers: r,
    }),
    auditOpenFiles: new Gauge({ name: 'ktrail_audit_file_open_files', help: 'Descriptors the input holds open (files held from first sight plus the readers\' open files).', labelNames: ['input'], registers: r }),
    auditFilesNotHeld: new Counter({
      name: 'ktrail_audit_file_not_held_total',
      help: 'Files seen while max_open_files descriptors were already open: tracked by name only, lost (a gap) if deleted before they are read.',
      labelNames: ['input'],
      registers: r,
    }),
    auditOversizeLines: new Counter({ name: 'ktrail_audit_file_oversize_lines_total', help: 'Lines longer than max_line_bytes, by action (dead_letter, truncate).', labelNames: ['input', 'action'], registers: r }),
    auditInvalidLines: new Counter({ name: 'ktrail_audit_file_invalid_lines_total', help: 'Lines that were not a JSON audit event, by action (dead_letter, pass_raw).', labelNames: ['input', 'action'], registers: r }),

    // audit_webhook input.
    webhookRequests: new Counter({ name: 'ktrail_audit_webhook_requests_total', help: 'Requests answered, by HTTP status code (401/403: authentication failed; 413: body over max_body_bytes; 429: refused).', labelNames: ['input', 'code'], registers: r }),
    webhookEvents: new Counter({ name: 'ktrail_audit_webhook_events_total', help: 'Audit events received in EventList bodies (committed or dead-lettered).', labelNames: ['input'], registers: r }),
    webhookBadRequests: new Counter({ name: 'ktrail_audit_webhook_bad_requests_total', help: 'Bodies or events that could not be taken as audit events, by reason (not_json, not_event_list, invalid_event, oversize).', labelNames: ['input', 'reason'], registers: r }),
    webhookBatchEvents: new Histogram({ name: 'ktrail_audit_webhook_batch_events', help: 'Events in one EventList body.', labelNames: ['input'], buckets: [1, 10, 50, 100, 200, 400, 1000, 5000], registers: r }),
    webhookCommitSeconds: new Histogram({ name: 'ktrail_audit_webhook_commit_duration_seconds', help: 'Time from the end of the request body to the spool commit (the 2xx answer).', labelNames: ['input'], buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: r }),
    webhookBatchesAtRisk: new Counter({
      name: 'ktrail_audit_webhook_batches_at_risk_total',
      help: 'Batches refused, by reason (413 oversize; 429 spool_full: even the webhook reserve is used up, too_many_requests; 503 stopping, commit_timeout): the apiserver retries a refused batch 5 times and then drops it.',
      labelNames: ['input', 'reason'],
      registers: r,
    }),
    webhookInFlight: new Gauge({ name: 'ktrail_audit_webhook_in_flight_requests', help: 'Requests being read or committed.', labelNames: ['input'], registers: r }),

    // k8s_events input.
    eventsReceived: new Counter({ name: 'ktrail_k8s_events_received_total', help: 'Event objects received from list and watch.', labelNames: ['input', 'source'], registers: r }),
    eventsEmitted: new Counter({ name: 'ktrail_k8s_events_emitted_total', help: 'Event versions emitted as records.', labelNames: ['input'], registers: r }),
    eventsDeduplicated: new Counter({ name: 'ktrail_k8s_events_deduplicated_total', help: 'Event versions skipped because they were emitted before.', labelNames: ['input'], registers: r }),
    eventsWatchRestarts: new Counter({ name: 'ktrail_k8s_events_watch_restarts_total', help: 'Watch streams restarted, by reason (timeout, closed, error, gone).', labelNames: ['input', 'reason'], registers: r }),
    eventsRelists: new Counter({ name: 'ktrail_k8s_events_relists_total', help: 'Full lists performed (start, 410 Gone, poll).', labelNames: ['input', 'reason'], registers: r }),
    eventsGone: new Counter({ name: 'ktrail_k8s_events_gone_total', help: '410 Gone / Expired answers received.', labelNames: ['input'], registers: r }),
    eventsGaps: new Counter({ name: 'ktrail_k8s_events_gaps_total', help: 'Possible gaps: event versions may have expired before they could be read.', labelNames: ['input', 'reason'], registers: r }),
    eventsLeader: new Gauge({ name: 'ktrail_k8s_events_leader', help: '1 when this instance holds the lease and runs the input.', labelNames: ['input'], registers: r }),
    eventsCursorAge: new Gauge({ name: 'ktrail_k8s_events_cursor_age_seconds', help: 'Seconds since the stored resourceVersion cursor last advanced.', labelNames: ['input'], registers: r }),
    eventsSeenSetSize: new Gauge({ name: 'ktrail_k8s_events_seen_set_size', help: 'Entries (uid to last emitted resourceVersion) in the dedup seen-set.', labelNames: ['input'], registers: r }),

    // k8s_metadata processor.
    metaCacheSize: new Gauge({ name: 'ktrail_k8s_metadata_cache_pods', help: 'Pods held in the metadata cache (including recently deleted).', labelNames: ['processor'], registers: r }),
    metaLookups: new Counter({ name: 'ktrail_k8s_metadata_lookups_total', help: 'Cache lookups by result (hit, miss, negative_hit).', labelNames: ['processor', 'result'], registers: r }),
    metaApiRequests: new Counter({ name: 'ktrail_k8s_metadata_api_requests_total', help: 'Kubernetes API requests made by the cache (list, watch, get).', labelNames: ['processor', 'verb'], registers: r }),
    metaEnrichFailures: new Counter({ name: 'ktrail_k8s_metadata_enrich_failures_total', help: 'Records passed on without enrichment, by reason (timeout, api_error, not_found).', labelNames: ['processor', 'reason'], registers: r }),

    // redact processor.
    redactedFields: new Counter({ name: 'ktrail_redact_fields_total', help: 'Fields removed or masked, by rule.', labelNames: ['processor', 'rule'], registers: r }),
  };
  return m;
}

export type Metrics = ReturnType<typeof createMetrics>;

export function enableProcessMetrics(metrics: Metrics): void {
  collectDefaultMetrics({ register: metrics.registry, prefix: 'ktrail_' });
}

export type ComponentKind = 'input' | 'processor' | 'output';

/** The standard counters of one component, with its labels bound. */
export class ComponentTelemetry {
  readonly #labels: { component_kind: ComponentKind; component_id: string; component_type: string };
  readonly #metrics: Metrics;
  constructor(metrics: Metrics, kind: ComponentKind, id: string, type: string) {
    this.#metrics = metrics;
    this.#labels = { component_kind: kind, component_id: id, component_type: type };
  }
  received(records: number, bytes = 0): void {
    this.#metrics.receivedEvents.inc(this.#labels, records);
    if (bytes > 0) this.#metrics.receivedBytes.inc(this.#labels, bytes);
  }
  sent(records: number, bytes = 0): void {
    this.#metrics.sentEvents.inc(this.#labels, records);
    if (bytes > 0) this.#metrics.sentBytes.inc(this.#labels, bytes);
  }
  error(reason: string, count = 1): void {
    this.#metrics.errors.inc({ ...this.#labels, reason }, count);
  }
  discarded(reason: string, records: number): void {
    if (records > 0) this.#metrics.discardedEvents.inc({ ...this.#labels, reason }, records);
  }
}

/**
 * Have a gauge computed when it is scraped, from state that already exists
 * (the spool's counters, its tables), instead of keeping a second copy in sync.
 */
export function onCollect(gauge: Gauge<string>, fn: () => void): void {
  (gauge as unknown as { collect?: () => void }).collect = fn;
}
