import { createHash, createHmac, hash } from 'node:crypto';

/**
 * The hashes of the completeness chain, in one place so that the agent, the
 * sealer and `ktrail verify` compute them the same way.
 *
 * - A record's hash is SHA-256 over its bytes as shipped: the UTF-8 JSON line
 *   without its newline (what the file output writes, what S3 objects hold,
 *   what Elasticsearch stores as `_source`).
 * - An entry's digest is SHA-256 over its records' hashes in order. It binds
 *   the same bytes in the same order as a hash over the concatenated records,
 *   and it lets a verifier name the one record that differs instead of only
 *   the entry.
 * - An entry's own hash covers every field of the entry and the previous
 *   entry's hash (`canonicalEntry`), so that no entry can be changed, removed
 *   or reordered without breaking every later link.
 */

export const RECORD_HASH_BYTES = 32;

/** SHA-256 of one record's JSON (a string, or its UTF-8 bytes), raw bytes. */
export function recordHash(json: string | Buffer): Buffer {
  return hash('sha256', json, 'buffer');
}

/** The per-record hashes of `jsons`, concatenated (RECORD_HASH_BYTES each). */
export function recordHashes(jsons: readonly string[]): Buffer {
  const out = Buffer.allocUnsafe(jsons.length * RECORD_HASH_BYTES);
  for (let i = 0; i < jsons.length; i++) recordHash(jsons[i]!).copy(out, i * RECORD_HASH_BYTES);
  return out;
}

export function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** An entry's digest: SHA-256 over the concatenated record hashes. */
export function entryDigest(hashes: Buffer): string {
  return sha256Hex(hashes);
}

export function splitHashes(hashes: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let o = 0; o + RECORD_HASH_BYTES <= hashes.length; o += RECORD_HASH_BYTES) out.push(hashes.subarray(o, o + RECORD_HASH_BYTES));
  return out;
}

export function hmacHex(key: Buffer, data: string): string {
  return createHmac('sha256', key).update(data).digest('hex');
}

/** The hash of the empty chain: what the first entry of a stream links to. */
export const GENESIS = '0'.repeat(64);

/** The fields an entry's hash covers. */
export interface EntryFields {
  stream: string;
  seq: number;
  kind: EntryKind;
  timeMs: number;
  /** Spool batch that holds the records (record entries). */
  batchId: number | null;
  input: string;
  source: EntrySource | null;
  records: number;
  firstId: string | null;
  lastId: string | null;
  /** SHA-256 over the record ids joined by newlines. */
  idsDigest: string | null;
  digest: string | null;
  gap: EntryGap | null;
  /** Context: the audit policy hash (policy entries). */
  policy: { file: string; sha256: string } | null;
  prev: string;
}

export type EntryKind = 'records' | 'gap' | 'policy';

/** Where an entry's records were read. */
export interface EntrySource {
  /** audit_file: the file read, its content fingerprint and the byte range [from, to). */
  file?: { path: string; fingerprint: string | null; from: number; to: number };
  /** k8s_events: the cursor before and after the commit; the lowest and highest resourceVersion stored. */
  resourceVersion?: { cursorFrom: string | null; cursorTo: string | null; min: string | null; max: string | null };
}

/** What is known to be missing and why. */
export interface EntryGap {
  /** deleted_unread, truncated, rotated_unseen, expired, filtered, dead_letter:<code>, spool_full. */
  reason: string;
  /** Records, when counted (filters, dead letters); unknown for data never read. */
  records: number | null;
  bytes: number | null;
  files: number | null;
  detail: string;
  fromMs: number | null;
  toMs: number | null;
  /** The record ids, when known (dead letters). */
  ids: string[] | null;
}

/**
 * A deterministic serialization of the fields: a JSON array in a fixed order
 * (object keys of nested values are sorted), so the hash does not depend on
 * how an object was built.
 */
export function canonicalEntry(e: EntryFields): string {
  return JSON.stringify(
    [1, e.stream, e.seq, e.kind, e.timeMs, e.batchId, e.input, e.source, e.records, e.firstId, e.lastId, e.idsDigest, e.digest, e.gap, e.policy, e.prev],
    (_k, v: unknown) => (v !== null && typeof v === 'object' && !Array.isArray(v) ? sortKeys(v as Record<string, unknown>) : v),
  );
}

function sortKeys(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(o).sort()) if (o[k] !== undefined) out[k] = o[k];
  return out;
}

export function entryHash(e: EntryFields): string {
  return sha256Hex(canonicalEntry(e));
}
