import type { Database } from 'better-sqlite3';
import type { DeliveryDefaults } from './delivery/config.ts';
import type { OutcomeCode } from './delivery/outcome.ts';
import type { z } from 'zod';
import type { LogRecord, SpooledRecord } from './pipeline/record.ts';
import type { DeadLetterEntry } from './spool/dead-letter.ts';
import type { MigrationStep } from './spool/migrations.ts';
import type { EntryGap, EntrySource } from './manifest/digest.ts';
import type { ComponentTelemetry, Metrics } from './telemetry/metrics.ts';
import type { LogEventCatalog } from './telemetry/log-events.ts';
import type { Logger } from './telemetry/logger.ts';

/**
 * The plugin contract. A plugin is a definition — `{ kind, type, schema, create }`
 * — registered statically in `registry.ts`. `schema` is a strict zod object of
 * the plugin's own keys (the framework adds the common ones: `type`, `match`,
 * and for outputs `batch`, `retry`, `request_timeout`, `concurrency`);
 * `create` receives only config that passed validation.
 *
 * Lifecycle (every component): `start()` returns once the component is running
 * (long work continues in the background); `stop()` is idempotent and safe
 * before `start()`.
 */

export interface ComponentContext {
  /** The component's name: its key under inputs/processors/outputs. */
  name: string;
  log: Logger;
  telemetry: ComponentTelemetry;
  metrics: Metrics;
  /** service.node_name (the Kubernetes node, for DaemonSet pods). */
  nodeName: string;
  stateDir: string;
}

/** Access to the state database for plugin-owned, versioned tables. */
export interface StateAccess {
  db: Database;
  migrate(owner: string, steps: readonly MigrationStep[]): void;
}

export interface InputDeadLetter {
  /** Stable reason code: the metric label and what `ktrail status` groups by (`parse_error`, `oversize`). */
  code: string;
  /** What went wrong and where (file, offset); never the content itself. */
  reason: string;
  /** The bytes as read (a Buffer keeps binary content exact). */
  data: Buffer | string;
  /** `data` is only a sample of the content (an oversize line's first bytes). */
  partial?: boolean;
  recordId?: string;
  /** Where the content was read: enough to find it again when its bytes are withheld. */
  source?: { file: string; offset: number; length: number };
}

export interface EmitBatch {
  records: LogRecord[];
  /** Data the input could not turn into records (oversized, unparsable); stored with the batch. */
  deadLetters?: InputDeadLetter[];
  /**
   * Moves the input's checkpoint. Runs inside the transaction that stores the
   * records and dead letters above, so checkpoint and data are durable together.
   */
  checkpoint?: (db: Database) => void;
  /**
   * When the spool is full, commit nothing and resolve at once with
   * `refusedFull` instead of waiting or dropping (whatever `when_full` says):
   * for an input whose sender keeps the data and resends it (audit_webhook).
   */
  refuseWhenFull?: boolean;
  /** What the records were read from, and what is known to be missing: for the completeness chain (src/manifest/). */
  manifest?: EmitManifest;
}

/** An input's part of the completeness chain: the stream, the source range read, the gaps it knows of. */
export interface EmitManifest {
  /** The stream the records belong to (default: the input name); an audit file lineage, say. */
  stream?: string;
  source?: EntrySource;
  gaps?: EmitGap[];
}

export interface EmitGap extends Partial<Omit<EntryGap, 'reason' | 'detail'>> {
  /** Default: the batch's stream. */
  stream?: string;
  reason: string;
  detail: string;
}

export interface EmitResult {
  /** Records committed to the spool (after processors dropped theirs). */
  committed: number;
  /** Records dropped because the spool was full and `when_full: drop_newest`. */
  droppedFull: number;
  /** Nothing was committed: the spool was full and the batch asked `refuseWhenFull`. */
  refusedFull?: boolean;
}

