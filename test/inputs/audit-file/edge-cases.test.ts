import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { LumberjackWriter } from '../../helpers/lumberjack.ts';
import { auditId, configYaml, InProcessAgent, line, readSink, removeTmpDirs, tmpDir, waitFor, type SinkRecord } from './harness.ts';
import { auditFileMetrics } from '../../../src/inputs/audit-file/telemetry.ts';

const running: InProcessAgent[] = [];
afterEach(async () => {
  for (const a of running.splice(0)) await a.stop().catch(() => undefined);
  removeTmpDirs();
});

interface Env {
  root: string;
  auditDir: string;
  outFile: string;
  agent: InProcessAgent;
  sink(): SinkRecord[];
  /** Waits until the sink holds `n` records. */
  waitSink(n: number, what?: string): Promise<SinkRecord[]>;
  deadLetters(): Array<{ reason: string; data: Buffer | null; record_id: string | null }>;
  metric(name: keyof ReturnType<typeof auditFileMetrics> | keyof InProcessAgent['metrics'], labels?: Record<string, string>): Promise<number>;
}

async function startAgent(input: Record<string, unknown> = {}, opts: { auditDir?: string } = {}): Promise<Env> {
  const root = tmpDir();
  const auditDir = opts.auditDir ?? path.join(root, 'audit');
  const outFile = path.join(root, 'out', 'audit.ndjson');
  const agent = await InProcessAgent.start(configYaml({ auditDir, stateDir: path.join(root, 'state'), outFile, input }), { logFile: path.join(root, 'agent.log') });
  running.push(agent);
  const sink = () => readSink(outFile);
  return {
    root,
    auditDir,
    outFile,
    agent,
    sink,
    async waitSink(n, what = `${n} records at the sink`) {
      await waitFor(() => sink().length >= n, 15_000, what);
      return sink();
    },
    deadLetters: () => agent.agent.spool.db.prepare('SELECT reason, data, record_id FROM dead_letters ORDER BY id').all() as Array<{ reason: string; data: Buffer | null; record_id: string | null }>,
    async metric(name, labels = {}) {
      const own = auditFileMetrics(agent.metrics);
      const m = (name in own ? own[name as keyof typeof own] : agent.metrics[name as keyof InProcessAgent['metrics']]) as { get(): Promise<{ values: Array<{ value: number; labels: Record<string, unknown> }> }> };
      const { values } = await m.get();
      return values.filter((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val)).reduce((s, v) => s + v.value, 0);
    },
  };
}

const ids = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `${auditId(from + i)}:ResponseComplete`);

