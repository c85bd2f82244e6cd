import type { Database, Statement } from 'better-sqlite3';
import type { MigrationStep } from '../../spool/migrations.ts';

/**
 * The input's own tables in the state database.
 *
 * `audit_file_checkpoints` holds one row per tracked file: its identity
 * (dev, inode, fingerprint), where it was last seen, the offset just past the
 * last complete line committed to the spool (in decompressed bytes for a
 * `.gz`), and its last known size. Rows are written only inside an emit's
 * checkpoint callback, i.e. in the transaction that stores the records read up
 * to that offset. `dev`/`ino` are empty for a row whose inode no longer holds
 * its content (truncated): such a row can only be matched again by
 * fingerprint (a copy, a `.gz`).
 *
 * `audit_file_inputs` records when an input first ran, so `start_at: end`
 * applies to that first start only.
 */
export const CHECKPOINT_MIGRATIONS: MigrationStep[] = [
  `CREATE TABLE audit_file_checkpoints (
     input TEXT NOT NULL,
     file_id TEXT NOT NULL,
     path TEXT NOT NULL,
     dev TEXT NOT NULL,
     ino TEXT NOT NULL,
     fingerprint TEXT,
     fp_len INTEGER NOT NULL,
     read_offset INTEGER NOT NULL,
     size_bytes INTEGER NOT NULL,
     compressed INTEGER NOT NULL,
     first_seen_ms INTEGER NOT NULL,
     updated_ms INTEGER NOT NULL,
     PRIMARY KEY (input, file_id)
   ) WITHOUT ROWID;
   CREATE TABLE audit_file_inputs (
     input TEXT PRIMARY KEY,
     first_start_ms INTEGER NOT NULL
   ) WITHOUT ROWID;`,
  // Gaps, for `ktrail status`: files lost before they were read to the end,
  // and audit log rotated away unseen while ktrail was not running.
  `CREATE TABLE audit_file_gaps (
     input TEXT NOT NULL,
     detected_ms INTEGER NOT NULL,
     reason TEXT NOT NULL,
     file TEXT,
     from_ms INTEGER,
     to_ms INTEGER,
     files INTEGER NOT NULL,
     bytes INTEGER
   );
   CREATE INDEX audit_file_gaps_by_input ON audit_file_gaps (input, detected_ms);`,
];

export interface GapRecord {
  reason: string;
  file?: string;
  fromMs?: number;
  toMs?: number;
  files: number;
  bytes?: number;
}

/** Gaps kept per input for `ktrail status`; older ones are counted in the metrics and logs only. */
const GAPS_KEPT = 100;

export interface CheckpointRow {
  fileId: string;
  path: string;
  dev: string;
  ino: string;
  fingerprint: string | undefined;
  fpLen: number;
  offset: number;
  size: number;
  compressed: boolean;
  firstSeenMs: number;
  updatedMs: number;
}

interface DbRow {
  file_id: string;
  path: string;
  dev: string;
  ino: string;
  fingerprint: string | null;
  fp_len: number;
  read_offset: number;
  size_bytes: number;
  compressed: number;
  first_seen_ms: number;
  updated_ms: number;
}

