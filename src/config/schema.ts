import os from 'node:os';
import { z } from 'zod';
import { duration, size } from './units.ts';

/** The keys ktrail itself owns; plugin keys are declared by each plugin. */

export const logLevels = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

export const serviceSchema = z
  .strictObject({
    state_dir: z.string().min(1).default('/var/lib/ktrail'),
    node_name: z.string().default(() => process.env.NODE_NAME || os.hostname()),
    log_level: z.enum(logLevels).default('info'),
    metrics: z
      .strictObject({
        enabled: z.boolean().default(true),
        listen: z
          .string()
          .regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, 'write host:port, e.g. 0.0.0.0:9464 or 127.0.0.1:0')
          .default('0.0.0.0:9464'),
      })
      .prefault({}),
    shutdown_timeout: duration().default(20_000),
    /** /readyz fails when an output has pending data and no success for this long. */
    output_stall_timeout: duration().default(300_000),
    /** Print a one-line progress summary to stderr (local runs). */
    progress: z.boolean().default(false),
  })
  .prefault({});

export const spoolSchema = z
  .strictObject({
    max_bytes: size().default(512 * 1024 * 1024),
    when_full: z.enum(['block', 'drop_newest']).default('block'),
  })
  .prefault({});

export const matchSchema = z.array(z.string().min(1)).min(1).default(['*']);

export const batchSchema = z.strictObject({
  max_bytes: size().optional(),
  max_records: z.number().int().positive().optional(),
  flush_interval: duration().optional(),
});

export const retrySchema = z
  .strictObject({
    initial_backoff: duration().default(500),
    max_backoff: duration().default(60_000),
    /** Give up and dead-letter after this long; unset = retry forever (the default). */
    max_elapsed: duration().optional(),
  })
  .prefault({});

/** Keys every output has, on top of its own. */
export const outputCommonShape = {
  match: matchSchema,
  batch: batchSchema.prefault({}),
  retry: retrySchema,
  request_timeout: duration().optional(),
  concurrency: z.number().int().min(1).max(64).optional(),
};

export const processorCommonShape = {
  match: matchSchema,
};

export const topLevelSchema = z.strictObject({
  service: serviceSchema,
  spool: spoolSchema,
  inputs: z.record(z.string(), z.unknown()),
  processors: z.record(z.string(), z.unknown()).default({}),
  outputs: z.record(z.string(), z.unknown()),
});

export type ServiceConfig = z.output<typeof serviceSchema>;
export type SpoolConfig = z.output<typeof spoolSchema>;
export type BatchConfig = z.output<typeof batchSchema>;
export type RetryConfig = z.output<typeof retrySchema>;
