import fs from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { formatStatus, readStatus } from '../../../src/cli/status.ts';
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
      .map((l) => JSON.parse(l) as { level: string; event: string; file: string; lostBytes: number; msg: string });
    expect(warnings.map((w) => w.event)).toEqual(['audit_file.gap', 'audit_file.gap']);
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

  it.each([
    ['', false],
    [', also when the oldest backup is deleted between the files-first open and the input start', true],
  ])('reports what was rotated away unseen while the agent was down as a gap with its time span, and reads everything on disk at the restart%s', async (_, deleteOldest) => {
    const root = tmpDir();
    const auditDir = path.join(root, 'audit');
    const stateDir = path.join(root, 'state');
    const outFile = path.join(root, 'out', 'audit.ndjson');
    // Records stamped with the real time, as kube-apiserver writes them.
    const nowLine = (seq: number) => {
      const t = new Date().toISOString();
      return JSON.stringify({ kind: 'Event', apiVersion: 'audit.k8s.io/v1', level: 'Metadata', auditID: auditId(seq), stage: 'ResponseComplete', requestURI: `/api/v1/namespaces/default/configmaps/cm-${seq}`, verb: 'get', requestReceivedTimestamp: t, stageTimestamp: t });
    };
    const writer = new LumberjackWriter({ dir: auditDir, maxSizeBytes: 8 * 1024, maxBackups: 3 });
    let seq = 0;
    const write = async (n: number) => {
      for (let i = 0; i < n; i++, seq++) await writer.write(nowLine(seq));
      await writer.mill();
    };
    await write(30);
    const yaml = configYaml({ auditDir, stateDir, outFile });
    const first = await InProcessAgent.start(yaml, { logFile: path.join(root, 'run1.log') });
    running.push(first);
    await waitFor(() => readSink(outFile).length >= 30, 10_000, 'first records at the sink');
    await first.stop();
    running.pop();
    const stoppedMs = Date.now();

    // While it is down: more rotations than backups are kept, so no file it knew is left.
    await new Promise((r) => setTimeout(r, 1100));
    await write(600);
    await writer.close();
    const onDisk = fs.readdirSync(auditDir).flatMap((f) => linesOf(path.join(auditDir, f)).map((l) => l.id));
    const firstOnDisk = Math.min(...fs.readdirSync(auditDir).map((f) => Date.parse((JSON.parse(fs.readFileSync(path.join(auditDir, f), 'utf8').split('\n')[0]!) as { stageTimestamp: string }).stageTimestamp)));

    const oldest = fs.readdirSync(auditDir).filter((f) => f !== 'audit.log').sort()[0]!;
    const second = await InProcessAgent.start(yaml, {
      logFile: path.join(root, 'run2.log'),
      serveMetrics: true,
      // Read through the descriptor the start-up scan holds: for the gap's end and for the records.
      afterPrepare: deleteOldest ? () => fs.rmSync(path.join(auditDir, oldest)) : undefined,
    });
    running.push(second);
    await waitFor(() => readSink(outFile).length >= 30 + onDisk.length, 10_000, 'everything on disk at the sink');
    const got = new Set(readSink(outFile).map((r) => r.id));
    expect(onDisk.filter((id) => !got.has(id))).toEqual([]);

    const warn = second
      .logText()
      .split('\n')
      .filter((l) => l.includes('"event":"audit_file.gap"') && l.includes('"reason":"rotated_unseen"'))
      .map((l) => JSON.parse(l) as { from: string; to: string; estimatedFiles: number; msg: string });
    expect(warn).toHaveLength(1);
    expect(warn[0]!.msg).toMatch(/rotated away while ktrail was not reading/);
    // The span runs from the last checkpoint (before the stop) to the first record still on disk.
    expect(Date.parse(warn[0]!.from)).toBeLessThanOrEqual(stoppedMs);
    expect(Date.parse(warn[0]!.to)).toBe(firstOnDisk);
    expect(warn[0]!.estimatedFiles).toBeGreaterThanOrEqual(1);
    const metrics = await fetchMetrics(second.metricsUrl);
    expect(metricValue(metrics, 'ktrail_audit_file_gap_files_total', { input: 'audit', reason: 'rotated_unseen' })).toBe(warn[0]!.estimatedFiles);
    expect(metricValue(metrics, 'ktrail_audit_file_gap_seconds_total', { input: 'audit' })).toBeCloseTo((firstOnDisk - Date.parse(warn[0]!.from)) / 1000, 2);
    // And ktrail status shows it.
    const gaps = second.agent.spool.db.prepare("SELECT reason, from_ms, to_ms, files FROM audit_file_gaps WHERE reason = 'rotated_unseen'").all() as Array<{ reason: string; from_ms: number; to_ms: number; files: number }>;
    expect(gaps).toEqual([{ reason: 'rotated_unseen', from_ms: Date.parse(warn[0]!.from), to_ms: firstOnDisk, files: warn[0]!.estimatedFiles }]);
    const status = formatStatus(readStatus(stateDir, Date.now(), {}));
    expect(status).toContain(`gap=rotated_unseen  file=${path.join(auditDir, 'audit.log')}  from=${warn[0]!.from}  to=${warn[0]!.to}  files=${warn[0]!.estimatedFiles}`);
  });
});
