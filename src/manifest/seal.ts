import type { Database, Statement } from 'better-sqlite3';
import type { SpooledRecord } from '../pipeline/record.ts';
import type { Spool } from '../spool/spool.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { entryFromRow, POLICY_STREAM, readHeads, type EntryRow, type StoredEntry } from './chain.ts';
import { GENESIS, hmacHex, sha256Hex } from './digest.ts';
import { MANIFEST_ID_PREFIX, MANIFEST_INPUT } from './record.ts';

/**
 * Sealing: the chain entries an output has acknowledged become a manifest
 * record, stored in the spool like any batch and routed to that output only,
 * so a manifest has the delivery guarantees of data (journal, retry,
 * deterministic id `ktrail-manifest:<output>:<seq>`). The file and http
 * outputs ship it as a record of its own type (`{"ktrail_manifest": …}`).
 *
 * Invariants:
 * 1. Per output and stream, manifests cover consecutive entries: a manifest
 *    starts where the last one ended (`manifest_sealed`), in the transaction
 *    that stores the manifest.
 * 2. An entry is sealed into an output only once the output acknowledged its
 *    batch (no delivery row left), and in order: the first unacknowledged
 *    entry ends the run.
 * 3. Manifests of one output are chained too (`seq`, `prev`): a removed
 *    manifest is a broken chain, not an absence nobody can notice.
 */

export { MANIFEST_ID_PREFIX, MANIFEST_INPUT } from './record.ts';
/** Bound of one manifest record: it carries every record id and hash it covers. */
const MAX_RECORDS_PER_MANIFEST = 20_000;
const MAX_ENTRIES_PER_MANIFEST = 2_000;

/** An entry as a manifest carries it (JSON): long lists as one string each, cheap to write and read. */
export interface ManifestEntryJson extends Omit<StoredEntry, 'hashes' | 'ids'> {
  /** The record ids, joined by newlines. */
  ids: string;
  /** The records' SHA-256s, concatenated, base64. */
  hashes: string | null;
}

export interface ManifestStreamJson {
  stream: string;
  input: string;
  from_seq: number;
  to_seq: number;
  entries: ManifestEntryJson[];
}

export interface DeadLetteredJson {
  id: string;
  batch_id: number;
  code: string;
}

export interface ItemJson {
  key: string;
  etag?: string;
  index?: string;
  records: number;
  first_batch: number;
  last_batch: number;
}

export interface ManifestJson {
  version: 1;
  output: string;
  node: string;
  seq: number;
  sealed_at_ms: number;
  prev: string;
  streams: ManifestStreamJson[];
  /** Records of the covered batches the output gave up on (its dead letters): known gaps at the destination. */
  dead_lettered: DeadLetteredJson[];
  /** What the output wrote for the covered batches (S3: object keys and ETags); empty where records are their own items (file, http, Elasticsearch ids). */
  items: ItemJson[];
  hash: string;
  hmac: string | null;
}

/** What a manifest's hash covers: its place in the output's chain and the hashes of the entries it seals. */
export function manifestHash(m: Omit<ManifestJson, 'hash' | 'hmac'>): string {
  return sha256Hex(
    JSON.stringify([
      1,
      m.output,
      m.node,
      m.seq,
      m.sealed_at_ms,
      m.prev,
      m.streams.map((s) => [s.stream, s.input, s.from_seq, s.to_seq, s.entries.map((e) => e.hash)]),
      m.dead_lettered.map((d) => [d.id, d.batch_id, d.code]),
      m.items.map((i) => [i.key, i.etag ?? null, i.index ?? null, i.records, i.first_batch, i.last_batch]),
    ]),
  );
}

export interface SealTarget {
  output: string;
  /** Whether this output takes the input's records. */
  takes(input: string): boolean;
}

export interface SealerOptions {
  spool: Spool;
  outputs: readonly SealTarget[];
  node: string;
  hmacKey: Buffer | undefined;
  retainSealedMs: number;
  log: Logger;
  metrics: Metrics;
}

/** A manifest batch in the spool its output has not acknowledged yet. */
interface UnackedSeal {
  batchId: number;
  sealedAtMs: number;
}

