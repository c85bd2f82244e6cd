import { hash } from 'node:crypto';
import type { Database, Statement } from 'better-sqlite3';
import type { SpooledRecord } from '../pipeline/record.ts';
import type { MigrationStep } from '../spool/migrations.ts';
import {
  entryDigest,
  entryHash,
  GENESIS,
  hmacHex,
  RECORD_HASH_BYTES,
  sha256Hex,
  type EntryFields,
  type EntryGap,
  type EntryKind,
  type EntrySource,
} from './digest.ts';

/**
 * The completeness chain: per stream (an audit file lineage, the events
 * cursor, an input), an append-only list of entries in the state database,
 * each linked to the one before by its hash.
 *
 * Invariants:
 * 1. A records entry is written in the spool transaction that stores its
 *    batch (the input commit), so the chain never claims records the spool
 *    does not hold, and never misses records it does.
 * 2. Entries are never updated. Within a stream `seq` is 1, 2, 3, … and each
 *    entry's `prev` is the hash of the entry before (GENESIS for the first).
 * 3. One entry per spool batch (not per record), plus one per gap.
 * 4. Pruning (seal.ts) deletes only entries sealed into every output, oldest
 *    first, and keeps the last pruned entry's seq and hash in
 *    `manifest_streams`, so that the rest of the chain still verifies.
 */

// manifest_entries is a rowid table: its rows (every id and hash of a batch) are large, and
// SQLite keeps large rows better in a rowid table than in a WITHOUT ROWID one.
export const MANIFEST_MIGRATIONS: MigrationStep[] = [
  `CREATE TABLE manifest_entries (
     stream TEXT NOT NULL,
     seq INTEGER NOT NULL,
     kind TEXT NOT NULL,
     time_ms INTEGER NOT NULL,
     batch_id INTEGER,
     input TEXT NOT NULL,
     source TEXT,
     records INTEGER NOT NULL,
     first_id TEXT,
     last_id TEXT,
     ids TEXT,
     ids_digest TEXT,
     hashes BLOB,
     digest TEXT,
     gap TEXT,
     policy TEXT,
     prev TEXT NOT NULL,
     hash TEXT NOT NULL,
     hmac TEXT,
     PRIMARY KEY (stream, seq)
   );
   CREATE TABLE manifest_streams (
     stream TEXT PRIMARY KEY,
     input TEXT NOT NULL,
     head_seq INTEGER NOT NULL,
     head_hash TEXT NOT NULL,
     pruned_seq INTEGER NOT NULL DEFAULT 0,
     pruned_hash TEXT NOT NULL
   ) WITHOUT ROWID;
   CREATE TABLE manifest_sealed (
     output TEXT NOT NULL,
     stream TEXT NOT NULL,
     sealed_seq INTEGER NOT NULL,
     PRIMARY KEY (output, stream)
   ) WITHOUT ROWID;
   CREATE TABLE manifest_seals (
     output TEXT NOT NULL,
     seq INTEGER NOT NULL,
     time_ms INTEGER NOT NULL,
     hash TEXT NOT NULL,
     record_id TEXT NOT NULL,
     PRIMARY KEY (output, seq)
   ) WITHOUT ROWID;`,
  // v2: what an output wrote where (S3 keys and ETags), for the manifests that seal those batches.
  `CREATE TABLE manifest_items (
     output TEXT NOT NULL,
     key TEXT NOT NULL,
     first_batch INTEGER NOT NULL,
     last_batch INTEGER NOT NULL,
     item TEXT NOT NULL,
     time_ms INTEGER NOT NULL,
     PRIMARY KEY (output, key)
   ) WITHOUT ROWID;`,
];

/** The stream of audit policy entries (one for the agent, not per input). */
export const POLICY_STREAM = '@audit_policy';

/** An entry as stored, with what its hash covers and the per-record data. */
export interface StoredEntry extends EntryFields {
  ids: string[];
  hashes: Buffer | null;
  hash: string;
  hmac: string | null;
}

