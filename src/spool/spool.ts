import fs from 'node:fs';
import path from 'node:path';
import BetterSqlite3, { type Database, type Statement } from 'better-sqlite3';
import { ErrorCode, KtrailError } from '../errors.ts';
import { SpooledBytesRecord, type SpooledRecord } from '../pipeline/record.ts';
import { deadLetterRow, migrateDeadLettersV3, type DeadLetterEntry } from './dead-letter.ts';
import { migrate, type MigrationStep } from './migrations.ts';

export type { DeadLetterEntry };

/**
 * The spool: the one durable hand-off between inputs and outputs.
 *
 * Invariants kept here (each has a test):
 * 1. An input's records, its dead letters and its checkpoint are written in ONE
 *    transaction (`append`). After a crash either all of them are there or none.
 * 2. A batch carries one delivery row per output it routes to. An output acks by
 *    deleting its rows; the batch is deleted in the same transaction once no row
 *    is left. Outputs ack independently and in any order.
 * 3. The byte total is bounded by `maxBytes`: `append` refuses (block) or drops
 *    (drop_newest) beyond it; an empty spool always accepts one batch so that a
 *    batch larger than the limit cannot wedge the agent. A caller may pass a
 *    headroom: it is then full that many bytes earlier, so that the bytes above
 *    stay for callers without one (the audit webhook's reserve).
 * 4. One process owns a state directory: an exclusive SQLite lock on
 *    `ktrail.lock`, held for the life of the Spool and released by the OS even
 *    on SIGKILL, keeps a second agent from sending the same batches.
 * 5. The dead-letter table is bounded by `deadLetterMaxBytes`; the oldest rows
 *    are pruned beyond it and counted.
 *
 * Totals (spool and per-output backlog, dead letters) are kept in memory,
 * seeded from the tables at open and moved in step with every write, so that
 * metrics and readiness never aggregate over the tables.
 */

export const SPOOL_DB_FILE = 'ktrail.db';
export const SPOOL_LOCK_FILE = 'ktrail.lock';

export type WhenFull = 'block' | 'drop_newest';

export interface AppendRequest {
  input: string;
  records: readonly SpooledRecord[];
  /** Outputs this batch must be delivered to. */
  routes: readonly string[];
  deadLetters?: readonly DeadLetterEntry[];
  /** Runs inside the same transaction: move the input's checkpoint here. */
  checkpoint?: (db: Database) => void;
  /** drop_newest: drop the records when full but still commit checkpoint and dead letters. */
  dropWhenFull?: boolean;
  /** Bytes below `maxBytes` this input must leave free (see `isFull`). */
  headroomBytes?: number;
  /**
   * Runs inside the same transaction, after the batch is stored (batchId
   * undefined when it was not): the completeness chain's entry. `data` is the
   * batch's framing as stored, valid only during the call.
   */
  manifest?: (db: Database, batchId: number | undefined, data: Buffer) => void;
}

export interface AppendResult {
  batchId: number | undefined;
  dropped: number;
  bytes: number;
}

export interface BatchRef {
  id: number;
  input: string;
  createdMs: number;
  recordCount: number;
  bytes: number;
}

export interface AppendEvent {
  routes: readonly string[];
  records: number;
  bytes: number;
}

interface Totals {
  batches: number;
  records: number;
  bytes: number;
}

export interface OutputBacklog {
  pendingBatches: number;
  pendingRecords: number;
  pendingBytes: number;
  oldestCreatedMs: number | undefined;
  /** Highest batch id below which everything routed to the output is acked. */
  watermark: number;
}

