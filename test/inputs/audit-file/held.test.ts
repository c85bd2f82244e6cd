import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { LumberjackWriter } from '../../helpers/lumberjack.ts';
import { auditId, configYaml, Gate, InProcessAgent, line, readSink, removeTmpDirs, tmpDir, waitFor } from './harness.ts';
import { auditFileMetrics } from '../../../src/inputs/audit-file/telemetry.ts';

/**
 * Files held from first sight (issue #12): a backup deleted before the input
 * got to it is still read to its end through the descriptor the first scan
 * opened. The reader is held back by a gate processor, so that the deletions
 * happen while it is busy, as under load.
 */

const running: InProcessAgent[] = [];
afterEach(async () => {
  for (const a of running.splice(0)) await a.stop().catch(() => undefined);
  removeTmpDirs();
});

async function metric(a: InProcessAgent, name: keyof ReturnType<typeof auditFileMetrics>, labels: Record<string, string> = {}): Promise<number> {
  const m = auditFileMetrics(a.metrics)[name] as { get(): Promise<{ values: Array<{ value: number; labels: Record<string, unknown> }> }> };
  const { values } = await m.get();
  return values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((s, v) => s + v.value, 0);
}

async function start(input: Record<string, unknown> = {}, afterPrepare?: (auditDir: string) => unknown, beforePrepare?: (auditDir: string) => unknown) {
  const root = tmpDir();
  const auditDir = path.join(root, 'audit');
  fs.mkdirSync(auditDir, { recursive: true });
  const outFile = path.join(root, 'out', 'audit.ndjson');
  const gate = new Gate();
  const yaml = configYaml({
    auditDir,
    stateDir: path.join(root, 'state'),
    outFile,
    input: { rescan_interval: '1s', ...input },
    extra: 'processors:\n  gate: { type: test_gate }',
  });
  await beforePrepare?.(auditDir);
  const agent = await InProcessAgent.start(yaml, {
    logFile: path.join(root, 'agent.log'),
    extraPlugins: [gate.plugin()],
    afterPrepare: afterPrepare && (() => afterPrepare(auditDir)),
  });
  running.push(agent);
  return { root, auditDir, outFile, gate, agent };
}

