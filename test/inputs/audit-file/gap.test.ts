import fs from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { LumberjackWriter } from '../../helpers/lumberjack.ts';
import { auditId, configYaml, fetchMetrics, Gate, InProcessAgent, line, metricValue, readSink, removeTmpDirs, tmpDir, waitFor } from './harness.ts';

const running: InProcessAgent[] = [];
const gates: Gate[] = [];
afterEach(async () => {
  for (const g of gates.splice(0)) g.open();
  for (const a of running.splice(0)) await a.stop().catch(() => undefined);
  removeTmpDirs();
});

/** ids of the lines in a file, and the byte offset where each line ends. */
function linesOf(file: string): Array<{ id: string; end: number }> {
  const out: Array<{ id: string; end: number }> = [];
  let end = 0;
  for (const l of fs.readFileSync(file, 'utf8').split('\n')) {
    if (l === '') continue;
    end += Buffer.byteLength(l) + 1;
    const d = JSON.parse(l) as { auditID: string; stage: string };
    out.push({ id: `${d.auditID}:${d.stage}`, end });
  }
  return out;
}

describe('audit_file: files deleted before they were read', () => {
  it('reports the unread bytes of backups deleted while the agent was stopped as a gap (metric and log) and delivers everything else', async () => {
    const root = tmpDir();
    const auditDir = path.join(root, 'audit');
    const stateDir = path.join(root, 'state');
    const outFile = path.join(root, 'out', 'audit.ndjson');
    const writer = new LumberjackWriter({ dir: auditDir, maxSizeBytes: 40 * 1024 });
    for (let seq = 0; seq < 230; seq++) await writer.write(line(seq));
    await writer.close();
    const backups = writer.backups();
    const [b1, b2] = backups;
    expect(backups.length).toBeGreaterThanOrEqual(3);
    const content = Object.fromEntries([...backups, 'audit.log'].map((f) => [f, linesOf(path.join(auditDir, f))]));

    // First run: a gate holds the first batch (the start of the oldest backup) while every file is discovered.
    const gate = new Gate();
    gates.push(gate);
    const base = { auditDir, stateDir, outFile, input: { read_buffer_size: '16KiB' } };
    const first = await InProcessAgent.start(configYaml({ ...base, extra: 'processors:\n  gate: { type: test_gate }' }), {
      extraPlugins: [gate.plugin()],
      logFile: path.join(root, 'run1.log'),
    });
    running.push(first);
    const rows = () => first.agent.spool.db.prepare('SELECT path, read_offset AS offset, size_bytes AS size FROM audit_file_checkpoints').all() as Array<{ path: string; offset: number; size: number }>;
    await waitFor(() => gate.blocked === 1 && rows().length === backups.length + 1, 10_000, 'all files discovered, first batch held');
    const stopping = first.stop();
    gate.open();
    await stopping;
    running.pop();

    const state = new BetterSqlite3(path.join(stateDir, 'ktrail.db'), { readonly: true });
    const byName = Object.fromEntries(
      (state.prepare('SELECT path, read_offset AS offset, size_bytes AS size FROM audit_file_checkpoints').all() as Array<{ path: string; offset: number; size: number }>).map((r) => [path.basename(r.path), r]),
    );
    state.close();
    expect(byName[b1!]!.offset).toBeGreaterThan(0);
    expect(byName[b1!]!.offset).toBeLessThan(byName[b1!]!.size);
    expect(byName[b2!]!.offset).toBe(0);
    const lostBytes = byName[b1!]!.size - byName[b1!]!.offset + byName[b2!]!.size;

    // While it is down, retention deletes the two oldest backups.
    fs.unlinkSync(path.join(auditDir, b1!));
    fs.unlinkSync(path.join(auditDir, b2!));

    const second = await InProcessAgent.start(configYaml(base), { logFile: path.join(root, 'run2.log'), serveMetrics: true });
    running.push(second);
    let metrics = '';
    await waitFor(
      async () => {
        metrics = await fetchMetrics(second.metricsUrl);
        return metricValue(metrics, 'ktrail_audit_file_gap_files_total', { input: 'audit' }) >= 2;
      },
      10_000,
      'gap reported',
    );
    const delivered1 = content[b1!]!.filter((l) => l.end <= byName[b1!]!.offset).map((l) => l.id);
    const expected = [...delivered1, ...[...backups.slice(2), 'audit.log'].flatMap((f) => content[f]!.map((l) => l.id))];
    await waitFor(() => readSink(outFile).length >= expected.length, 10_000, 'the remaining files at the sink');

    expect(metricValue(metrics, 'ktrail_audit_file_gap_bytes_total', { input: 'audit', reason: 'deleted' })).toBe(lostBytes);
    expect(metricValue(metrics, 'ktrail_audit_file_gap_files_total', { input: 'audit', reason: 'deleted' })).toBe(2);
    const warnings = second
      .logText()
      .split('\n')
      .filter((l) => l.includes('"lostBytes"'))
      .map((l) => JSON.parse(l) as { level: string; file: string; lostBytes: number; msg: string });
    expect(warnings.map((w) => [w.level, path.basename(w.file), w.lostBytes]).sort()).toEqual(
      [
        ['warn', b1!, byName[b1!]!.size - byName[b1!]!.offset],
        ['warn', b2!, byName[b2!]!.size],
      ].sort(),
    );
    expect(warnings[0]!.msg).toMatch(/left the configured paths \(deleted, or renamed out of them\) before it was read to the end/);

    await second.stop();
    running.pop();
    expect(readSink(outFile).map((r) => r.id)).toEqual(expected);
    expect(expected).toContain(`${auditId(229)}:ResponseComplete`);
  });
});
