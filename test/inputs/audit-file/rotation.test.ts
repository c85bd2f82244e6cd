import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { LumberjackWriter } from '../../helpers/lumberjack.ts';
import { auditId, ChildAgent, childAgentsKilledAfterEach, configYaml, line, readSink, sinkCount, tmpDir, waitFor } from './harness.ts';

const agents = childAgentsKilledAfterEach();

describe('audit_file: steady writing across rotations (real agent process)', () => {
  it('delivers every auditID:stage exactly once, in file order, across 50+ rotations with compression', async () => {
    const root = tmpDir();
    const auditDir = path.join(root, 'audit');
    const outFile = path.join(root, 'out', 'audit.ndjson');
    const cfg = path.join(root, 'ktrail.yaml');
    fs.writeFileSync(cfg, configYaml({ auditDir, stateDir: path.join(root, 'state'), outFile }));
    const writer = new LumberjackWriter({ dir: auditDir, maxSizeBytes: 16 * 1024, compress: true, compressDelayMs: 5, renameGapMs: 2 });

    const agent = new ChildAgent(cfg);
    agents.push(agent);
    await agent.metricsUrl();

    const total = 2400;
    const written: string[] = [];
    for (let seq = 0; seq < total; seq++) {
      // Every request gets two stages, so ids are auditID:stage.
      const stage = seq % 2 === 0 ? 'RequestReceived' : 'ResponseComplete';
      await writer.write(line(seq >> 1, { stage }));
      written.push(`${auditId(seq >> 1)}:${stage}`);
      if (seq % 40 === 39) await sleep(5);
    }
    await writer.close();
    expect(writer.rotations).toBeGreaterThanOrEqual(50);
    expect(fs.readdirSync(auditDir).some((f) => f.endsWith('.gz'))).toBe(true);

    await waitFor(() => sinkCount(outFile) >= total, 30_000, `${total} records at the sink`);
    await sleep(300); // anything extra (a duplicate) would arrive now
    agent.kill('SIGTERM');
    expect(await agent.exited).toBe(0);

    const got = readSink(outFile).map((r) => r.id);
    expect(got.length).toBe(total);
    const firstDiff = got.findIndex((id, i) => id !== written[i]);
    expect(firstDiff, `first out-of-order record at index ${firstDiff}`).toBe(-1);
    expect(got).toEqual(written);
  });

  it('a .gz still being written holds newer backups back while the reader sits at the end of an older .gz, and the rescan still runs', async () => {
    const root = tmpDir();
    const auditDir = path.join(root, 'audit');
    fs.mkdirSync(auditDir, { recursive: true });
    const outFile = path.join(root, 'out', 'audit.ndjson');
    const cfg = path.join(root, 'ktrail.yaml');
    fs.writeFileSync(cfg, configYaml({ auditDir, stateDir: path.join(root, 'state'), outFile }));
    const lines = (from: number, n: number) => Array.from({ length: n }, (_, k) => `${line(from + k)}\n`).join('');
    const ids = (from: number, n: number) => Array.from({ length: n }, (_, k) => `${auditId(from + k)}:ResponseComplete`);
    const name = (ms: number) => path.join(auditDir, `audit-2026-12-01T10-00-00.${String(ms).padStart(3, '0')}.log.gz`);
    fs.writeFileSync(name(100), zlib.gzipSync(lines(0, 20)));
    // The middle backup is being compressed: only its gzip header is there, so its first record is not known yet.
    const middle = zlib.gzipSync(lines(20, 20));
    fs.writeFileSync(name(200), middle.subarray(0, 10));
    fs.writeFileSync(name(300), zlib.gzipSync(lines(40, 20)));
    fs.writeFileSync(path.join(auditDir, 'audit.log'), lines(60, 5));

    const agent = new ChildAgent(cfg);
    agents.push(agent);
    await waitFor(() => sinkCount(outFile) >= 20, 10_000, 'the oldest backup at the sink');
    await sleep(500);
    // Nothing newer went out while the middle one is unknown.
    expect(readSink(outFile).map((r) => r.id)).toEqual(ids(0, 20));
    fs.writeFileSync(name(200), middle);
    await waitFor(() => sinkCount(outFile) >= 65, 5_000, 'every record at the sink, soon after the .gz is complete');
    expect(readSink(outFile).map((r) => r.id)).toEqual(ids(0, 65));
  });
});
