import fs from 'node:fs';
import type { Database } from 'better-sqlite3';
import { ErrorCode, KtrailError } from '../errors.ts';
import type { EmitManifest, ManifestItem, ManifestItemSink } from '../plugin.ts';
import type { SpooledRecord } from '../pipeline/record.ts';
import type { DeadLetterEntry } from '../spool/dead-letter.ts';
import type { Spool } from '../spool/spool.ts';
import type { Logger } from '../telemetry/logger.ts';
import { onCollect, type Metrics } from '../telemetry/metrics.ts';
import { rememberSecret } from '../telemetry/scrub.ts';
import { Sealer, type SealTarget } from './seal.ts';
import { hashFramed, MANIFEST_MIGRATIONS, ManifestChain, POLICY_STREAM, prepareRecords, type PreparedRecords } from './chain.ts';
import type { ManifestConfig } from './config.ts';
import type { EntryGap } from './digest.ts';
import { sha256Hex } from './digest.ts';

/**
 * The agent's side of the completeness chain: turns what one `emit` stored
 * (and what it did not) into chain entries, written by the spool inside the
 * input's transaction. Hashing happens before the transaction, so the
 * commit only inserts a few rows.
 */

/** What an emit did besides storing its records: counted drops the chain records as gaps. */
export interface EmitOutcome {
  /** Records processors dropped (a filter). */
  filtered: number;
  deadLetters: readonly DeadLetterEntry[];
  /** The input routes to at least one output (else its records are not stored). */
  routed: boolean;
}

export function readKeyFile(file: string): Buffer {
  try {
    const key = fs.readFileSync(file);
    const trimmed = Buffer.from(key.toString('utf8').trim(), 'utf8');
    if (trimmed.length === 0) throw new Error('the file is empty');
    // Never in a log line or printout, whatever happens later.
    rememberSecret(trimmed.toString('utf8'));
    return trimmed;
  } catch (err) {
    throw new KtrailError(ErrorCode.SECRET_READ, `cannot read manifest.hmac_key_file ${file}: ${(err as Error).message}`, { cause: err });
  }
}

export class Manifests {
  readonly chain: ManifestChain;
  readonly hmacKey: Buffer | undefined;
  readonly #db: Database;
  readonly #cfg: ManifestConfig;
  readonly #log: Logger;
  readonly #metrics: Metrics;
  #sealer: Sealer | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(spool: Spool, cfg: ManifestConfig, log: Logger, metrics: Metrics) {
    spool.migrate('manifest', MANIFEST_MIGRATIONS);
    this.#db = spool.db;
    this.#cfg = cfg;
    this.#log = log;
    this.#metrics = metrics;
    this.hmacKey = cfg.hmac_key_file !== undefined ? readKeyFile(cfg.hmac_key_file) : undefined;
    this.chain = new ManifestChain(spool.db, { hmacKey: this.hmacKey });
    // Entries held: seq is dense per stream and pruning removes a prefix, so head − pruned is exact (no COUNT(*) over the table).
    const held = this.#db.prepare('SELECT input, SUM(head_seq - pruned_seq) AS n FROM manifest_streams GROUP BY input');
    const gauge = metrics.manifestChainEntries;
    onCollect(gauge, () => {
      if (!this.#db.open) return; // scraped after shutdown closed the database
      gauge.reset();
      for (const r of held.all() as Array<{ input: string; n: number }>) gauge.set({ input: metricInput(r.input) }, r.n);
    });
  }

