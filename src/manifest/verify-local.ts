import type { Database } from 'better-sqlite3';
import { decodeBatch } from '../spool/spool.ts';
import { entryFromRow, hasManifestTables, readHeads, type StoredEntry } from './chain.ts';
import { entryDigest, entryHash, hmacHex, RECORD_HASH_BYTES, recordHash, sha256Hex, type EntryGap } from './digest.ts';

/**
 * `ktrail verify --state-dir DIR`: checks the chain as the state database
 * holds it. Every entry's hash is recomputed from its fields, every link to
 * the entry before, every digest from the record hashes, every head against
 * its stream's last entry; records still in the spool are hashed again and
 * compared. It proves the local chain is intact, not that any output has the
 * records (that is `ktrail verify --output`).
 */

export interface GapReport {
  stream: string;
  seq: number;
  timeMs: number;
  gap: EntryGap;
  source: StoredEntry['source'];
}

export interface StreamReport {
  stream: string;
  input: string;
  fromSeq: number;
  toSeq: number;
  entries: number;
  records: number;
  gaps: number;
  /** Entries whose batch was still in the spool and was hashed again. */
  recheckedBatches: number;
  problems: string[];
}

export interface LocalReport {
  ok: boolean;
  streams: StreamReport[];
  gaps: GapReport[];
  problems: string[];
  /** Entries carry HMACs; `checked` when a key was given. */
  hmac: 'none' | 'checked' | 'present_unchecked';
}

export function checkEntry(e: StoredEntry, hmacKey: Buffer | undefined): string[] {
  const problems: string[] = [];
  const at = `entry ${e.stream}#${e.seq}`;
  if (e.kind === 'records') {
    if (e.ids.length !== e.records) problems.push(`${at}: ${e.ids.length} ids for ${e.records} records`);
    if (e.ids.length > 0 && (e.ids[0] !== e.firstId || e.ids.at(-1) !== e.lastId)) problems.push(`${at}: first/last id do not match its ids`);
    if (sha256Hex(e.ids.join('\n')) !== e.idsDigest) problems.push(`${at}: ids do not match the ids digest`);
    if (e.hashes === null || e.hashes.length !== e.records * RECORD_HASH_BYTES) problems.push(`${at}: record hashes missing or of the wrong length`);
    else if (entryDigest(e.hashes) !== e.digest) problems.push(`${at}: record hashes do not match the entry digest`);
  }
  if (entryHash(e) !== e.hash) problems.push(`${at}: hash mismatch (the entry was altered)`);
  if (hmacKey !== undefined) {
    if (e.hmac === null) problems.push(`${at}: no HMAC`);
    else if (hmacHex(hmacKey, e.hash) !== e.hmac) problems.push(`${at}: HMAC mismatch (wrong key, or the entry was re-hashed by someone without it)`);
  }
  return problems;
}