/** A records entry's ids, gathered before the transaction; the hashes come from the stored bytes. */
export interface PreparedRecords {
  stream: string;
  input: string;
  source: EntrySource | null;
  records: number;
  firstId: string;
  lastId: string;
  idsText: string;
  idsDigest: string;
}

export function prepareRecords(input: string, stream: string, source: EntrySource | null, records: readonly SpooledRecord[]): PreparedRecords {
  const ids: string[] = [];
  for (const r of records) ids.push(r.id);
  const idsText = ids.join('\n');
  return { stream, input, source, records: records.length, firstId: ids[0]!, lastId: ids[ids.length - 1]!, idsText, idsDigest: sha256Hex(idsText) };
}

/**
 * The record hashes of a batch from its spool framing (`id \t time \t json \n`
 * per record, see encodeBatchBytes): each record's JSON is hashed where the
 * encoder already wrote it as UTF-8, so no record is converted a second time.
 * A JSON line holds no raw newline; an id holds no tab (the encoder replaces them).
 */
export function hashFramed(data: Buffer, records: number): Buffer {
  const out = Buffer.allocUnsafe(records * RECORD_HASH_BYTES);
  let o = 0;
  for (let i = 0; i < records; i++) {
    const t1 = data.indexOf(0x09, o);
    const t2 = data.indexOf(0x09, t1 + 1);
    let nl = data.indexOf(0x0a, t2 + 1);
    if (nl === -1) nl = data.length;
    // A binary (latin1) digest string written into place costs far less than a Buffer digest.
    out.write(hash('sha256', data.subarray(t2 + 1, nl), 'binary'), i * RECORD_HASH_BYTES, 'binary');
    o = nl + 1;
  }
  return out;
}

export interface EntryRow {
  stream: string;
  seq: number;
  kind: string;
  time_ms: number;
  batch_id: number | null;
  input: string;
  source: string | null;
  records: number;
  first_id: string | null;
  last_id: string | null;
  ids: string | null;
  ids_digest: string | null;
  hashes: Buffer | null;
  digest: string | null;
  gap: string | null;
  policy: string | null;
  prev: string;
  hash: string;
  hmac: string | null;
}

export function entryFromRow(r: EntryRow): StoredEntry {
  return {
    stream: r.stream,
    seq: r.seq,
    kind: r.kind as EntryKind,
    timeMs: r.time_ms,
    batchId: r.batch_id,
    input: r.input,
    source: r.source === null ? null : (JSON.parse(r.source) as EntrySource),
    records: r.records,
    firstId: r.first_id,
    lastId: r.last_id,
    idsDigest: r.ids_digest,
    digest: r.digest,
    gap: r.gap === null ? null : (JSON.parse(r.gap) as EntryGap),
    policy: r.policy === null ? null : (JSON.parse(r.policy) as { file: string; sha256: string }),
    prev: r.prev,
    ids: r.ids === null || r.ids === '' ? [] : r.ids.split('\n'),
    hashes: r.hashes,
    hash: r.hash,
    hmac: r.hmac,
  };
}

export interface StreamHead {
  stream: string;
  input: string;
  headSeq: number;
  headHash: string;
  prunedSeq: number;
  prunedHash: string;
}

export class ManifestChain {
  readonly #db: Database;
  readonly #hmacKey: Buffer | undefined;
  readonly #stmt: { head: Statement; insertHead: Statement; updateHead: Statement; insert: Statement };

