import type { z } from 'zod';
import type { outputCommonShape } from '../config/schema.ts';
import type { OutputPlugin } from '../plugin.ts';
import type { SenderConfig } from './runner.ts';

/**
 * The delivery settings of an output, in the words of its config: the keys
 * every output has (`batch.max_bytes`, `batch.max_records`,
 * `batch.flush_interval`, `request_timeout`, `concurrency`, `retry.*`, all in
 * src/config/schema.ts) and, for those without a value there, the output
 * type's defaults. Each default is written once: the global ones here, an
 * output type's own in its plugin (`delivery`), and those that follow from
 * the type's own keys (s3's `max_object_bytes`) in `deliveryFor`. The retry
 * defaults are the schema's. `senderConfigOf` is the one place the runner's
 * names come from.
 */
export interface DeliveryDefaults {
  batch?: { max_bytes?: number; max_records?: number; flush_interval?: number };
  request_timeout?: number;
  concurrency?: number;
}

export interface ResolvedDelivery {
  batch: { max_bytes: number; max_records: number; flush_interval: number };
  request_timeout: number;
  concurrency: number;
}

/** Defaults of every output type that sets none of its own. */
export const DELIVERY_DEFAULTS: ResolvedDelivery = {
  batch: { max_bytes: 1024 * 1024, max_records: 10_000, flush_interval: 1000 },
  request_timeout: 30_000,
  concurrency: 1,
};

/** The keys every output's validated config has. */
export type OutputCommonConfig = z.output<z.ZodObject<typeof outputCommonShape>>;

function merge(base: ResolvedDelivery, over: DeliveryDefaults | undefined): ResolvedDelivery {
  if (!over) return base;
  return {
    batch: {
      max_bytes: over.batch?.max_bytes ?? base.batch.max_bytes,
      max_records: over.batch?.max_records ?? base.batch.max_records,
      flush_interval: over.batch?.flush_interval ?? base.batch.flush_interval,
    },
    request_timeout: over.request_timeout ?? base.request_timeout,
    concurrency: over.concurrency ?? base.concurrency,
  };
}

/** An output type's defaults; with its validated config, also those derived from its own keys. */
export function deliveryDefaultsOf(plugin: OutputPlugin, config?: Record<string, unknown>): ResolvedDelivery {
  const typed = merge(DELIVERY_DEFAULTS, plugin.delivery);
  return config === undefined ? typed : merge(typed, plugin.deliveryFor?.(config));
}

/** What the delivery runner runs with: the config's values, else the output type's defaults. */
export function senderConfigOf(plugin: OutputPlugin, config: OutputCommonConfig & Record<string, unknown>): SenderConfig {
  const d = deliveryDefaultsOf(plugin, config);
  return {
    maxBatchBytes: config.batch.max_bytes ?? d.batch.max_bytes,
    maxBatchRecords: config.batch.max_records ?? d.batch.max_records,
    flushIntervalMs: config.batch.flush_interval ?? d.batch.flush_interval,
    concurrency: config.concurrency ?? d.concurrency,
    requestTimeoutMs: config.request_timeout ?? d.request_timeout,
    initialBackoffMs: config.retry.initial_backoff,
    maxBackoffMs: config.retry.max_backoff,
    maxElapsedMs: config.retry.max_elapsed,
  };
}
