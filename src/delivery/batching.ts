import { jsonSize, type SpooledRecord } from '../pipeline/record.ts';
import type { BatchRef } from '../spool/spool.ts';

/**
 * Batching: which spool batches make up the next request group, and how a
 * group too large for one request is cut into parts. Pure functions: the
 * runner owns the clock and the spool.
 */

export interface BatchLimits {
  maxBatchBytes: number;
  maxBatchRecords: number;
  flushIntervalMs: number;
}

export type Composition =
  | { kind: 'group'; batchIds: number[] }
  /** A partial group waits for flush_interval: its size, and how long until it is due. */
  | { kind: 'wait'; records: number; bytes: number; waitMs: number };

/**
 * Greedy: whole batches, oldest first, until a limit is reached; a group
 * that is not full goes out only once its oldest batch has waited
 * `flushIntervalMs` (or at once while draining). `refs` is not empty.
 */
export function composeGroup(refs: readonly BatchRef[], limits: BatchLimits, draining: boolean, nowMs: number): Composition {
  let bytes = 0;
  let records = 0;
  const ids: number[] = [];
  let full = false;
  for (const ref of refs) {
    if (ids.length > 0 && (bytes + ref.bytes > limits.maxBatchBytes || records + ref.recordCount > limits.maxBatchRecords)) {
      full = true;
      break;
    }
    ids.push(ref.id);
    bytes += ref.bytes;
    records += ref.recordCount;
    if (bytes >= limits.maxBatchBytes || records >= limits.maxBatchRecords) {
      full = true;
      break;
    }
  }
  const ageMs = nowMs - refs[0]!.createdMs;
  if (!full && !draining && ageMs < limits.flushIntervalMs) return { kind: 'wait', records, bytes, waitMs: limits.flushIntervalMs - ageMs };
  return { kind: 'group', batchIds: ids };
}

/** Split into request parts that respect both limits (at least one record per part). */
export function splitRecords(records: readonly SpooledRecord[], maxBytes: number, maxRecords: number): SpooledRecord[][] {
  const parts: SpooledRecord[][] = [];
  let cur: SpooledRecord[] = [];
  let bytes = 0;
  for (const r of records) {
    const n = jsonSize(r) + 1;
    if (cur.length > 0 && (bytes + n > maxBytes || cur.length >= maxRecords)) {
      parts.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(r);
    bytes += n;
  }
  if (cur.length > 0) parts.push(cur);
  return parts;
}
