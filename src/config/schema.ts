import os from 'node:os';
import { z } from 'zod';
import { fmtDuration } from './describe.ts';
import { duration, size } from './units.ts';
import { manifestSchema } from '../manifest/config.ts';

/** The keys ktrail itself owns; plugin keys are declared by each plugin. */

export const logLevels = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export const logFormats = ['auto', 'json', 'text'] as const;

export const serviceSchema = z
  .strictObject({
    state_dir: z.string().min(1).default('/var/lib/ktrail').describe('Directory of the SQLite state database (spool, checkpoints, dead letters). Must survive restarts.'),
    node_name: z
      .string()
      .default(() => process.env.NODE_NAME || os.hostname())
      .describe('Name of this node, used in S3 keys ({node}) and logs. Default: $NODE_NAME, else the hostname.'),
    log_level: z.enum(logLevels).default('info').describe('Minimum level of the logs written to stderr.'),
    log_format: z
      .enum(logFormats)
      .default('auto')
      .describe('Log format on stderr: json (one JSON object a line), text (human-readable, via pino-pretty) or auto (text when stderr is a terminal, JSON otherwise, as in a container).'),
    metrics: z
      .strictObject({
        enabled: z.boolean().default(true).describe('Serve /metrics, /healthz and /readyz.'),
        listen: z
          .string()
          .regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, 'write host:port, e.g. 0.0.0.0:9464 or 127.0.0.1:0')
          .default('0.0.0.0:9464')
          .describe('host:port of the metrics and health endpoints; port 0 picks a free port.'),
      })
      .prefault({}),
    shutdown_timeout: duration().default(20_000).describe('On SIGTERM/SIGINT, how long outputs may drain before ktrail exits; keep it below terminationGracePeriodSeconds.'),
    /** /readyz fails when an output has pending data and no success for this long. */
    output_stall_timeout: duration().default(300_000).describe('/readyz fails when an output has data pending and no progress for this long.'),
    /** Print a one-line progress summary to stderr (local runs). */
    progress: z.boolean().default(false).describe('Print a one-line progress summary to stderr (local runs).'),
  })
  .prefault({});

export const spoolSchema = z
  .strictObject({
    max_bytes: size().default(512 * 1024 * 1024).describe('Upper bound of encoded record bytes held in the spool; memory and disk stay bounded by it.'),
    when_full: z
      .enum(['block', 'drop_newest'])
      .default('block')
      .describe('block: inputs pause (files wait on disk, watches stop reading); drop_newest: new records are dropped and counted.'),
    dead_letter_max_bytes: size()
      .default(256 * 1024 * 1024)
      .describe('Upper bound of the dead-letter table; the oldest rows are pruned beyond it (counted in ktrail_dead_letters_pruned_total).'),
    dead_letter_store_unredactable: z
      .boolean()
      .default(false)
      .describe(
        'Content that could not be parsed, and that a redact rule could apply to, is dead-lettered as metadata only (source, length, sha256, reason). true stores its bytes too: secrets then sit unredacted in the state database (see docs/security.md).',
      ),
    release_removed_outputs: z
      .boolean()
      .default(false)
      .describe(
        'When an output disappears from the config, its undelivered batches stay in the spool (counted in ktrail_spool_orphaned_batches) until it comes back; true releases them at start (counted as discarded, reason output_removed).',
      ),
  })
  .prefault({});

export const matchSchema = z
  .array(z.string().min(1))
  .min(1)
  .default(['*'])
  .describe('Input names ("*" wildcards allowed) whose records this component takes.');

export const batchSchema = z.strictObject({
  max_bytes: size({ minBytes: 1 }).optional().describe('Flush a request at this many encoded bytes (default per output type).'),
  max_records: z.number().int().positive().optional().describe('Flush a request at this many records (default per output type).'),
  flush_interval: duration().optional().describe('Send a partial request once its oldest record waited this long (default per output type).'),
});

export const retrySchema = z
  .strictObject({
    // A zero backoff would make a failing output retry in a tight loop and starve the event loop.
    initial_backoff: duration({ minMs: 1 }).default(500).describe('Ceiling of the first retry delay; doubles per retry (full jitter).'),
    max_backoff: duration({ minMs: 1 }).default(60_000).describe('Largest retry delay ceiling. Retry-After from the server takes precedence.'),
    /** Give up and dead-letter after this long; unset = retry forever (the default). */
    max_elapsed: duration().optional().describe('Dead-letter records still failing after this long. Unset: retry forever.'),
  })
  .superRefine((retry, ctx) => {
    if (retry.max_backoff < retry.initial_backoff) {
      ctx.addIssue({
        code: 'custom',
        path: ['max_backoff'],
        input: retry.max_backoff,
        message: `max_backoff (${fmtDuration(retry.max_backoff)}) is below initial_backoff (${fmtDuration(retry.initial_backoff)})`,
        params: { fix: 'raise max_backoff to at least initial_backoff, or lower initial_backoff' },
      });
    }
  })
  .prefault({});

/** Keys every output has, on top of its own. */
export const outputCommonShape = {
  match: matchSchema,
  batch: batchSchema.prefault({}),
  retry: retrySchema,
  request_timeout: duration({ minMs: 1 }).optional().describe('Abort one send attempt after this long and retry it (default per output type).'),
  concurrency: z.number().int().min(1).max(64).optional().describe('Requests in flight at once (default per output type).'),
};

export const processorCommonShape = {
  match: matchSchema,
};

export const topLevelSchema = z.strictObject({
  service: serviceSchema,
  spool: spoolSchema,
  manifest: manifestSchema,
  inputs: z.record(z.string(), z.unknown()),
  processors: z.record(z.string(), z.unknown()).default({}),
  outputs: z.record(z.string(), z.unknown()),
});

export type ServiceConfig = z.output<typeof serviceSchema>;
export type SpoolConfig = z.output<typeof spoolSchema>;
export type BatchConfig = z.output<typeof batchSchema>;
export type RetryConfig = z.output<typeof retrySchema>;
