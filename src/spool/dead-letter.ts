import { createHash } from 'node:crypto';
import type { Database } from 'better-sqlite3';

/**
 * What the dead-letter table holds, and the rule for what it may hold.
 *
 * Every row has a stable reason `code` (the metric label, what `ktrail
 * status` groups by), a human `reason` (what and where, never the content),
 * the content's length and sha256, and where it came from. The bytes
 * themselves are stored exactly (a BLOB, so binary junk survives) unless
 * redaction could not prove them clean: then only the description is kept
 * (`withheld`), unless `spool.dead_letter_store_unredactable` says otherwise.
 */
export interface DeadLetterEntry {
  /** The component that gave up on the data (input, processor or output name). */
  component: string;
  /** Output name when an output dead-letters a record. */
  output?: string;
  input?: string;
  recordId?: string;
  batchId?: number;
  /** Stable reason code: `parse_error`, `oversize`, `http_400`, `mapper_parsing_exception`, … */
  code: string;
  /** What went wrong, where (file and offset, HTTP status, the destination's error). */
  reason: string;
  /** The content; undefined when it is withheld. */
  data?: Buffer | string;
  /** Length and sha256 of the content when `data` is withheld (computed from `data` otherwise). */
  length?: number;
  sha256?: string;
  withheld?: boolean;
  /** Where the content was read (a file and offset), as given by the input. */
  source?: { file: string; offset: number; length: number };
}

/** The row a `DeadLetterEntry` becomes. */
export interface DeadLetterRow {
  data: Buffer | null;
  length: number;
  sha256: string;
  source: string | null;
  /** What the row counts against `spool.dead_letter_max_bytes`. */
  bytes: number;
}

export function deadLetterRow(dl: DeadLetterEntry): DeadLetterRow {
  const data = dl.data === undefined ? null : typeof dl.data === 'string' ? Buffer.from(dl.data, 'utf8') : dl.data;
  const length = data?.length ?? dl.length ?? 0;
  const sha256 = data !== null ? sha256Hex(data) : (dl.sha256 ?? '');
  const source = dl.source ? JSON.stringify(dl.source) : null;
  return { data, length, sha256, source, bytes: (data?.length ?? 0) + dl.reason.length + (source?.length ?? 0) + 64 };
}

export function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * A code for the free-text reason of a dead letter written before codes
 * existed (migration v3 only): its first word-ish token, so that "HTTP 503:
 * upstream down" becomes `http_503`. New rows carry the code the outcome gave
 * (src/delivery/outcome.ts).
 */
export function reasonCode(reason: string): string {
  const m = /^(HTTP \d{3}|[A-Za-z_]+(?:[ _-][A-Za-z_]+)?)/.exec(reason);
  return (m?.[1] ?? 'other').toLowerCase().replace(/[^a-z0-9]+/g, '_').slice(0, 40);
}

/**
 * Migration v3 of the spool: the table above. Old rows keep their bytes
 * (now a BLOB), get a code from their reason text, and their hash.
 */
export function migrateDeadLettersV3(db: Database): void {
  db.exec(`CREATE TABLE dead_letters_v3 (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     time_ms INTEGER NOT NULL,
     component TEXT NOT NULL,
     output TEXT,
     input TEXT,
     record_id TEXT,
     batch_id INTEGER,
     code TEXT NOT NULL,
     reason TEXT NOT NULL,
     data BLOB,
     length INTEGER NOT NULL,
     sha256 TEXT NOT NULL,
     withheld INTEGER NOT NULL DEFAULT 0,
     source TEXT,
     bytes INTEGER NOT NULL
   )`);
  const insert = db.prepare(
    `INSERT INTO dead_letters_v3 (id, time_ms, component, output, input, record_id, batch_id, code, reason, data, length, sha256, withheld, source, bytes)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, NULL, ?)`,
  );
  const old = db.prepare('SELECT id, time_ms, component, output, input, record_id, batch_id, reason, CAST(data AS BLOB) AS data, bytes FROM dead_letters ORDER BY id');
  for (const r of old.iterate() as Iterable<Record<string, unknown>>) {
    const data = (r.data as Buffer | null) ?? Buffer.alloc(0);
    insert.run(r.id, r.time_ms, r.component, r.output, r.input, r.record_id, r.batch_id, reasonCode(String(r.reason)), r.reason, data, data.length, sha256Hex(data), r.bytes);
  }
  db.exec(`DROP TABLE dead_letters;
     ALTER TABLE dead_letters_v3 RENAME TO dead_letters;
     CREATE INDEX dead_letters_code ON dead_letters (component, code);`);
}