export interface InputContext extends ComponentContext {
  state: StateAccess;
  /**
   * Run processors on the records, then commit them with the checkpoint in one
   * transaction. Resolves after the commit. With `when_full: block` it waits
   * while the spool is full — an input that awaits `emit` before reading more
   * is paused by a full spool without any extra code.
   */
  emit(batch: EmitBatch): Promise<EmitResult>;
  /** Aborted when the agent stops. */
  signal: AbortSignal;
  /** What the plugin's `prepare` returned, when it has one and `ktrail run` ran it. */
  prepared?: unknown;
}

export interface HealthReport {
  ok: boolean;
  detail?: string;
}

export interface Input {
  start(): Promise<void>;
  stop(): Promise<void>;
  health?(): HealthReport;
}

export interface Processor {
  start?(): Promise<void>;
  stop?(): Promise<void>;
  /** Return the records to keep (possibly changed or enriched); never throw for one bad record. */
  process(records: LogRecord[]): LogRecord[] | Promise<LogRecord[]>;
  /**
   * Could this processor have changed (redacted) a document with this text?
   * Asked about content that cannot be parsed, and so cannot be processed:
   * when the answer is yes, that content is neither stored nor sent (see
   * docs/security.md). `partial`: the text is only part of the content, so
   * a condition on the unseen rest cannot rule the processor out.
   */
  mayChange?(text: string, partial: boolean): boolean;
}

export interface OutboundRequest {
  /**
   * Stable identity of this request: the same on every retry and after a
   * restart (derived from the output name and spool batch ids). Use it for
   * idempotent writes (S3 key, Idempotency-Key).
   */
  key: string;
  firstBatchId: number;
  lastBatchId: number;
  records: readonly SpooledRecord[];
  /** 1 on the first try. */
  attempt: number;
}

export type ItemFailureKind = 'retryable' | 'permanent';

export interface ItemFailure {
  /** Index into `request.records`. */
  index: number;
  kind: ItemFailureKind;
  /** Why, as a code (src/delivery/outcome.ts): the metric label and the dead letter's code. */
  code: OutcomeCode;
  /** What the destination said about it. */
  detail: string;
}

/** What an output reports for one send. */
export type SendOutcome =
  | { kind: 'ok' }
  /** The whole request may succeed later (network, 429, 5xx, timeout). */
  | { kind: 'retryable'; code: OutcomeCode; detail: string; retryAfterMs?: number }
  /** The whole request will never succeed (4xx): its records go to the dead-letter table. */
  | { kind: 'permanent'; code: OutcomeCode; detail: string }
  /** Some records failed: retryable ones are resent alone, permanent ones dead-lettered. */
  | { kind: 'partial'; failures: ItemFailure[]; retryAfterMs?: number }
  /** The destination refused the size (413): the sender splits the request. */
  | { kind: 'too_large'; code: OutcomeCode; detail: string };

export interface OutputContext extends ComponentContext {
  state: StateAccess;
  /** Set when manifest.enabled: the output names what it wrote for the batches of a request (S3 keys and ETags), for the manifests. */
  manifest?: ManifestItemSink;
}

/** A destination item the manifests name: an object key with its ETag, say. */
export interface ManifestItem {
  key: string;
  etag?: string;
  /** Elasticsearch: the index holding these records (their `_id`s are the record ids). */
  index?: string;
  records: number;
}

export interface ManifestItemSink {
  /** After a successful write, before the ack: the items that hold the request's records (a replay overwrites the same keys). */
  noteItems(firstBatchId: number, lastBatchId: number, items: readonly ManifestItem[]): void;
}

export interface Output {
  start?(): Promise<void>;
  /** Encode and send. Never throw for a delivery problem: classify it. */
  send(request: OutboundRequest, signal: AbortSignal): Promise<SendOutcome>;
  /** Flush and release resources; called after the last send. */
  close?(): Promise<void>;
}


/**
 * `ktrail check`: what a component finds about its validated config on this
 * machine, without connecting anywhere — paths that match nothing, files it
 * cannot write, kubeconfig keys it ignores. Warnings do not fail the check;
 * notes are information (the files an input path covers).
 */
