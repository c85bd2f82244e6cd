import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { LumberjackWriter } from '../../helpers/lumberjack.ts';
import { auditId, configYaml, InProcessAgent, line, readSink, removeTmpDirs, tmpDir, waitFor } from './harness.ts';
import { auditFileMetrics } from '../../../src/inputs/audit-file/telemetry.ts';

const running: InProcessAgent[] = [];
afterEach(async () => {
  for (const a of running.splice(0)) await a.stop().catch(() => undefined);
  removeTmpDirs();
});

const ids = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `${auditId(from + i)}:ResponseComplete`);

async function start(root: string, input: Record<string, unknown>, name = 'agent'): Promise<InProcessAgent> {
  const a = await InProcessAgent.start(
    configYaml({ auditDir: path.join(root, 'audit'), stateDir: path.join(root, 'state'), outFile: path.join(root, 'out', 'audit.ndjson'), input }),
    { logFile: path.join(root, `${name}.log`) },
  );
  running.push(a);
  return a;
}

async function stop(a: InProcessAgent): Promise<void> {
  await a.stop();
  running.splice(running.indexOf(a), 1);
}

const discovered = (a: InProcessAgent, n: number) =>
  waitFor(() => (a.agent.spool.db.prepare('SELECT count(*) AS n FROM audit_file_checkpoints').get() as { n: number }).n >= n, 10_000, `${n} files discovered`);

describe('audit_file: first start on a node with history', () => {
  it('start_at: end skips what is there at the very first start (backups too), reads everything after, and only on the first start', async () => {
    const root = tmpDir();
    const auditDir = path.join(root, 'audit');
    const outFile = path.join(root, 'out', 'audit.ndjson');
    const writer = new LumberjackWriter({ dir: auditDir, maxSizeBytes: 20 * 1024 });
    for (let s = 0; s < 100; s++) await writer.write(line(s));
    await writer.writeBytes(`${line(100)}`.slice(0, 100)); // a line being written right now
    expect(writer.backups().length).toBeGreaterThanOrEqual(2);

    let agent = await start(root, { start_at: 'end' });
    await discovered(agent, writer.backups().length + 1);
    await sleep(300);
    expect(readSink(outFile)).toEqual([]);
    // The line that was half written at the start is completed: it is new, and shipped whole.
    await writer.writeBytes(`${line(100)}\n`.slice(100));
    for (let s = 101; s < 150; s++) await writer.write(line(s)); // crosses rotations
    await waitFor(() => readSink(outFile).length >= 50, 10_000, 'new lines');
    expect(readSink(outFile).map((r) => r.id)).toEqual(ids(100, 150));
    await stop(agent);

    // Written while the agent is down, including a rotation: read on the next start.
    for (let s = 150; s < 200; s++) await writer.write(line(s));
    agent = await start(root, { start_at: 'end' }, 'agent2');
    await waitFor(() => readSink(outFile).length >= 100, 10_000, 'lines written while down');
    await sleep(300);
    expect(readSink(outFile).map((r) => r.id)).toEqual(ids(100, 200));
    await writer.close();
  });

  it('ignore_older skips files whose mtime is older on first sight and reads the recent ones', async () => {
    const root = tmpDir();
    const auditDir = path.join(root, 'audit');
    const outFile = path.join(root, 'out', 'audit.ndjson');
    const writer = new LumberjackWriter({ dir: auditDir, maxSizeBytes: 20 * 1024 });
    for (let s = 0; s < 120; s++) await writer.write(line(s));
    await writer.close();
    const backups = writer.backups();
    expect(backups.length).toBeGreaterThanOrEqual(3);
    const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000);
    const old = backups.slice(0, 2);
    for (const b of old) fs.utimesSync(path.join(auditDir, b), twoDaysAgo, twoDaysAgo);
    const recentIds = [...backups.slice(2), 'audit.log'].flatMap((f) =>
      fs
        .readFileSync(path.join(auditDir, f), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => `${(JSON.parse(l) as { auditID: string }).auditID}:ResponseComplete`),
    );

    const agent = await start(root, { ignore_older: '1d' });
    await waitFor(() => readSink(outFile).length >= recentIds.length, 10_000, 'recent files read');
    await sleep(300);
    expect(readSink(outFile).map((r) => r.id)).toEqual(recentIds);
    expect(agent.logText()).toMatch(/skipped to its end/);
    // An old backup is known (skipped, not a gap) and its deletion is no gap either.
    fs.unlinkSync(path.join(auditDir, old[0]!));
    await sleep(700);
    const gaps = await auditFileMetrics(agent.metrics).gapFiles.get();
    expect(gaps.values.reduce((s, v) => s + v.value, 0)).toBe(0);
  });

  it('reports itself unhealthy while its directory cannot be read, and recovers', async () => {
    const root = tmpDir();
    const auditDir = path.join(root, 'audit');
    fs.symlinkSync(auditDir, auditDir); // a loop: readdir fails with ELOOP, even for root
    const agent = await start(root, { rescan_interval: '50ms' });
    await waitFor(() => agent.agent.readiness().checks['input:audit']?.ok === false, 5000, 'unhealthy input');
    expect(agent.agent.readiness().checks['input:audit']!.detail).toMatch(/cannot read .*ELOOP/);
    fs.unlinkSync(auditDir);
    fs.mkdirSync(auditDir);
    fs.writeFileSync(path.join(auditDir, 'audit.log'), `${line(0)}\n`);
    await waitFor(() => agent.agent.readiness().checks['input:audit']?.ok === true, 5000, 'healthy again');
    await waitFor(() => readSink(path.join(root, 'out', 'audit.ndjson')).length === 1, 5000, 'the line');
  });
});