export function verifyLocal(db: Database, opts: { hmacKey?: Buffer } = {}): LocalReport {
  const report: LocalReport = { ok: true, streams: [], gaps: [], problems: [], hmac: 'none' };
  if (!hasManifestTables(db)) {
    report.ok = false;
    report.problems.push('no completeness chain in this state database (is manifest.enabled set?)');
    return report;
  }
  const heads = readHeads(db);
  const known = new Set(heads.map((h) => h.stream));
  for (const row of db.prepare('SELECT DISTINCT stream FROM manifest_entries').all() as Array<{ stream: string }>) {
    if (!known.has(row.stream)) report.problems.push(`stream ${row.stream}: entries without a stream head`);
  }
  const readBatch = db.prepare('SELECT input, data FROM spool_batches WHERE id = ?');
  const entries = db.prepare('SELECT * FROM manifest_entries WHERE stream = ? AND seq > ? ORDER BY seq');
  let sawHmac = false;
  for (const h of heads) {
    const s: StreamReport = { stream: h.stream, input: h.input, fromSeq: h.prunedSeq + 1, toSeq: h.prunedSeq, entries: 0, records: 0, gaps: 0, recheckedBatches: 0, problems: [] };
    let prev = h.prunedHash;
    let expected = h.prunedSeq + 1;
    for (const row of entries.iterate(h.stream, h.prunedSeq) as Iterable<Parameters<typeof entryFromRow>[0]>) {
      const e = entryFromRow(row);
      if (e.seq !== expected) s.problems.push(`entries ${expected}..${e.seq - 1} are missing (the chain is broken)`);
      if (e.prev !== prev) s.problems.push(`entry #${e.seq}: its prev does not link to entry #${e.seq - 1}`);
      s.problems.push(...checkEntry(e, opts.hmacKey).map((p) => p.replace(`entry ${e.stream}#`, 'entry #')));
      if (e.hmac !== null) sawHmac = true;
      if (e.kind === 'records' && e.batchId !== null && e.hashes !== null) {
        const b = readBatch.get(e.batchId) as { input: string; data: string } | undefined;
        if (b) {
          s.recheckedBatches++;
          const recs = decodeBatch(b.input, b.data);
          const bad = recs.findIndex((r, i) => !recordHash(r.json).equals(e.hashes!.subarray(i * RECORD_HASH_BYTES, (i + 1) * RECORD_HASH_BYTES)));
          if (recs.length !== e.records || bad !== -1) s.problems.push(`entry #${e.seq}: spool batch ${e.batchId} differs from the entry${bad !== -1 ? ` (record ${recs[bad]!.id})` : ''}`);
        }
      }
      if (e.gap !== null) {
        s.gaps++;
        report.gaps.push({ stream: e.stream, seq: e.seq, timeMs: e.timeMs, gap: e.gap, source: e.source });
      }
      s.entries++;
      s.records += e.kind === 'records' ? e.records : 0;
      s.toSeq = e.seq;
      prev = e.hash;
      expected = e.seq + 1;
    }
    if (s.toSeq !== h.headSeq || prev !== h.headHash) s.problems.push(`the stream head (#${h.headSeq}) does not match its last entry (#${s.toSeq}): entries were removed or altered`);
    report.streams.push(s);
  }
  report.hmac = opts.hmacKey !== undefined ? 'checked' : sawHmac ? 'present_unchecked' : 'none';
  report.ok = report.problems.length === 0 && report.streams.every((s) => s.problems.length === 0);
  return report;
}

export function formatGap(g: GapReport): string {
  const parts = [g.gap.reason];
  if (g.gap.records !== null) parts.push(`${g.gap.records} record(s)`);
  if (g.gap.files !== null) parts.push(`${g.gap.files} file(s)`);
  if (g.gap.bytes !== null) parts.push(`${g.gap.bytes} byte(s)`);
  return `  ${g.stream} #${g.seq} at ${new Date(g.timeMs).toISOString()}: ${parts.join(', ')} — ${g.gap.detail}`;
}

export function formatLocal(r: LocalReport, stateDir: string): string {
  const lines = [`completeness chain in ${stateDir}:`];
  for (const s of r.streams) {
    lines.push(
      `  ${s.problems.length === 0 ? 'ok  ' : 'FAIL'} ${s.stream}: entries #${s.fromSeq}..#${s.toSeq} (${s.entries}), ${s.records} records, ${s.gaps} gap(s), ${s.recheckedBatches} spooled batch(es) re-hashed`,
    );
    for (const p of s.problems) lines.push(`       ${p}`);
  }
  for (const p of r.problems) lines.push(`  FAIL ${p}`);
  lines.push(r.gaps.length === 0 ? 'gaps: none' : `gaps (${r.gaps.length}):`);
  for (const g of r.gaps) lines.push(formatGap(g));
  lines.push(`hmac: ${r.hmac === 'present_unchecked' ? 'entries are signed; not checked (give --hmac-key-file)' : r.hmac}`);
  lines.push(r.ok ? 'result: OK — the local chain is intact' : 'result: FAILED');
  return lines.join('\n');
}