const SPOOL_MIGRATIONS: MigrationStep[] = [
  `CREATE TABLE spool_batches (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     input TEXT NOT NULL,
     created_ms INTEGER NOT NULL,
     record_count INTEGER NOT NULL,
     bytes INTEGER NOT NULL,
     data TEXT NOT NULL
   );
   CREATE TABLE spool_deliveries (
     output TEXT NOT NULL,
     batch_id INTEGER NOT NULL,
     PRIMARY KEY (output, batch_id)
   ) WITHOUT ROWID;
   CREATE INDEX spool_deliveries_batch ON spool_deliveries (batch_id);
   CREATE TABLE output_requests (
     output TEXT NOT NULL,
     first_batch INTEGER NOT NULL,
     last_batch INTEGER NOT NULL,
     created_ms INTEGER NOT NULL,
     PRIMARY KEY (output, first_batch)
   ) WITHOUT ROWID;
   CREATE TABLE dead_letters (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     time_ms INTEGER NOT NULL,
     component TEXT NOT NULL,
     output TEXT,
     input TEXT,
     record_id TEXT,
     batch_id INTEGER,
     reason TEXT NOT NULL,
     data TEXT NOT NULL
   );
   CREATE TABLE input_checkpoints (
     input TEXT NOT NULL,
     key TEXT NOT NULL,
     value TEXT NOT NULL,
     updated_ms INTEGER NOT NULL,
     PRIMARY KEY (input, key)
   ) WITHOUT ROWID;`,
  // v2: dead letters carry their size, so the table can be bounded without scanning it.
  `ALTER TABLE dead_letters ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
   UPDATE dead_letters SET bytes = length(CAST(data AS BLOB)) + length(reason);`,
  // v3: a reason code, the bytes as a BLOB (or withheld: length and sha256 only), the source.
  migrateDeadLettersV3,
];

/**
 * Spool framing, the one encoder: one line per record, `id \t timeMs \t json \n`
 * (tabs and line breaks in an id become spaces), written straight into one reused buffer: no rope of
 * strings to flatten, no second UTF-8 pass to measure it, and SQLite copies
 * the bytes as they are (bound as a blob, stored as TEXT). The result is only
 * valid until the next call.
 */
let encodeBuf = Buffer.allocUnsafe(1024 * 1024);
export function encodeBatchBytes(records: readonly SpooledRecord[]): Buffer {
  let o = 0;
  for (const r of records) {
    const id = /[\t\n\r]/.test(r.id) ? r.id.replace(/[\t\n\r]/g, ' ') : r.id;
    // A UTF-16 code unit is at most 3 UTF-8 bytes; 24 bytes cover the time and separators.
    const need = o + id.length * 3 + (r.bytes !== undefined ? r.bytes.length : r.json.length * 3) + 24;
    if (need > encodeBuf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(need, encodeBuf.length * 2));
      encodeBuf.copy(bigger, 0, 0, o);
      encodeBuf = bigger;
    }
    o += encodeBuf.write(id, o);
    encodeBuf[o++] = 0x09;
    o += encodeBuf.write(String(r.timeMs), o, 'latin1');
    encodeBuf[o++] = 0x09;
    // A record read back from the spool (a resend) still has its bytes: copied, not encoded again.
    if (r.bytes !== undefined) o += r.bytes.copy(encodeBuf, o);
    else o += encodeBuf.write(r.json, o);
    encodeBuf[o++] = 0x0a;
  }
  const out = encodeBuf.subarray(0, o);
  // Give a buffer grown for one huge batch back.
  if (encodeBuf.length > 16 * 1024 * 1024) encodeBuf = Buffer.allocUnsafe(1024 * 1024);
  return out;
}

/** `storedMs`: when the batch was committed (its created_ms), given to every record. */
export function decodeBatch(input: string, data: string, storedMs?: number): SpooledRecord[] {
  const out: SpooledRecord[] = [];
  let start = 0;
  while (start < data.length) {
    let end = data.indexOf('\n', start);
    if (end === -1) end = data.length;
    const t1 = data.indexOf('\t', start);
    const t2 = data.indexOf('\t', t1 + 1);
    const r: SpooledRecord = {
      id: data.slice(start, t1),
      timeMs: Number(data.slice(t1 + 1, t2)),
      input,
      json: data.slice(t2 + 1, end),
    };
    if (storedMs !== undefined) r.storedMs = storedMs;
    out.push(r);
    start = end + 1;
  }
  return out;
}

/**
 * The same framing read as bytes (what `readBatch` does): every record's JSON
 * stays a view into `data` (`SpooledRecord.bytes`), decoded to a string only
 * if an output asks for `json`. Only the short id becomes a string here.
 * `storedMs` as in `decodeBatch`.
 */
export function decodeBatchBuffer(input: string, data: Buffer, storedMs?: number): SpooledRecord[] {
  const out: SpooledRecord[] = [];
  const len = data.length;
  let start = 0;
  while (start < len) {
    let end = data.indexOf(0x0a, start);
    if (end === -1) end = len;
    const t1 = data.indexOf(0x09, start);
    const t2 = data.indexOf(0x09, t1 + 1);
    const r = new SpooledBytesRecord(data.toString('utf8', start, t1), timeOf(data, t1 + 1, t2), input, data.subarray(t2 + 1, end));
    if (storedMs !== undefined) r.storedMs = storedMs;
    out.push(r);
    start = end + 1;
  }
  return out;
}

