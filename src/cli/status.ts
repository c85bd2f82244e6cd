import { Spool } from '../spool/spool.ts';
import { findPlugin, pluginTypes } from '../registry.ts';
import type { InputPlugin } from '../plugin.ts';

/**
 * `ktrail status`: what the state database says, read-only, so it works while
 * the agent runs (WAL lets readers in beside the writer).
 */
export interface StatusReport {
  stateDir: string;
  spool: { batches: number; records: number; bytes: number };
  inputs: Array<{ input: string; type?: string; checkpoints: Array<Record<string, unknown>> }>;
  outputs: Array<{ output: string; watermark: number; pendingBatches: number; pendingRecords: number; pendingBytes: number; oldestPendingAgeS: number | null }>;
  /** Dead letters grouped by component and reason code. */
  deadLetters: Array<{ component: string; code: string; count: number; withheld: number; first: string; last: string; sampleReason: string }>;
  /** Every row, newest first (with `verbose`); never the bytes, which `ktrail status` does not print. */
  deadLetterRows?: DeadLetterListing[];
}

export interface DeadLetterListing {
  id: number;
  time: string;
  component: string;
  code: string;
  reason: string;
  recordId: string | null;
  length: number;
  sha256: string;
  withheld: boolean;
  source: { file: string; offset: number; length: number } | null;
}

export function readStatus(stateDir: string, nowMs = Date.now(), opts: { verbose?: boolean; limit?: number } = {}): StatusReport {
  const spool = new Spool({ stateDir, maxBytes: Number.MAX_SAFE_INTEGER, readonly: true });
  try {
    const db = spool.db;
    const tables = new Set((db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Array<{ name: string }>).map((r) => r.name));
    const totals = db
      .prepare('SELECT count(*) AS batches, coalesce(sum(record_count), 0) AS records, coalesce(sum(bytes), 0) AS bytes FROM spool_batches')
      .get() as { batches: number; records: number; bytes: number };
    const outputs = (db.prepare('SELECT DISTINCT output FROM spool_deliveries UNION SELECT DISTINCT output FROM output_requests').all() as Array<{ output: string }>).map((r) => r.output);
    const inputs = new Map<string, Array<Record<string, unknown>>>();
    for (const row of db.prepare('SELECT input, key, value, updated_ms FROM input_checkpoints ORDER BY input, key').all() as Array<{ input: string; key: string; value: string; updated_ms: number }>) {
      const list = inputs.get(row.input) ?? [];
      list.push({ key: row.key, value: row.value, updated: new Date(row.updated_ms).toISOString() });
      inputs.set(row.input, list);
    }
    // Plugins with tables of their own describe them.
    const described: StatusReport['inputs'] = [];
    for (const p of pluginTypes('input').map((t) => findPlugin('input', t)!)) {
      if (!(p as InputPlugin).describeState) continue;
      const rows = safeDescribe(p as InputPlugin, db, tables);
      for (const [name, list] of rows) {
        described.push({ input: name, type: p.type, checkpoints: list });
        inputs.delete(name);
      }
    }
    for (const [input, checkpoints] of inputs) described.push({ input, checkpoints });
    return {
      stateDir,
      spool: totals,
      inputs: described,
      outputs: outputs.sort().map((output) => {
        const b = spool.backlog(output);
        return {
          output,
          watermark: b.watermark,
          pendingBatches: b.pendingBatches,
          pendingRecords: b.pendingRecords,
          pendingBytes: b.pendingBytes,
          oldestPendingAgeS: b.oldestCreatedMs !== undefined ? Math.round((nowMs - b.oldestCreatedMs) / 1000) : null,
        };
      }),
      deadLetters: (
        db
          .prepare(
            `SELECT component, code, count(*) AS count, sum(withheld) AS withheld, min(time_ms) AS first, max(time_ms) AS last,
                    (SELECT reason FROM dead_letters d2 WHERE d2.component = d.component AND d2.code = d.code ORDER BY id DESC LIMIT 1) AS sampleReason
             FROM dead_letters d GROUP BY component, code ORDER BY component, count DESC`,
          )
          .all() as Array<{ component: string; code: string; count: number; withheld: number; first: number; last: number; sampleReason: string }>
      ).map((g) => ({ ...g, first: new Date(g.first).toISOString(), last: new Date(g.last).toISOString() })),
      ...(opts.verbose ? { deadLetterRows: listDeadLetters(db, opts.limit ?? 1000) } : {}),
    };
  } finally {
    spool.close();
  }
}