export class CheckpointStore {
  readonly #input: string;
  readonly #stmt: {
    load: Statement;
    firstStart: Statement;
    markStart: Statement;
    upsertFile: Statement;
    advance: Statement;
    remove: Statement;
    gap: Statement;
    trimGaps: Statement;
  };

  constructor(db: Database, input: string) {
    this.#input = input;
    this.#stmt = {
      load: db.prepare('SELECT * FROM audit_file_checkpoints WHERE input = ? ORDER BY first_seen_ms, file_id'),
      firstStart: db.prepare('SELECT first_start_ms AS ms FROM audit_file_inputs WHERE input = ?'),
      markStart: db.prepare('INSERT OR IGNORE INTO audit_file_inputs (input, first_start_ms) VALUES (?, ?)'),
      // Discovery owns where a file is; it never moves the offset of a known row.
      upsertFile: db.prepare(
        `INSERT INTO audit_file_checkpoints
           (input, file_id, path, dev, ino, fingerprint, fp_len, read_offset, size_bytes, compressed, first_seen_ms, updated_ms)
         VALUES (@input, @fileId, @path, @dev, @ino, @fingerprint, @fpLen, @offset, @size, @compressed, @firstSeenMs, @updatedMs)
         ON CONFLICT (input, file_id) DO UPDATE SET
           path = excluded.path, dev = excluded.dev, ino = excluded.ino,
           fingerprint = coalesce(excluded.fingerprint, fingerprint), fp_len = max(excluded.fp_len, fp_len),
           size_bytes = excluded.size_bytes, compressed = excluded.compressed, updated_ms = excluded.updated_ms`,
      ),
      // The reader owns the offset; it also inserts the row if discovery's insert is not there.
      advance: db.prepare(
        `INSERT INTO audit_file_checkpoints
           (input, file_id, path, dev, ino, fingerprint, fp_len, read_offset, size_bytes, compressed, first_seen_ms, updated_ms)
         VALUES (@input, @fileId, @path, @dev, @ino, @fingerprint, @fpLen, @offset, @size, @compressed, @firstSeenMs, @updatedMs)
         ON CONFLICT (input, file_id) DO UPDATE SET
           read_offset = excluded.read_offset, size_bytes = excluded.size_bytes,
           fingerprint = coalesce(excluded.fingerprint, fingerprint), fp_len = max(excluded.fp_len, fp_len),
           updated_ms = excluded.updated_ms`,
      ),
      remove: db.prepare('DELETE FROM audit_file_checkpoints WHERE input = ? AND file_id = ?'),
      gap: db.prepare('INSERT INTO audit_file_gaps (input, detected_ms, reason, file, from_ms, to_ms, files, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
      trimGaps: db.prepare(
        'DELETE FROM audit_file_gaps WHERE input = ? AND rowid NOT IN (SELECT rowid FROM audit_file_gaps WHERE input = ? ORDER BY detected_ms DESC, rowid DESC LIMIT ?)',
      ),
    };
  }

  load(): CheckpointRow[] {
    return (this.#stmt.load.all(this.#input) as DbRow[]).map((r) => ({
      fileId: r.file_id,
      path: r.path,
      dev: r.dev,
      ino: r.ino,
      fingerprint: r.fingerprint ?? undefined,
      fpLen: r.fp_len,
      offset: r.read_offset,
      size: r.size_bytes,
      compressed: r.compressed === 1,
      firstSeenMs: r.first_seen_ms,
      updatedMs: r.updated_ms,
    }));
  }

  firstStartMs(): number | undefined {
    const row = this.#stmt.firstStart.get(this.#input) as { ms: number } | undefined;
    return row?.ms;
  }

  /** Run inside a checkpoint callback. */
  markStarted(ms: number): void {
    this.#stmt.markStart.run(this.#input, ms);
  }

  /** Run inside a checkpoint callback: a file's place and identity (offset only for a new row). */
  upsertFile(row: CheckpointRow): void {
    this.#stmt.upsertFile.run(this.#params(row));
  }

  /** Run inside a checkpoint callback: the offset reached by the records of the same emit. */
  advance(row: CheckpointRow): void {
    this.#stmt.advance.run(this.#params(row));
  }

  /** Run inside a checkpoint callback. */
  remove(fileId: string): void {
    this.#stmt.remove.run(this.#input, fileId);
  }

  /** Run inside a checkpoint callback. */
  recordGap(g: GapRecord, nowMs: number): void {
    this.#stmt.gap.run(this.#input, nowMs, g.reason, g.file ?? null, g.fromMs ?? null, g.toMs ?? null, g.files, g.bytes ?? null);
    this.#stmt.trimGaps.run(this.#input, this.#input, GAPS_KEPT);
  }

  #params(row: CheckpointRow): Record<string, unknown> {
    return {
      input: this.#input,
      fileId: row.fileId,
      path: row.path,
      dev: row.dev,
      ino: row.ino,
      fingerprint: row.fingerprint ?? null,
      fpLen: row.fpLen,
      offset: row.offset,
      size: row.size,
      compressed: row.compressed ? 1 : 0,
      firstSeenMs: row.firstSeenMs,
      updatedMs: row.updatedMs,
    };
  }
}

/** Rows for `ktrail status`, read-only. */
export function describeCheckpoints(db: Database, nowMs = Date.now()): Array<Record<string, unknown> & { input: string }> {
  const rows = db
    .prepare('SELECT * FROM audit_file_checkpoints ORDER BY input, path, file_id')
    .all() as Array<DbRow & { input: string }>;
  const iso = (ms: number | null) => (ms === null ? undefined : new Date(ms).toISOString());
  const hasGaps = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_file_gaps'").get() !== undefined;
  const gaps = hasGaps
    ? (db.prepare('SELECT * FROM audit_file_gaps ORDER BY input, detected_ms DESC, rowid DESC').all() as Array<{
        input: string;
        detected_ms: number;
        reason: string;
        file: string | null;
        from_ms: number | null;
        to_ms: number | null;
        files: number;
        bytes: number | null;
      }>)
    : [];
  const gapRows = gaps.slice(0, 20 * Math.max(1, new Set(gaps.map((g) => g.input)).size)).map((g) => ({
    input: g.input,
    gap: g.reason,
    ...(g.file !== null ? { file: g.file } : {}),
    ...(g.from_ms !== null ? { from: iso(g.from_ms), to: iso(g.to_ms) } : {}),
    files: g.files,
    ...(g.bytes !== null ? { bytes: g.bytes } : {}),
    detected: iso(g.detected_ms),
  }));
  return [...rows.map((r) => ({
    input: r.input,
    file: r.path,
    offset: r.read_offset,
    size: r.size_bytes,
    lag: Math.max(0, r.size_bytes - r.read_offset),
    ...(r.compressed === 1 ? { compressed: true } : {}),
    ...(r.dev === '' ? { detached: true } : {}),
    updated: new Date(r.updated_ms).toISOString(),
    updatedAgeS: Math.max(0, Math.round((nowMs - r.updated_ms) / 1000)),
  })), ...gapRows];
}