  constructor(db: Database, opts: { hmacKey?: Buffer } = {}) {
    this.#db = db;
    this.#hmacKey = opts.hmacKey;
    this.#stmt = {
      head: db.prepare('SELECT head_seq AS seq, head_hash AS hash FROM manifest_streams WHERE stream = ?'),
      insertHead: db.prepare('INSERT INTO manifest_streams (stream, input, head_seq, head_hash, pruned_seq, pruned_hash) VALUES (?, ?, ?, ?, 0, ?)'),
      updateHead: db.prepare('UPDATE manifest_streams SET head_seq = ?, head_hash = ? WHERE stream = ?'),
      insert: db.prepare(
        `INSERT INTO manifest_entries (stream, seq, kind, time_ms, batch_id, input, source, records, first_id, last_id, ids, ids_digest, hashes, digest, gap, policy, prev, hash, hmac)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
    };
  }

  /** Inside the input's transaction: the entry for the batch `batchId` just stored. */
  writeRecords(p: PreparedRecords, hashes: Buffer, batchId: number, nowMs: number): void {
    this.#write(
      {
        stream: p.stream,
        kind: 'records',
        timeMs: nowMs,
        batchId,
        input: p.input,
        source: p.source,
        records: p.records,
        firstId: p.firstId,
        lastId: p.lastId,
        idsDigest: p.idsDigest,
        digest: entryDigest(hashes),
        gap: null,
        policy: null,
      },
      p.idsText,
      hashes,
    );
  }

  /** A gap of its own: what is known to be missing from the stream, and why. */
  writeGap(input: string, stream: string, gap: EntryGap, nowMs: number, source: EntrySource | null = null): void {
    const ids = gap.ids ?? [];
    this.#write(
      {
        stream,
        kind: 'gap',
        timeMs: nowMs,
        batchId: null,
        input,
        source,
        records: gap.records ?? 0,
        firstId: ids[0] ?? null,
        lastId: ids.at(-1) ?? null,
        idsDigest: null,
        digest: null,
        gap,
        policy: null,
      },
      null,
      null,
    );
  }

  /** Records the audit policy's hash when it differs from the last one recorded. Returns true when it wrote an entry. */
  notePolicy(file: string, sha256: string, nowMs: number): boolean {
    const last = this.#db
      .prepare('SELECT policy FROM manifest_entries WHERE stream = ? ORDER BY seq DESC LIMIT 1')
      .get(POLICY_STREAM) as { policy: string | null } | undefined;
    const lastPolicy = last?.policy ? (JSON.parse(last.policy) as { sha256: string }) : undefined;
    if (lastPolicy?.sha256 === sha256) return false;
    this.#write(
      { stream: POLICY_STREAM, kind: 'policy', timeMs: nowMs, batchId: null, input: '', source: null, records: 0, firstId: null, lastId: null, idsDigest: null, digest: null, gap: null, policy: { file, sha256 } },
      null,
      null,
    );
    return true;
  }

  #write(e: Omit<EntryFields, 'seq' | 'prev'>, idsText: string | null, hashes: Buffer | null): void {
    const head = this.#stmt.head.get(e.stream) as { seq: number; hash: string } | undefined;
    const seq = (head?.seq ?? 0) + 1;
    const fields: EntryFields = { ...e, seq, prev: head?.hash ?? GENESIS };
    const hash = entryHash(fields);
    const hmac = this.#hmacKey ? hmacHex(this.#hmacKey, hash) : null;
    this.#stmt.insert.run(
      e.stream,
      seq,
      e.kind,
      e.timeMs,
      e.batchId,
      e.input,
      e.source === null ? null : JSON.stringify(e.source),
      e.records,
      e.firstId,
      e.lastId,
      idsText,
      e.idsDigest,
      hashes,
      e.digest,
      e.gap === null ? null : JSON.stringify(e.gap),
      e.policy === null ? null : JSON.stringify(e.policy),
      fields.prev,
      hash,
      hmac,
    );
    if (head) this.#stmt.updateHead.run(seq, hash, e.stream);
    else this.#stmt.insertHead.run(e.stream, e.input, seq, hash, GENESIS);
  }
}

export function readHeads(db: Database): StreamHead[] {
  return db
    .prepare(
      'SELECT stream, input, head_seq AS headSeq, head_hash AS headHash, pruned_seq AS prunedSeq, pruned_hash AS prunedHash FROM manifest_streams ORDER BY stream',
    )
    .all() as StreamHead[];
}

export function readEntries(db: Database, stream: string, fromSeq: number, toSeq: number): StoredEntry[] {
  return (
    db.prepare('SELECT * FROM manifest_entries WHERE stream = ? AND seq >= ? AND seq <= ? ORDER BY seq').all(stream, fromSeq, toSeq) as EntryRow[]
  ).map(entryFromRow);
}

export function hasManifestTables(db: Database): boolean {
  return db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'manifest_entries'").get() !== undefined;
}