describe('audit_file: files held from first sight', () => {
  it('a backup the start-up scan opened, deleted before the input started, is read through that descriptor', async () => {
    const written: string[] = [];
    const { outFile, gate, agent } = await start(
      {},
      // Between the files-first open and the input's start: lumberjack's retention removes the backup.
      (auditDir) => fs.rmSync(path.join(auditDir, 'audit-2026-12-01T10-00-00.000.log')),
      (auditDir) => {
        const lines = (from: number, n: number) => Array.from({ length: n }, (_, k) => `${line(from + k)}\n`).join('');
        fs.writeFileSync(path.join(auditDir, 'audit-2026-12-01T10-00-00.000.log'), lines(0, 40));
        fs.writeFileSync(path.join(auditDir, 'audit.log'), lines(40, 10));
        for (let seq = 0; seq < 50; seq++) written.push(`${auditId(seq)}:ResponseComplete`);
      },
    );
    gate.open();
    await waitFor(() => readSink(outFile).length >= written.length, 10_000, 'every record at the sink');
    await sleep(300);
    expect(readSink(outFile).map((r) => r.id)).toEqual(written);
    expect(await metric(agent, 'gapFiles')).toBe(0);
  });

  it('a backup that lives 200 ms between rename and deletion is read completely, with no gap', async () => {
    const { auditDir, outFile, gate, agent } = await start();
    const writer = new LumberjackWriter({ dir: auditDir, maxSizeBytes: 1024 * 1024 });
    const written: string[] = [];
    let seq = 0;
    const write = async (n: number) => {
      for (let i = 0; i < n; i++, seq++) {
        await writer.write(line(seq));
        written.push(`${auditId(seq)}:ResponseComplete`);
      }
    };
    await write(20);
    // The reader takes its first batch and waits at the gate.
    await waitFor(() => gate.blocked > 0, 10_000, 'the reader at the gate');
    const deletions: Array<Promise<void>> = [];
    for (let r = 0; r < 5; r++) {
      await write(30);
      await writer.rotate();
      const backup = fs.readdirSync(auditDir).filter((f) => f !== 'audit.log').sort().at(-1)!;
      // Deleted 200 ms after the rename, long before the blocked reader reaches it.
      deletions.push(sleep(200).then(() => fs.rmSync(path.join(auditDir, backup))));
      await sleep(20);
    }
    await write(10);
    await Promise.all(deletions);
    expect(fs.readdirSync(auditDir)).toEqual(['audit.log']);
    gate.open();
    await waitFor(() => readSink(outFile).length >= written.length, 15_000, 'every record at the sink');
    await sleep(300);
    expect(readSink(outFile).map((r) => r.id)).toEqual(written);
    expect(await metric(agent, 'gapFiles')).toBe(0);
    expect(await metric(agent, 'gapBytes')).toBe(0);
    await writer.close();
  });

  it('beyond max_open_files a file is tracked by name only, counted, and its loss is a reported gap', async () => {
    const { auditDir, outFile, gate, agent } = await start({ max_open_files: 4 });
    const writer = new LumberjackWriter({ dir: auditDir, maxSizeBytes: 1024 * 1024 });
    let seq = 0;
    const write = async (n: number) => {
      for (let i = 0; i < n; i++, seq++) await writer.write(line(seq));
    };
    await write(5);
    await waitFor(() => gate.blocked > 0, 10_000, 'the reader at the gate');
    for (let r = 0; r < 6; r++) {
      await write(10);
      await writer.rotate();
      await sleep(30);
    }
    await write(1);
    await waitFor(async () => (await metric(agent, 'filesNotHeld')) > 0, 10_000, 'a file not held');
    expect(await metric(agent, 'openFiles')).toBeLessThanOrEqual(4);
    // Every backup deleted while the reader waits: the held ones are still read, the others are gaps.
    const backups = fs
      .readdirSync(auditDir)
      .filter((f) => f !== 'audit.log')
      .map((f) => {
        const text = fs.readFileSync(path.join(auditDir, f), 'utf8');
        return { ids: text.trim().split('\n').map((l) => `${(JSON.parse(l) as { auditID: string }).auditID}:ResponseComplete`), bytes: Buffer.byteLength(text) };
      });
    for (const f of fs.readdirSync(auditDir)) if (f !== 'audit.log') fs.rmSync(path.join(auditDir, f));
    gate.open();
    await waitFor(async () => (await metric(agent, 'gapFiles')) > 0, 15_000, 'a gap reported');
    await sleep(1500);
    const got = new Set(readSink(outFile).map((r) => r.id));
    const lost = backups.filter((b) => !b.ids.some((id) => got.has(id)));
    // Each backup arrived whole or is a gap of exactly its size; only files not held can be lost.
    for (const b of backups) expect(b.ids.every((id) => got.has(id)) || !b.ids.some((id) => got.has(id))).toBe(true);
    expect(lost.length).toBeGreaterThan(0);
    expect(lost.length).toBeLessThanOrEqual(await metric(agent, 'filesNotHeld'));
    expect(await metric(agent, 'gapFiles', { reason: 'deleted' })).toBe(lost.length);
    // A file never seen under its backup name was last seen smaller: its bytes are a lower bound.
    expect(await metric(agent, 'gapBytes', { reason: 'deleted' })).toBeLessThanOrEqual(lost.reduce((s, b) => s + b.bytes, 0));
    expect(await metric(agent, 'gapBytes', { reason: 'deleted' })).toBeGreaterThan(0);
    expect(agent.logText()).toContain('max_open_files reached');
    await writer.close();
  });
});
