import { z } from 'zod';

/**
 * Durations and sizes are written the way operators write them ("30s", "5MiB")
 * and validated into numbers with units in their names (`...Ms`, `...Bytes`).
 */

const durationUnitsMs: Record<string, number> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

export function parseDurationMs(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(text);
  if (!m) return undefined;
  return Math.round(Number(m[1]) * durationUnitsMs[m[2]!]!);
}

const sizeUnits: Record<string, number> = {
  b: 1,
  kb: 1_000,
  mb: 1_000_000,
  gb: 1_000_000_000,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};

export function parseSizeBytes(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!m) return undefined;
  const unit = (m[2] || 'b').toLowerCase();
  const mult = sizeUnits[unit];
  if (mult === undefined) return undefined;
  return Math.round(Number(m[1]) * mult);
}

/** A duration: "500ms", "30s", "5m", "1h", "7d", or a number of milliseconds. */
export const duration = () =>
  z.union([z.number().int().nonnegative(), z.string()]).meta({ ktrailType: 'duration' }).transform((v, ctx) => {
    if (typeof v === 'number') return v;
    const ms = parseDurationMs(v);
    if (ms === undefined) {
      ctx.addIssue({
        code: 'custom',
        message: `"${v}" is not a duration; write it like 500ms, 30s, 5m, 1h or 7d`,
      });
      return z.NEVER;
    }
    return ms;
  });

/** A size: "16MiB", "512KiB", "5MB", or a number of bytes. */
export const size = () =>
  z.union([z.number().int().nonnegative(), z.string()]).meta({ ktrailType: 'size' }).transform((v, ctx) => {
    if (typeof v === 'number') return v;
    const bytes = parseSizeBytes(v);
    if (bytes === undefined) {
      ctx.addIssue({
        code: 'custom',
        message: `"${v}" is not a size; write it like 512KiB, 16MiB, 1GiB or a number of bytes`,
      });
      return z.NEVER;
    }
    return bytes;
  });