/** The decimal time between two tabs, without a string for the common case (plain digits). */
function timeOf(data: Buffer, from: number, to: number): number {
  let t = 0;
  for (let i = from; i < to; i++) {
    const d = data[i]! - 0x30;
    if (d < 0 || d > 9) return Number(data.toString('latin1', from, to)); // a sign or an exponent
    t = t * 10 + d;
  }
  return t;
}

export interface SpoolOptions {
  stateDir: string;
  maxBytes: number;
  /** Bound of the dead-letter table (default 256 MiB). */
  deadLetterMaxBytes?: number;
  /** Open read-only (status command while the agent runs). */
  readonly?: boolean;
  /** How long to wait for another process to release the state directory (default 3 s). */
  lockTimeoutMs?: number;
}

const DEFAULT_DEAD_LETTER_MAX_BYTES = 256 * 1024 * 1024;

export class Spool {
  readonly db: Database;
  readonly maxBytes: number;
  #bytes = 0;
  #batches = 0;
  #records = 0;
  #closed = false;
  #lock: Database | undefined;
  #backlog = new Map<string, Totals>();
  #deadLetterMaxBytes = DEFAULT_DEAD_LETTER_MAX_BYTES;
  #deadLetterRows = 0;
  #deadLetterBytes = 0;
  #spaceWaiters: Array<() => void> = [];
  #appendListeners = new Set<(e: AppendEvent) => void>();
  #pruneListeners = new Set<(rows: number) => void>();
  #stmt!: {
    insertBatch: Statement;
    insertDelivery: Statement;
    insertDeadLetter: Statement;
    deleteDelivery: Statement;
    remainingDeliveries: Statement;
    batchSize: Statement;
    oldestPending: Statement;
    deleteBatch: Statement;
    pruneDeadLetters: Statement;
    pending: Statement;
    readBatch: Statement;
    insertRequest: Statement;
    deleteRequest: Statement;
    listRequests: Statement;
  };

  constructor(opts: SpoolOptions) {
    this.maxBytes = opts.maxBytes;
    const file = path.join(opts.stateDir, SPOOL_DB_FILE);
    if (opts.readonly) {
      if (!fs.existsSync(file)) {
        throw new KtrailError(ErrorCode.STATE_DIR, `no ktrail state database at ${file}; is --state-dir the agent's service.state_dir?`);
      }
      this.db = new BetterSqlite3(file, { readonly: true, fileMustExist: true });
      this.db.pragma('busy_timeout = 5000');
      return;
    }
    try {
      fs.mkdirSync(opts.stateDir, { recursive: true });
    } catch (err) {
      throw new KtrailError(ErrorCode.STATE_DIR, `cannot create state directory ${opts.stateDir}: ${(err as Error).message}`, { cause: err });
    }
    this.#lock = lockStateDir(opts.stateDir, opts.lockTimeoutMs ?? 3000);
    this.#deadLetterMaxBytes = opts.deadLetterMaxBytes ?? DEFAULT_DEAD_LETTER_MAX_BYTES;
    this.db = new BetterSqlite3(file);
    // WAL: readers (status, outputs) never block the writer. NORMAL: a commit is
    // durable against a process crash (SIGKILL); only an OS crash or power loss
    // can roll back the last transactions, and then checkpoints roll back with
    // their records, so the invariant holds.
    // 64 KiB pages: a batch is one large row, and fewer, larger pages roughly
    // halve the CPU per spooled MiB (npm run bench: spool). Takes effect when
    // the database is created; an existing one keeps its page size.
    this.db.pragma('page_size = 65536');
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('foreign_keys = OFF');
    // 2 MiB of page cache instead of SQLite's 16 MiB: batches are written once
    // and read back once, soon, from the OS page cache; what stays hot is the
    // B-tree interior, a few pages. The 14 MiB are resident memory otherwise
    // (docs/performance.md).
    this.db.pragma('cache_size = -2048');
    migrate(this.db, 'spool', SPOOL_MIGRATIONS);
    this.#prepare();
    const totals = this.db
      .prepare('SELECT count(*) AS batches, coalesce(sum(bytes), 0) AS bytes, coalesce(sum(record_count), 0) AS records FROM spool_batches')
      .get() as { batches: number; bytes: number; records: number };
    this.#bytes = totals.bytes;
    this.#batches = totals.batches;
    this.#records = totals.records;
    for (const row of this.db
      .prepare(
        `SELECT d.output, count(*) AS batches, coalesce(sum(b.record_count), 0) AS records, coalesce(sum(b.bytes), 0) AS bytes
         FROM spool_deliveries d JOIN spool_batches b ON b.id = d.batch_id GROUP BY d.output`,
      )
      .all() as Array<Totals & { output: string }>) {
      this.#backlog.set(row.output, { batches: row.batches, records: row.records, bytes: row.bytes });
    }
    const dl = this.db.prepare('SELECT count(*) AS n, coalesce(sum(bytes), 0) AS bytes FROM dead_letters').get() as { n: number; bytes: number };
    this.#deadLetterRows = dl.n;
    this.#deadLetterBytes = dl.bytes;
  }

  #prepare(): void {
    const db = this.db;
    this.#stmt = {
      // The batch is bound as bytes (encodeBatchBytes) and kept as TEXT, so readers get a string as before.
      insertBatch: db.prepare('INSERT INTO spool_batches (input, created_ms, record_count, bytes, data) VALUES (?, ?, ?, ?, CAST(? AS TEXT))'),
      insertDelivery: db.prepare('INSERT INTO spool_deliveries (output, batch_id) VALUES (?, ?)'),
      insertDeadLetter: db.prepare(
        'INSERT INTO dead_letters (time_ms, component, output, input, record_id, batch_id, code, reason, data, length, sha256, withheld, source, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      pruneDeadLetters: db.prepare('DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters ORDER BY id LIMIT ?) RETURNING bytes'),
      deleteDelivery: db.prepare('DELETE FROM spool_deliveries WHERE output = ? AND batch_id = ?'),
      remainingDeliveries: db.prepare('SELECT 1 FROM spool_deliveries WHERE batch_id = ? LIMIT 1'),
      batchSize: db.prepare('SELECT record_count AS records, bytes FROM spool_batches WHERE id = ?'),
      oldestPending: db.prepare(
        'SELECT b.id, b.created_ms AS createdMs FROM spool_batches b WHERE b.id = (SELECT min(batch_id) FROM spool_deliveries WHERE output = ?)',
      ),
      deleteBatch: db.prepare('DELETE FROM spool_batches WHERE id = ? RETURNING bytes, record_count'),
      pending: db.prepare(
        `SELECT b.id, b.input, b.created_ms AS createdMs, b.record_count AS recordCount, b.bytes
         FROM spool_deliveries d JOIN spool_batches b ON b.id = d.batch_id
         WHERE d.output = ? AND d.batch_id > ? ORDER BY d.batch_id LIMIT ?`,
      ),
      // Read as bytes: the records' JSON goes to request bodies without a round trip through a JS string.
      readBatch: db.prepare('SELECT input, CAST(data AS BLOB) AS data, created_ms AS createdMs FROM spool_batches WHERE id = ?'),
      insertRequest: db.prepare(
        'INSERT OR REPLACE INTO output_requests (output, first_batch, last_batch, created_ms) VALUES (?, ?, ?, ?)',
      ),
      deleteRequest: db.prepare('DELETE FROM output_requests WHERE output = ? AND first_batch = ?'),
      listRequests: db.prepare(
        'SELECT first_batch AS firstBatch, last_batch AS lastBatch FROM output_requests WHERE output = ? ORDER BY first_batch',
      ),
    };
  }

  /** Let a plugin keep its own versioned tables in the same database. */
  migrate(owner: string, steps: readonly MigrationStep[]): void {
    migrate(this.db, owner, steps);
  }

  get bytes(): number {
    return this.#bytes;
  }
  get batches(): number {
    return this.#batches;
  }
  get records(): number {
    return this.#records;
  }

  /**
   * True when a batch of `bytes` would not fit now, leaving `headroomBytes` of
   * `maxBytes` free. An empty spool always fits one.
   */
  isFull(bytes: number, headroomBytes = 0): boolean {
    return this.#batches > 0 && this.#bytes + bytes > this.maxBytes - headroomBytes;
  }

  /** Resolves when `bytes` fits (leaving `headroomBytes` free), or when the signal aborts. */
  async waitForSpace(bytes: number, signal?: AbortSignal, headroomBytes = 0): Promise<void> {
    while (this.isFull(bytes, headroomBytes) && !signal?.aborted && !this.#closed) {
      await new Promise<void>((resolve) => {
        const done = () => {
          signal?.removeEventListener('abort', done);
          resolve();
        };
        this.#spaceWaiters.push(done);
        signal?.addEventListener('abort', done, { once: true });
      });
    }
  }

  /**
   * One transaction: the batch (unless dropped), one delivery row per route,
   * the input's dead letters and its checkpoint.
   */
  append(req: AppendRequest): AppendResult {
    this.#assertOpen();
    const data = encodeBatchBytes(req.records);
    const bytes = data.length;
    const drop = req.records.length > 0 && req.dropWhenFull === true && this.isFull(bytes, req.headroomBytes);
    const store = req.records.length > 0 && req.routes.length > 0 && !drop;
    const now = Date.now();
    let batchId: number | undefined;
    const dl = { rows: 0, bytes: 0 };
    this.db.transaction(() => {
      if (store) {
        batchId = Number(this.#stmt.insertBatch.run(req.input, now, req.records.length, bytes, data).lastInsertRowid);
        for (const output of req.routes) this.#stmt.insertDelivery.run(output, batchId);
      }
      if (req.deadLetters) for (const d of req.deadLetters) this.#insertDeadLetter(d, now, dl);
      req.checkpoint?.(this.db);
      req.manifest?.(this.db, batchId, data);
    })();
    this.#countDeadLetters(dl);
    if (store) {
      this.#bytes += bytes;
      this.#batches += 1;
      this.#records += req.records.length;
      for (const output of req.routes) {
        const t = this.#backlog.get(output) ?? { batches: 0, records: 0, bytes: 0 };
        t.batches += 1;
        t.records += req.records.length;
        t.bytes += bytes;
        this.#backlog.set(output, t);
      }
      const event: AppendEvent = { routes: req.routes, records: req.records.length, bytes };
      for (const l of this.#appendListeners) l(event);
    }
    return { batchId, dropped: drop ? req.records.length : 0, bytes: store ? bytes : 0 };
  }

  #insertDeadLetter(dl: DeadLetterEntry, now: number, count: { rows: number; bytes: number }): void {
    const row = deadLetterRow(dl);
    const bytes = row.bytes;
    this.#stmt.insertDeadLetter.run(
      now,
      dl.component,
      dl.output ?? null,
      dl.input ?? null,
      dl.recordId ?? null,
      dl.batchId ?? null,
      dl.code,
      dl.reason,
      row.data,
      row.length,
      row.sha256,
      dl.withheld ? 1 : 0,
      row.source,
      bytes,
    );
    count.rows += 1;
    count.bytes += bytes;
  }

  /** Account for new dead letters and prune the oldest beyond the bound. */
  #countDeadLetters(added: { rows: number; bytes: number }): void {
    if (added.rows === 0) return;
    this.#deadLetterRows += added.rows;
    this.#deadLetterBytes += added.bytes;
    if (this.#deadLetterBytes <= this.#deadLetterMaxBytes) return;
    // Prune down to 90 % so that pruning does not run on every insert.
    const target = this.#deadLetterMaxBytes * 0.9;
    let pruned = 0;
    this.db.transaction(() => {
      while (this.#deadLetterBytes > target && this.#deadLetterRows > 0) {
        const avgRowBytes = this.#deadLetterBytes / this.#deadLetterRows;
        const step = Math.max(1, Math.ceil((this.#deadLetterBytes - target) / avgRowBytes));
        const gone = this.#stmt.pruneDeadLetters.all(step) as Array<{ bytes: number }>;
        if (gone.length === 0) break;
        for (const g of gone) this.#deadLetterBytes -= g.bytes;
        this.#deadLetterRows -= gone.length;
        pruned += gone.length;
      }
    })();
    if (pruned > 0) for (const l of this.#pruneListeners) l(pruned);
  }

  /** Dead letters outside an input transaction (e.g. an output giving up). */
  deadLetter(entries: readonly DeadLetterEntry[]): void {
    this.#assertOpen();
    const now = Date.now();
    const dl = { rows: 0, bytes: 0 };
    this.db.transaction(() => {
      for (const d of entries) this.#insertDeadLetter(d, now, dl);
    })();
    this.#countDeadLetters(dl);
  }

  get deadLetterRows(): number {
    return this.#deadLetterRows;
  }

  get deadLetterBytes(): number {
    return this.#deadLetterBytes;
  }

  /** Batches routed to `output` with id > `afterId`, oldest first. */
  pending(output: string, afterId: number, limit: number): BatchRef[] {
    this.#assertOpen();
    return this.#stmt.pending.all(output, afterId, limit) as BatchRef[];
  }

  readBatch(id: number): SpooledRecord[] {
    this.#assertOpen();
    const row = this.#stmt.readBatch.get(id) as { input: string; data: Buffer; createdMs: number } | undefined;
    if (!row) return [];
    return decodeBatchBuffer(row.input, row.data, row.createdMs);
  }

  /**
   * An output acknowledges batches (delivered or dead-lettered). In one
   * transaction: its delivery rows go, batches no output still needs go, its
   * request journal entry goes, dead letters are written.
   */
  ack(output: string, batchIds: readonly number[], opts: { deadLetters?: readonly DeadLetterEntry[]; requestFirstBatch?: number } = {}): void {
    this.#assertOpen();
    let freedBytes = 0;
    let freedBatches = 0;
    let freedRecords = 0;
    const acked: Totals = { batches: 0, records: 0, bytes: 0 };
    const now = Date.now();
    const dl = { rows: 0, bytes: 0 };
    this.db.transaction(() => {
      for (const id of batchIds) {
        const size = this.#stmt.batchSize.get(id) as { records: number; bytes: number } | undefined;
        if (this.#stmt.deleteDelivery.run(output, id).changes === 0) continue;
        if (size) {
          acked.batches += 1;
          acked.records += size.records;
          acked.bytes += size.bytes;
        }
        if (this.#stmt.remainingDeliveries.get(id) === undefined) {
          const gone = this.#stmt.deleteBatch.get(id) as { bytes: number; record_count: number } | undefined;
          if (gone) {
            freedBytes += gone.bytes;
            freedBatches += 1;
            freedRecords += gone.record_count;
          }
        }
      }
      if (opts.deadLetters) for (const d of opts.deadLetters) this.#insertDeadLetter(d, now, dl);
      if (opts.requestFirstBatch !== undefined) this.#stmt.deleteRequest.run(output, opts.requestFirstBatch);
    })();
    this.#countDeadLetters(dl);
    const t = this.#backlog.get(output);
    if (t) {
      t.batches -= acked.batches;
      t.records -= acked.records;
      t.bytes -= acked.bytes;
    }
    this.#bytes -= freedBytes;
    this.#batches -= freedBatches;
    this.#records -= freedRecords;
    if (freedBatches > 0) this.#wakeSpaceWaiters();
  }

  /** Journal the composition of a request before its first send, so a restart resends the same group. */
  journalRequest(output: string, firstBatch: number, lastBatch: number): void {
    this.#assertOpen();
    this.#stmt.insertRequest.run(output, firstBatch, lastBatch, Date.now());
  }

  journaledRequests(output: string): Array<{ firstBatch: number; lastBatch: number }> {
    this.#assertOpen();
    return this.#stmt.listRequests.all(output) as Array<{ firstBatch: number; lastBatch: number }>;
  }

  dropJournaledRequest(output: string, firstBatch: number): void {
    this.#stmt.deleteRequest.run(output, firstBatch);
  }

  /** What `output` still has to deliver: in-memory totals plus two indexed lookups. */
  backlog(output: string): OutputBacklog {
    if (this.#lock === undefined) return this.#backlogByQuery(output);
    const t = this.#backlog.get(output) ?? { batches: 0, records: 0, bytes: 0 };
    const oldest = this.#stmt.oldestPending.get(output) as { id: number; createdMs: number } | undefined;
    return {
      pendingBatches: t.batches,
      pendingRecords: t.records,
      pendingBytes: t.bytes,
      oldestCreatedMs: oldest?.createdMs,
      watermark: oldest !== undefined ? oldest.id - 1 : this.#lastBatchId(),
    };
  }

  #lastBatchId(): number {
    const row = this.db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'spool_batches'").get() as { seq: number } | undefined;
    return row?.seq ?? 0;
  }

  /** The same, by aggregating the tables (read-only opens, e.g. `ktrail status`). */
  #backlogByQuery(output: string): OutputBacklog {
    const row = this.db
      .prepare(
        `SELECT count(*) AS n, coalesce(sum(b.record_count), 0) AS records, coalesce(sum(b.bytes), 0) AS bytes,
                min(b.created_ms) AS oldest, min(d.batch_id) AS minId
         FROM spool_deliveries d JOIN spool_batches b ON b.id = d.batch_id WHERE d.output = ?`,
      )
      .get(output) as { n: number; records: number; bytes: number; oldest: number | null; minId: number | null };
    const maxRow = this.db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'spool_batches'").get() as
      | { seq: number }
      | undefined;
    return {
      pendingBatches: row.n,
      pendingRecords: row.records,
      pendingBytes: row.bytes,
      oldestCreatedMs: row.oldest ?? undefined,
      watermark: row.minId !== null ? row.minId - 1 : (maxRow?.seq ?? 0),
    };
  }

  /** Outputs with undelivered batches that are not in `configured` (renamed or removed from the config). */
  orphanedOutputs(configured: readonly string[]): Map<string, Totals> {
    const known = new Set(configured);
    const out = new Map<string, Totals>();
    for (const [output, t] of this.#backlog) if (!known.has(output) && t.batches > 0) out.set(output, { ...t });
    return out;
  }

  /**
   * Give up an output's undelivered batches (an explicit operator choice:
   * `spool.release_removed_outputs`). Returns what was released.
   */
  releaseOutput(output: string): Totals {
    const before = { ...(this.#backlog.get(output) ?? { batches: 0, records: 0, bytes: 0 }) };
    const ids = (this.db.prepare('SELECT batch_id AS id FROM spool_deliveries WHERE output = ?').all(output) as Array<{ id: number }>).map((r) => r.id);
    this.ack(output, ids);
    this.db.prepare('DELETE FROM output_requests WHERE output = ?').run(output);
    this.#backlog.delete(output);
    return before;
  }

  onAppend(fn: (e: AppendEvent) => void): () => void {
    this.#appendListeners.add(fn);
    return () => this.#appendListeners.delete(fn);
  }

  onDeadLetterPrune(fn: (rows: number) => void): () => void {
    this.#pruneListeners.add(fn);
    return () => this.#pruneListeners.delete(fn);
  }

  #wakeSpaceWaiters(): void {
    const waiters = this.#spaceWaiters;
    this.#spaceWaiters = [];
    for (const w of waiters) w();
  }

  #assertOpen(): void {
    if (this.#closed) throw new KtrailError(ErrorCode.SPOOL_CLOSED, 'spool is closed');
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#wakeSpaceWaiters();
    this.db.close();
    this.#lock?.close();
  }
}

/**
 * Take the state directory for this process: an EXCLUSIVE lock on a small
 * SQLite file, held until the connection closes. The OS drops it when the
 * process dies, SIGKILL included, and it works across PID namespaces (two
 * pods sharing a hostPath), where a PID file would not.
 */
function lockStateDir(stateDir: string, timeoutMs: number): Database {
  const file = path.join(stateDir, SPOOL_LOCK_FILE);
  const lock = new BetterSqlite3(file, { timeout: timeoutMs });
  try {
    lock.pragma('locking_mode = EXCLUSIVE');
    lock.exec('BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS owner (pid INTEGER, since_ms INTEGER); DELETE FROM owner;');
    lock.prepare('INSERT INTO owner (pid, since_ms) VALUES (?, ?)').run(process.pid, Date.now());
    lock.exec('COMMIT');
    return lock;
  } catch (err) {
    lock.close();
    if ((err as { code?: string }).code === 'SQLITE_BUSY') {
      throw new KtrailError(
        ErrorCode.STATE_DIR,
        `state directory ${stateDir} is in use by another ktrail process; each agent needs its own service.state_dir`,
        { cause: err },
      );
    }
    throw err;
  }
}

/** Generic per-input key/value checkpoints, for inputs that need no table of their own. */
export function writeCheckpoint(db: Database, input: string, key: string, value: string): void {
  db.prepare(
    `INSERT INTO input_checkpoints (input, key, value, updated_ms) VALUES (?, ?, ?, ?)
     ON CONFLICT(input, key) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms`,
  ).run(input, key, value, Date.now());
}

export function readCheckpoint(db: Database, input: string, key: string): string | undefined {
  const row = db.prepare('SELECT value FROM input_checkpoints WHERE input = ? AND key = ?').get(input, key) as
    | { value: string }
    | undefined;
  return row?.value;
}
