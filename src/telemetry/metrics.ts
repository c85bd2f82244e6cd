import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The metrics every ktrail process has are declared here, once: the standard
 * per-component set, the spool, dead letters and the delivery runner. A
 * plugin's own series are declared in its folder (`<plugin>/metrics.ts`,
 * with `pluginMetrics` below) and named in its definition, so the docs list
 * them too. Components get a `ComponentTelemetry` (the standard counters) and
 * this `Metrics` object from their context.
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
    /** Each plugin's own series, by plugin (see `pluginMetrics`). */
    plugins: new Map<string, unknown>(),
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

    // Completeness chain and its seals (manifest.enabled; src/manifest/, docs/verify.md).
    manifestEntries: new Counter({ name: 'ktrail_manifest_entries_total', help: 'Entries appended to the completeness chain, by input and kind (records, gap, policy).', labelNames: ['input', 'kind'], registers: r }),
    manifestGapEntries: new Counter({
      name: 'ktrail_manifest_gap_entries_total',
      help: 'Gap entries appended to the chain, by input and reason (deleted_unread, truncated, rotated_unseen, expired, filtered, dead_letter:<code>, spool_full, not_routed).',
      labelNames: ['input', 'reason'],
      registers: r,
    }),
    manifestChainEntries: new Gauge({ name: 'ktrail_manifest_chain_entries', help: 'Chain entries held in the state database (not yet pruned), by input.', labelNames: ['input'], registers: r }),
    manifestSeals: new Counter({ name: 'ktrail_manifest_seals_total', help: 'Manifests written (sealed into the spool for an output), by output.', labelNames: output, registers: r }),
    manifestSealsAcknowledged: new Counter({ name: 'ktrail_manifest_seals_acknowledged_total', help: 'Manifests the output acknowledged (delivered to the destination), by output.', labelNames: output, registers: r }),
    manifestSealFailures: new Counter({ name: 'ktrail_manifest_seal_failures_total', help: 'Seal runs that failed (the next run covers the same entries).', registers: r }),
    manifestOldestUnsealedSeconds: new Gauge({
      name: 'ktrail_manifest_oldest_unsealed_age_seconds',
      help: 'Age of the oldest chain entry not yet sealed into an output (0 when every entry is sealed). Grows past seal_interval when sealing stalls or the output does not acknowledge.',
      labelNames: output,
      registers: r,
    }),
    manifestSealIntervalSeconds: new Gauge({ name: 'ktrail_manifest_seal_interval_seconds', help: 'Configured manifest.seal_interval, per output sealed into (for alerts on the unsealed age).', labelNames: output, registers: r }),
    manifestLastAcknowledgedSeal: new Gauge({ name: 'ktrail_manifest_last_acknowledged_seal_timestamp_seconds', help: 'Unix time at which the last manifest the output acknowledged was sealed.', labelNames: output, registers: r }),
  };
  return m;
}

export type Metrics = ReturnType<typeof createMetrics>;

/**
 * A plugin's own series: `declare` creates them on the registries it is
 * given. The accessor it returns creates them once per `Metrics` object,
 * when the plugin is first used (so a config without the plugin exports none
 * of them), and hands the same objects back to every instance of the plugin.
 * They are kept on the `Metrics` object under the plugin's key, not in this
 * module, so a second copy of a module (one loaded with require(), one with
 * import) still finds them.
 */
export function pluginMetrics<T>(key: string, declare: (registers: Registry[]) => T): (metrics: Metrics) => T {
  return (metrics) => {
    let m = metrics.plugins.get(key) as T | undefined;
    if (m === undefined) {
      m = declare([metrics.registry]);
      metrics.plugins.set(key, m);
    }
    return m;
  };
}

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
