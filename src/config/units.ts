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

export interface DurationOptions {
  /** Smallest accepted value, e.g. 1 for "zero would make the caller spin". */
  minMs?: number;
}

export interface SizeOptions {
  minBytes?: number;
}

function describeInput(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return JSON.stringify(v);
  return `${typeof v} ${String(v)}`;
}

/**
 * Both helpers take `unknown` so that every wrong input (true, 1.5, a list, a
 * missing key) gets their own wording instead of zod's generic "Invalid input".
 * `params.fix` is picked up by messages.ts as the problem's fix line.
 */
function unitValue(
  kind: 'duration' | 'size',
  v: unknown,
  ctx: z.RefinementCtx,
  parse: (text: string) => number | undefined,
  min: number,
): number {
  const example = kind === 'duration' ? '500ms, 30s, 5m, 1h or 7d' : '512KiB, 16MiB, 1GiB or a number of bytes';
  const unit = kind === 'duration' ? 'ms' : min === 1 ? ' byte' : ' bytes';
  const fail = (message: string, fix: string): number => {
    ctx.addIssue({ code: 'custom', message, params: { fix }, input: v });
    return z.NEVER;
  };
  if (v === undefined) return fail(`required key is missing (expected a ${kind})`, `add it, written like ${example}`);
  let n: number | undefined;
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) {
      return fail(`${describeInput(v)} is not a ${kind}; a bare number must be a whole, non-negative number of ${kind === 'duration' ? 'milliseconds' : 'bytes'}`, `write it like ${example}`);
    }
    n = v;
  } else if (typeof v === 'string') {
    n = parse(v);
    if (n === undefined) return fail(`"${v}" is not a ${kind}; write it like ${example}`, `write it like ${example}`);
  } else {
    return fail(`expected a ${kind}, got ${describeInput(v)}`, `write it like ${example}`);
  }
  if (n < min) return fail(`${describeInput(v)} is too small: must be at least ${min}${unit}`, `use at least ${min}${unit}`);
  return n;
}

/** A duration: "500ms", "30s", "5m", "1h", "7d", or a number of milliseconds. */
export const duration = (opts: DurationOptions = {}) =>
  z
    .unknown()
    .meta({ ktrailType: 'duration' })
    .transform((v, ctx) => unitValue('duration', v, ctx, parseDurationMs, opts.minMs ?? 0));

/** A size: "16MiB", "512KiB", "5MB", or a number of bytes. */
export const size = (opts: SizeOptions = {}) =>
  z
    .unknown()
    .meta({ ktrailType: 'size' })
    .transform((v, ctx) => unitValue('size', v, ctx, parseSizeBytes, opts.minBytes ?? 0));