describe('audit_file: edge cases', () => {
  it('copytruncate: the copy takes over the old content at its offset, the truncated file restarts at 0, nothing twice', async () => {
    const env = await startAgent();
    const writer = new LumberjackWriter({ dir: env.auditDir, maxSizeBytes: 10 * 1024 * 1024 });
    for (let s = 0; s < 50; s++) await writer.write(line(s));
    await env.waitSink(50);
    // Lines the agent may not have read yet are copied away, then the file is truncated.
    for (let s = 50; s < 70; s++) await writer.write(line(s));
    expect(await writer.copyTruncate()).toBe('audit.log.1');
    for (let s = 70; s < 100; s++) await writer.write(line(s));
    const got = await env.waitSink(100);
    await sleep(500);
    expect(env.sink().map((r) => r.id).sort()).toEqual(ids(0, 100).sort());
    expect(got.slice(0, 50).map((r) => r.id)).toEqual(ids(0, 50));
    // Looked at after its next write, the truncated file has other first bytes: a new file on the
    // same inode (the copy holds the old content), no truncation. A look between the truncation
    // and that write (under load) sees it shorter: one truncation. Either way nothing is lost or doubled.
    expect(await env.metric('truncations', { input: 'audit' })).toBeLessThanOrEqual(1);
    await writer.close();
  });

  it('a deleted file and a new one under its name (possibly on the same inode) are two files', async () => {
    const env = await startAgent();
    fs.mkdirSync(env.auditDir, { recursive: true });
    const file = path.join(env.auditDir, 'audit.log');
    fs.writeFileSync(file, ids(0, 30).map((_, i) => `${line(i)}\n`).join(''));
    await env.waitSink(30);
    const before = fs.statSync(file).ino;
    fs.unlinkSync(file);
    fs.writeFileSync(file, Array.from({ length: 20 }, (_, i) => `${line(1000 + i)}\n`).join(''));
    const reused = fs.statSync(file).ino === before;
    await env.waitSink(50);
    await sleep(500);
    expect(env.sink().map((r) => r.id)).toEqual([...ids(0, 30), ...ids(1000, 1020)]);
    // Whether the filesystem reused the inode or not, the old file was read to its end: no gap.
    expect(await env.metric('gapFiles')).toBe(0);
    expect(typeof reused).toBe('boolean');
  });

  it('a line half-written at rotation is completed from the renamed file', async () => {
    const env = await startAgent();
    const writer = new LumberjackWriter({ dir: env.auditDir, maxSizeBytes: 1024 * 1024 });
    for (let s = 0; s < 5; s++) await writer.write(line(s));
    await env.waitSink(5);
    const split = `${line(5)}\n`;
    await writer.writeBytes(split.slice(0, 200));
    await sleep(400); // the agent has seen the half line (and must not ship it)
    expect(env.sink()).toHaveLength(5);
    await writer.writeBytes(split.slice(200));
    await writer.rotate();
    await writer.write(line(6));
    await env.waitSink(7);
    await sleep(300);
    expect(env.sink().map((r) => r.id)).toEqual(ids(0, 7));
    expect(env.sink()[5]!.raw).toBe(line(5));
    expect(env.deadLetters()).toEqual([]);
    await writer.close();
  });

  it('ships a 5 MiB line intact, dead-letters a 20 MiB line over the 16 MiB limit (counted), and keeps going', async () => {
    const env = await startAgent();
    const writer = new LumberjackWriter({ dir: env.auditDir, maxSizeBytes: 64 * 1024 * 1024 });
    const big = line(1, { padBytes: 5 * 1024 * 1024 });
    const huge = line(2, { padBytes: 20 * 1024 * 1024 });
    await writer.write(line(0));
    await writer.write(big);
    await writer.write(huge);
    await writer.write(line(3));
    const got = await env.waitSink(3);
    expect(got.map((r) => r.id)).toEqual([...ids(0, 2), ...ids(3, 4)]);
    const digest = (s: string) => createHash('sha256').update(s).digest('hex');
    expect(digest(got[1]!.raw)).toBe(digest(big));
    const dl = env.deadLetters();
    expect(dl).toHaveLength(1);
    expect(dl[0]!.reason).toMatch(/^oversize: line of \d+ bytes exceeds max_line_bytes 16777216/);
    expect(dl[0]!.record_id).toBe(`${auditId(2)}:ResponseComplete`);
    expect(huge.startsWith(dl[0]!.data!.toString('utf8'))).toBe(true);
    expect(await env.metric('oversizeLines', { input: 'audit', action: 'dead_letter' })).toBe(1);
    expect(await env.metric('deadLetters', { component_id: 'audit', reason: 'oversize' })).toBe(1);
    await writer.close();
  });

  it('on_oversize: truncate ships a marker record with the first bytes and the original size', async () => {
    const env = await startAgent({ max_line_bytes: '64KiB', on_oversize: 'truncate', oversize_sample_bytes: '1KiB' });
    const writer = new LumberjackWriter({ dir: env.auditDir, maxSizeBytes: 64 * 1024 * 1024 });
    const long = line(1, { padBytes: 200_000 });
    await writer.write(line(0));
    await writer.write(long);
    await writer.write(line(2));
    const got = await env.waitSink(3);
    expect(got[1]!.id).toBe(`${auditId(1)}:ResponseComplete`);
    expect(got[1]!.doc.ktrail_truncated).toEqual({ original_bytes: Buffer.byteLength(long), kept_bytes: 1024, max_line_bytes: 65536 });
    expect(got[1]!.doc.message).toBe(long.slice(0, 1024));
    expect(got[2]!.id).toBe(`${auditId(2)}:ResponseComplete`);
    expect(env.deadLetters()).toEqual([]);
    await writer.close();
  });

  it('dead-letters a line of invalid JSON (or passes it on wrapped, with on_parse_error: pass_raw)', async () => {
    for (const mode of ['dead_letter', 'pass_raw'] as const) {
      const env = await startAgent({ on_parse_error: mode });
      const writer = new LumberjackWriter({ dir: env.auditDir, maxSizeBytes: 1024 * 1024 });
      await writer.write(line(0));
      await writer.write('{"auditID": "broken", this is not json');
      await writer.write('{"kind":"Event","no":"auditID"}');
      await writer.write(line(1));
      if (mode === 'dead_letter') {
        const got = await env.waitSink(2);
        await waitFor(() => env.deadLetters().length === 2, 5000, 'dead letters');
        expect(got.map((r) => r.id)).toEqual(ids(0, 2));
        const dl = env.deadLetters();
        expect(dl.map((d) => d.reason.split(':')[0])).toEqual(['parse_error', 'parse_error']);
        expect(dl[0]!.data).toEqual(Buffer.from('{"auditID": "broken", this is not json'));
        expect(dl[1]!.reason).toMatch(/no auditID/);
        expect(dl[0]!.record_id).toMatch(/^[0-9a-f]{16}:\d+$/);
        expect(await env.metric('invalidLines', { action: 'dead_letter' })).toBe(2);
      } else {
        const got = await env.waitSink(4);
        expect(got[1]!.doc).toEqual({ message: '{"auditID": "broken", this is not json', ktrail_parse_error: expect.stringMatching(/^invalid JSON/) });
        expect(got[2]!.doc.ktrail_parse_error).toBe('no auditID');
        expect([got[0]!.id, got[3]!.id]).toEqual(ids(0, 2));
        expect(env.deadLetters()).toEqual([]);
        expect(await env.metric('invalidLines', { action: 'pass_raw' })).toBe(2);
      }
      await writer.close();
    }
  });

  it('starts on an empty file and reads what is appended later', async () => {
    const root = tmpDir();
    const auditDir = path.join(root, 'audit');
    fs.mkdirSync(auditDir);
    fs.writeFileSync(path.join(auditDir, 'audit.log'), '');
    const env = await startAgent({}, { auditDir });
    await sleep(400);
    expect(env.agent.agent.readiness().ready).toBe(true);
    fs.appendFileSync(path.join(auditDir, 'audit.log'), `${line(0)}\n\n${line(1)}\n`);
    const got = await env.waitSink(2);
    expect(got.map((r) => r.id)).toEqual(ids(0, 2));
  });

  it('waits for a directory that does not exist yet, healthy meanwhile', async () => {
    const root = tmpDir();
    const auditDir = path.join(root, 'later', 'audit');
    const env = await startAgent({}, { auditDir });
    await sleep(500);
    expect(env.agent.agent.readiness().checks['input:audit']).toEqual({ ok: true });
    expect(env.agent.logText()).toMatch(/audit log directory does not exist \(yet\)/);
    const writer = new LumberjackWriter({ dir: auditDir, maxSizeBytes: 8 * 1024 });
    for (let s = 0; s < 40; s++) await writer.write(line(s));
    const got = await env.waitSink(40);
    expect(got.map((r) => r.id)).toEqual(ids(0, 40));
    await writer.close();
  });
});