export class Sealer {
  readonly #o: SealerOptions;
  readonly #db: Database;
  readonly #stmt: {
    pending: Statement;
    sealedSeq: Statement;
    lastSeal: Statement;
    entries: Statement;
    firstUnsealed: Statement;
    deadLetters: Statement;
    items: Statement;
  };
  /** Per output, its manifests still in the spool, oldest first (for the acknowledged count). */
  readonly #unacked = new Map<string, UnackedSeal[]>();

  constructor(opts: SealerOptions) {
    this.#o = opts;
    const db = opts.spool.db;
    this.#db = db;
    this.#stmt = {
      pending: db.prepare('SELECT 1 FROM spool_deliveries WHERE output = ? AND batch_id = ?'),
      sealedSeq: db.prepare('SELECT sealed_seq AS seq FROM manifest_sealed WHERE output = ? AND stream = ?'),
      lastSeal: db.prepare('SELECT seq, hash FROM manifest_seals WHERE output = ? ORDER BY seq DESC LIMIT 1'),
      entries: db.prepare('SELECT * FROM manifest_entries WHERE stream = ? AND seq > ? ORDER BY seq LIMIT ?'),
      firstUnsealed: db.prepare('SELECT time_ms FROM manifest_entries WHERE stream = ? AND seq > ? ORDER BY seq LIMIT 1'),
      // One look per manifest over its batch range (dead_letters has no index on batch_id).
      deadLetters: db.prepare('SELECT record_id AS id, batch_id, code FROM dead_letters WHERE output = ? AND batch_id BETWEEN ? AND ? AND record_id IS NOT NULL'),
      items: db.prepare('SELECT item FROM manifest_items WHERE output = ? AND last_batch >= ? AND first_batch <= ? ORDER BY first_batch, key'),
    };
    // Manifests a previous run sealed and the outputs still owe: acknowledged later, in this run's count.
    const owed = db
      .prepare(
        `SELECT d.output AS output, d.batch_id AS batchId, b.created_ms AS sealedAtMs FROM spool_deliveries d JOIN spool_batches b ON b.id = d.batch_id
         WHERE b.input = ? ORDER BY d.batch_id`,
      )
      .all(MANIFEST_INPUT) as Array<{ output: string } & UnackedSeal>;
    for (const o of owed) this.#owe(o.output, { batchId: o.batchId, sealedAtMs: o.sealedAtMs });
  }

  #owe(output: string, s: UnackedSeal): void {
    const list = this.#unacked.get(output) ?? [];
    list.push(s);
    this.#unacked.set(output, list);
  }

  /** Counts the manifests the outputs acknowledged since the last look (on the period and when scraped). */
  noteAcknowledged(): void {
    const m = this.#o.metrics;
    for (const [output, list] of this.#unacked) {
      let acked = 0;
      let lastAt: number | undefined;
      const left = list.filter((s) => {
        if (this.#stmt.pending.get(output, s.batchId) !== undefined) return true;
        acked++;
        lastAt = Math.max(lastAt ?? 0, s.sealedAtMs);
        return false;
      });
      this.#unacked.set(output, left);
      if (acked > 0) m.manifestSealsAcknowledged.inc({ output }, acked);
      if (lastAt !== undefined) m.manifestLastAcknowledgedSeal.set({ output }, lastAt / 1000);
    }
  }

  /**
   * Per output, the time of the oldest chain entry of its streams that no
   * manifest of it covers yet (undefined when all are sealed): what an alert
   * on stalled sealing watches.
   */
  oldestUnsealed(): Map<string, number | undefined> {
    const heads = readHeads(this.#db);
    const out = new Map<string, number | undefined>();
    for (const t of this.#o.outputs) {
      let oldest: number | undefined;
      for (const h of heads) {
        if (h.stream !== POLICY_STREAM && !t.takes(h.input)) continue;
        const sealed = (this.#stmt.sealedSeq.get(t.output, h.stream) as { seq: number } | undefined)?.seq ?? h.prunedSeq;
        if (sealed >= h.headSeq) continue;
        const first = this.#stmt.firstUnsealed.get(h.stream, sealed) as { time_ms: number } | undefined;
        if (first !== undefined) oldest = Math.min(oldest ?? first.time_ms, first.time_ms);
      }
      out.set(t.output, oldest);
    }
    return out;
  }

  /** Seal every output's acknowledged entries; then prune what every output has sealed. Returns the manifests written. */
  sealAll(): number {
    let written = 0;
    for (const t of this.#o.outputs) {
      // One output's manifests are bounded in size; loop until caught up.
      for (let i = 0; i < 1000 && this.#sealOne(t); i++) written++;
    }
    this.noteAcknowledged();
    this.#prune();
    return written;
  }

  #sealOne(t: SealTarget): boolean {
    const heads = readHeads(this.#db).filter((h) => h.stream === POLICY_STREAM || t.takes(h.input));
    const streams: ManifestStreamJson[] = [];
    const dead: DeadLetteredJson[] = [];
    let records = 0;
    let entries = 0;
    let minBatch = Number.POSITIVE_INFINITY;
    let maxBatch = 0;
    const covered = new Set<number>();
    for (const h of heads) {
      if (records >= MAX_RECORDS_PER_MANIFEST || entries >= MAX_ENTRIES_PER_MANIFEST) break;
      const sealed = (this.#stmt.sealedSeq.get(t.output, h.stream) as { seq: number } | undefined)?.seq ?? h.prunedSeq;
      if (sealed >= h.headSeq) continue;
      const out: ManifestEntryJson[] = [];
      const rows = this.#stmt.entries.all(h.stream, sealed, MAX_ENTRIES_PER_MANIFEST - entries) as EntryRow[];
      for (const row of rows) {
        if (row.batch_id !== null && this.#stmt.pending.get(t.output, row.batch_id) !== undefined) break;
        if (out.length > 0 && records + row.records > MAX_RECORDS_PER_MANIFEST) break;
        const ids = row.ids ?? '';
        const hashes = row.hashes === null ? null : row.hashes.toString('base64');
        const e = entryFromRow({ ...row, ids: null, hashes: null });
        out.push({ ...e, ids, hashes });
        records += e.records;
        entries++;
        if (e.batchId !== null) {
          minBatch = Math.min(minBatch, e.batchId);
          maxBatch = Math.max(maxBatch, e.batchId);
          covered.add(e.batchId);
        }
      }
      if (out.length > 0) streams.push({ stream: h.stream, input: h.input, from_seq: out[0]!.seq, to_seq: out.at(-1)!.seq, entries: out });
    }
    if (streams.length === 0) return false;
    if (maxBatch > 0) for (const d of this.#stmt.deadLetters.all(t.output, minBatch, maxBatch) as DeadLetteredJson[]) if (covered.has(d.batch_id)) dead.push(d);
    const items = maxBatch === 0 ? [] : (this.#stmt.items.all(t.output, minBatch, maxBatch) as Array<{ item: string }>).map((r) => JSON.parse(r.item) as ItemJson);
    const last = this.#stmt.lastSeal.get(t.output) as { seq: number; hash: string } | undefined;
    const now = Date.now();
    const body = { version: 1 as const, output: t.output, node: this.#o.node, seq: (last?.seq ?? 0) + 1, sealed_at_ms: now, prev: last?.hash ?? GENESIS, streams, dead_lettered: dead, items };
    const hash = manifestHash(body);
    const manifest: ManifestJson = { ...body, hash, hmac: this.#o.hmacKey ? hmacHex(this.#o.hmacKey, hash) : null };
    const id = `${MANIFEST_ID_PREFIX}${t.output}:${manifest.seq}`;
    const record: SpooledRecord = { id, timeMs: now, input: MANIFEST_INPUT, json: JSON.stringify({ ktrail_manifest: manifest }) };
    const appended = this.#o.spool.append({
      input: MANIFEST_INPUT,
      records: [record],
      routes: [t.output],
      checkpoint: (db) => {
        db.prepare('INSERT INTO manifest_seals (output, seq, time_ms, hash, record_id) VALUES (?, ?, ?, ?, ?)').run(t.output, manifest.seq, now, hash, id);
        const up = db.prepare(
          `INSERT INTO manifest_sealed (output, stream, sealed_seq) VALUES (?, ?, ?)
           ON CONFLICT(output, stream) DO UPDATE SET sealed_seq = excluded.sealed_seq`,
        );
        for (const s of streams) up.run(t.output, s.stream, s.to_seq);
      },
    });
    this.#o.metrics.manifestSeals.inc({ output: t.output });
    if (appended.batchId !== undefined) this.#owe(t.output, { batchId: appended.batchId, sealedAtMs: now });
    this.#o.log.debug({ output: t.output, seq: manifest.seq, streams: streams.length, entries, records }, 'manifest sealed');
    return true;
  }

  /**
   * Entries sealed into every output that takes their stream, and older than
   * retain_sealed, leave the database; the stream keeps the last pruned
   * entry's seq and hash, so the chain still verifies from there.
   */
  #prune(): void {
    const cutoff = Date.now() - this.#o.retainSealedMs;
    for (const h of readHeads(this.#db)) {
      const targets = this.#o.outputs.filter((t) => h.stream === POLICY_STREAM || t.takes(h.input));
      if (targets.length === 0) continue;
      let upto = h.headSeq;
      for (const t of targets) upto = Math.min(upto, (this.#stmt.sealedSeq.get(t.output, h.stream) as { seq: number } | undefined)?.seq ?? 0);
      // Keep the head itself: a stream with no entry left would restart its chain.
      upto = Math.min(upto, h.headSeq - 1);
      if (upto <= h.prunedSeq) continue;
      const last = this.#db
        .prepare('SELECT seq, hash FROM manifest_entries WHERE stream = ? AND seq > ? AND seq <= ? AND time_ms < ? ORDER BY seq DESC LIMIT 1')
        .get(h.stream, h.prunedSeq, upto, cutoff) as { seq: number; hash: string } | undefined;
      if (!last) continue;
      this.#db.transaction(() => {
        this.#db.prepare('DELETE FROM manifest_entries WHERE stream = ? AND seq <= ?').run(h.stream, last.seq);
        this.#db.prepare('UPDATE manifest_streams SET pruned_seq = ?, pruned_hash = ? WHERE stream = ?').run(last.seq, last.hash, h.stream);
      })();
    }
    this.#db.prepare('DELETE FROM manifest_items WHERE time_ms < ?').run(cutoff);
  }
}