export interface CheckFindings {
  warnings: string[];
  notes: string[];
}

export interface CheckContext {
  nodeName: string;
  stateDir: string;
}

/** `ktrail check --connect`: one health-check line per destination. */
export interface ProbeResult {
  /** What was tried, e.g. `GET https://es:9200/_cluster/health` (never with credentials). */
  target: string;
  ok: boolean;
  /** reachable, TLS valid, credentials accepted — or what failed and why. */
  detail: string;
}

export interface ProbeContext extends CheckContext {
  /** Bounds each probe; aborted after the probe timeout. */
  signal: AbortSignal;
  log: Logger;
}

// The schemas are zod objects; plugins pass `z.strictObject({...})`.
// oxlint-disable-next-line typescript/no-explicit-any
type AnyObjectSchema = z.ZodObject<any>;

/** What every plugin definition has, whatever its kind. */
interface PluginBase<S extends AnyObjectSchema> {
  type: string;
  description: string;
  schema: S;
  /**
   * The plugin's own series (its `metrics.ts`, made with `pluginMetrics`):
   * created when a component of the type is created, and by the docs
   * generator, which lists every plugin's.
   */
  metrics?(metrics: Metrics): unknown;
  /** The named log lines of the plugin (its `telemetry.ts`, made with `logEvents`), for docs/logs.md. */
  logEvents?: LogEventCatalog;
  /** `ktrail check`: findings beyond the schema (see CheckFindings). */
  inspect?(config: z.output<S>, ctx: CheckContext): CheckFindings | Promise<CheckFindings>;
  /** `ktrail check --connect`: try the destination like a health check. */
  probe?(config: z.output<S>, ctx: ProbeContext): Promise<ProbeResult[]>;
}

export interface InputPlugin<S extends AnyObjectSchema = AnyObjectSchema> extends PluginBase<S> {
  kind: 'input';
  create(config: z.output<S>, ctx: InputContext): Input;
  /**
   * The share of `spool.max_bytes` (0–0.9) this input reserves: every input
   * without a reserve sees the spool full that much earlier (and pauses, or
   * drops with `drop_newest`), so the reserving input still commits while
   * the others wait. The reserves of all inputs are summed (at most 0.9).
   */
  spoolHeadroom?(config: z.output<S>): number;
  /**
   * Runs first, before the spool, the other plugins and the telemetry server
   * start (audit_file opens every matching file here); what it returns is
   * handed to `create` as `ctx.prepared`. `early` is what the registry's early
   * preparer of this type made of the raw config while it was being validated
   * (see registry.ts); the plugin uses it only if it fits the validated config.
   */
  prepare?(config: z.output<S>, log: Logger, early?: unknown): Promise<unknown>;
  /**
   * Rows for `ktrail status`, read from the plugin's own tables (read-only DB),
   * for every input of this type; each row names its `input`.
   */
  describeState?(db: Database): Array<Record<string, unknown> & { input: string }>;
}

export interface ProcessorPlugin<S extends AnyObjectSchema = AnyObjectSchema> extends PluginBase<S> {
  kind: 'processor';
  create(config: z.output<S>, ctx: ComponentContext): Processor;
}

export interface OutputPlugin<S extends AnyObjectSchema = AnyObjectSchema> extends PluginBase<S> {
  kind: 'output';
  /** The output type's defaults of the delivery keys every output has (e.g. Elasticsearch batches of 5 MiB). */
  delivery?: DeliveryDefaults;
  /**
   * Delivery defaults that follow from the plugin's own keys (s3: `max_object_bytes`
   * → `batch.max_bytes`). They override `delivery`; the user's `batch`,
   * `concurrency` and `request_timeout` keys override both.
   */
  deliveryFor?(config: z.output<S>): DeliveryDefaults;
  create(config: z.output<S>, ctx: OutputContext): Output;
}

export type Plugin = InputPlugin | ProcessorPlugin | OutputPlugin;

export type { DeadLetterEntry };