function listDeadLetters(db: Spool['db'], limit: number): DeadLetterListing[] {
  const rows = db
    .prepare('SELECT id, time_ms, component, code, reason, record_id, length, sha256, withheld, source FROM dead_letters ORDER BY id DESC LIMIT ?')
    .all(limit) as Array<{ id: number; time_ms: number; component: string; code: string; reason: string; record_id: string | null; length: number; sha256: string; withheld: number; source: string | null }>;
  return rows.map((r) => ({
    id: r.id,
    time: new Date(r.time_ms).toISOString(),
    component: r.component,
    code: r.code,
    reason: r.reason,
    recordId: r.record_id,
    length: r.length,
    sha256: r.sha256,
    withheld: r.withheld === 1,
    source: r.source ? (JSON.parse(r.source) as DeadLetterListing['source']) : null,
  }));
}

function safeDescribe(p: InputPlugin, db: Spool['db'], tables: Set<string>): Map<string, Array<Record<string, unknown>>> {
  const out = new Map<string, Array<Record<string, unknown>>>();
  try {
    for (const row of p.describeState!(db)) {
      const name = String(row.input ?? '');
      const list = out.get(name) ?? [];
      list.push(row);
      out.set(name, list);
    }
  } catch {
    // The plugin's tables may not exist yet (never ran); nothing to describe.
    void tables;
  }
  return out;
}

export function formatStatus(r: StatusReport): string {
  const lines: string[] = [];
  lines.push(`state dir: ${r.stateDir}`);
  lines.push(`spool: ${r.spool.batches} batches, ${r.spool.records} records, ${fmtBytes(r.spool.bytes)}`);
  lines.push('inputs:');
  if (r.inputs.length === 0) lines.push('  (no checkpoints yet)');
  for (const i of r.inputs) {
    lines.push(`  ${i.input}${i.type ? ` (${i.type})` : ''}:`);
    for (const c of i.checkpoints) {
      const { input: _ignored, ...rest } = c;
      lines.push(`    ${Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join('  ')}`);
    }
  }
  lines.push('outputs:');
  if (r.outputs.length === 0) lines.push('  (nothing pending)');
  for (const o of r.outputs) {
    lines.push(
      `  ${o.output}: watermark=${o.watermark} lag=${o.pendingRecords} records / ${fmtBytes(o.pendingBytes)} in ${o.pendingBatches} batches` +
        (o.oldestPendingAgeS !== null ? `, oldest ${o.oldestPendingAgeS} s` : ''),
    );
  }
  lines.push('dead letters:');
  if (r.deadLetters.length === 0) lines.push('  none');
  for (const d of r.deadLetters) {
    const withheld = d.withheld > 0 ? ` (${d.withheld} withheld: metadata only)` : '';
    lines.push(`  ${d.component}: ${d.count} × ${d.code}${withheld}, first ${d.first}, last ${d.last}`);
    lines.push(`    latest: ${d.sampleReason}`);
  }
  if (r.deadLetterRows !== undefined) {
    lines.push(`dead-letter rows (newest first, ${r.deadLetterRows.length} shown):`);
    for (const d of r.deadLetterRows) {
      const where = d.source ? ` ${d.source.file} offset ${d.source.offset} length ${d.source.length}` : '';
      lines.push(
        `  #${d.id} ${d.time} ${d.component} ${d.code}${d.recordId ? ` id=${d.recordId}` : ''}${where} bytes=${d.length} sha256=${d.sha256.slice(0, 16)}${d.withheld ? ' withheld' : ''}`,
      );
      lines.push(`    ${d.reason}`);
    }
  } else if (r.deadLetters.length > 0) {
    lines.push('  (ktrail status --verbose lists every row)');
  }
  return lines.join('\n');
}

export function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}
