import fs from 'node:fs';
import path from 'node:path';
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
});