  /** What an output hands to its `OutputContext.manifest`. */
  itemSink(output: string): ManifestItemSink {
    const upsert = this.#db.prepare(
      `INSERT INTO manifest_items (output, key, first_batch, last_batch, item, time_ms) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT(output, key) DO UPDATE SET first_batch = excluded.first_batch, last_batch = excluded.last_batch, item = excluded.item, time_ms = excluded.time_ms`,
    );
    return {
      noteItems: (first: number, last: number, items: readonly ManifestItem[]) => {
        const now = Date.now();
        this.#db.transaction(() => {
          for (const it of items) upsert.run(output, it.key, first, last, JSON.stringify({ ...it, first_batch: first, last_batch: last }), now);
        })();
      },
    };
  }

  /** Seal on the period from now on (the outputs are running). */
  startSealing(spool: Spool, targets: readonly SealTarget[], node: string): void {
    const sealer = new Sealer({ spool, outputs: targets, node, hmacKey: this.hmacKey, retainSealedMs: this.#cfg.retain_sealed, log: this.#log, metrics: this.#metrics });
    this.#sealer = sealer;
    const m = this.#metrics;
    for (const t of targets) m.manifestSealIntervalSeconds.set({ output: t.output }, this.#cfg.seal_interval / 1000);
    // Read when scraped: how far behind sealing is, and which manifests the outputs acknowledged since.
    onCollect(m.manifestOldestUnsealedSeconds, () => {
      if (!this.#db.open) return;
      const now = Date.now();
      for (const [output, oldestMs] of sealer.oldestUnsealed()) m.manifestOldestUnsealedSeconds.set({ output }, oldestMs === undefined ? 0 : Math.max(0, (now - oldestMs) / 1000));
    });
    onCollect(m.manifestLastAcknowledgedSeal, () => {
      if (this.#db.open) sealer.noteAcknowledged();
    });
    this.#timer = setInterval(() => this.seal(), this.#cfg.seal_interval);
    this.#timer.unref();
  }

  /** Seal now (the period, and shutdown once the outputs settled). Never throws: a failed seal is retried by the next. */
  seal(): number {
    try {
      return this.#sealer?.sealAll() ?? 0;
    } catch (err) {
      this.#metrics.manifestSealFailures.inc();
      this.#log.error({ err: (err as Error).message }, 'manifest: sealing failed; the next seal covers the same entries');
      return 0;
    }
  }

  stopSealing(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** At start: the audit policy's hash, an entry of its own when it changed. */
  notePolicy(): void {
    const file = this.#cfg.audit_policy_file;
    if (file === undefined) return;
    let bytes: Buffer;
    try {
      bytes = fs.readFileSync(file);
    } catch (err) {
      this.#log.warn({ file, err: (err as Error).message }, 'manifest: cannot read audit_policy_file; its hash is not recorded');
      return;
    }
    const sha = sha256Hex(bytes);
    const wrote = this.#db.transaction(() => this.chain.notePolicy(file, sha, Date.now()))();
    if (wrote) this.#metrics.manifestEntries.inc({ input: POLICY_STREAM, kind: 'policy' });
    if (wrote) this.#log.info({ file, sha256: sha }, 'manifest: audit policy recorded in the chain');
  }

  /**
   * The spool's `manifest` hook for one emit: the records entry for the stored
   * batch, and gap entries for what was dropped or given up on.
   */
  entryWriter(
    input: string,
    meta: EmitManifest | undefined,
    records: readonly SpooledRecord[],
    outcome: EmitOutcome,
  ): ((db: Database, batchId: number | undefined, data: Buffer) => void) | undefined {
    const stream = meta?.stream ?? input;
    const prepared: PreparedRecords | undefined = records.length > 0 ? prepareRecords(input, stream, meta?.source ?? null, records) : undefined;
    const gaps: Array<{ stream: string; gap: EntryGap }> = [];
    for (const g of meta?.gaps ?? []) gaps.push({ stream: g.stream ?? stream, gap: gapOf(g) });
    if (outcome.filtered > 0) {
      gaps.push({ stream, gap: gapOf({ reason: 'filtered', records: outcome.filtered, detail: `${outcome.filtered} record(s) dropped by a processor (filter)` }) });
    }
    const byCode = new Map<string, string[]>();
    for (const d of outcome.deadLetters) {
      const ids = byCode.get(d.code) ?? [];
      ids.push(d.recordId ?? '');
      byCode.set(d.code, ids);
    }
    for (const [code, ids] of byCode) {
      const known = ids.filter((id) => id !== '');
      gaps.push({
        stream,
        gap: gapOf({ reason: `dead_letter:${code}`, records: ids.length, ids: known.length > 0 ? known : null, detail: `${ids.length} record(s) dead-lettered (${code}); see ktrail status --verbose` }),
      });
    }
    if (!prepared && gaps.length === 0) return undefined;
    const chain = this.chain;
    const source = meta?.source ?? null;
    const m = this.#metrics;
    return (_db, batchId, data) => {
      const now = Date.now();
      const written: EntryGap[] = [];
      let recordsEntry = false;
      if (prepared && batchId !== undefined) {
        chain.writeRecords(prepared, hashFramed(data, prepared.records), batchId, now);
        recordsEntry = true;
      } else if (prepared) {
        const gap = outcome.routed
          ? gapOf({ reason: 'spool_full', records: prepared.records, detail: `${prepared.records} record(s) dropped: spool full (when_full: drop_newest)` })
          : gapOf({ reason: 'not_routed', records: prepared.records, detail: `${prepared.records} record(s) not stored: no output takes this input` });
        chain.writeGap(input, stream, gap, now, source);
        written.push(gap);
      }
      for (const g of gaps) {
        chain.writeGap(input, g.stream, g.gap, now, g.stream === stream ? source : null);
        written.push(g.gap);
      }
      // Counted once every entry of the emit is written; only a failing COMMIT after this would over-count.
      if (recordsEntry) m.manifestEntries.inc({ input, kind: 'records' });
      if (written.length > 0) m.manifestEntries.inc({ input, kind: 'gap' }, written.length);
      for (const g of written) m.manifestGapEntries.inc({ input, reason: g.reason });
    };
  }
}

/** The `input` label of a chain stream's entries: the audit policy stream has no input of its own. */
function metricInput(input: string): string {
  return input === '' ? POLICY_STREAM : input;
}

function gapOf(g: Partial<EntryGap> & { reason: string; detail: string }): EntryGap {
  return {
    reason: g.reason,
    records: g.records ?? null,
    bytes: g.bytes ?? null,
    files: g.files ?? null,
    detail: g.detail,
    fromMs: g.fromMs ?? null,
    toMs: g.toMs ?? null,
    ids: g.ids ?? null,
  };
}
