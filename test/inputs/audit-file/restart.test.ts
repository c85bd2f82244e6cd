import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import zlib from 'node:zlib';
import BetterSqlite3 from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { LumberjackWriter } from '../../helpers/lumberjack.ts';
import { auditId, ChildAgent, childAgentsKilledAfterEach, configYaml, line, readSink, sinkCount, tmpDir, waitFor } from './harness.ts';

const agents = childAgentsKilledAfterEach();

interface Row {
  file_id: string;
  path: string;
  dev: string;
  ino: string;
  read_offset: number;
  size_bytes: number;
}

function checkpoints(stateDir: string): Row[] {
  const db = new BetterSqlite3(path.join(stateDir, 'ktrail.db'), { readonly: true });
  try {
    return db.prepare('SELECT file_id, path, dev, ino, read_offset, size_bytes FROM audit_file_checkpoints').all() as Row[];
  } finally {
    db.close();
  }
}

function setup(extraInput: Record<string, unknown> = {}, root = tmpDir()) {
  const auditDir = path.join(root, 'audit');
  const stateDir = path.join(root, 'state');
  const outFile = path.join(root, 'out', 'audit.ndjson');
  const cfg = path.join(root, 'ktrail.yaml');
  fs.writeFileSync(cfg, configYaml({ auditDir, stateDir, outFile, input: extraInput }));
  const start = () => {
    const a = new ChildAgent(cfg);
    agents.push(a);
    return a;
  };
  return { root, auditDir, stateDir, outFile, start };
}

describe('audit_file: restart (real agent process)', () => {
  it('stopped with SIGTERM mid-file while 5 rotations and compression happen, it resumes inside the .gz: no loss, no duplicate', async () => {
    const { auditDir, stateDir, outFile, start } = setup();
    const writer = new LumberjackWriter({ dir: auditDir, maxSizeBytes: 24 * 1024, compress: true, compressDelayMs: 5 });
    const written: string[] = [];
    let seq = 0;
    const write = async (n: number) => {
      for (let i = 0; i < n; i++, seq++) {
        await writer.write(line(seq));
        written.push(`${auditId(seq)}:ResponseComplete`);
      }
    };

    await write(150);
    let agent = start();
    await waitFor(() => sinkCount(outFile) >= written.length, 20_000, 'first lines at the sink');
    // A few lines into a fresh active file, read by the agent, then it stops.
    await writer.rotate();
    await write(10);
    await waitFor(() => sinkCount(outFile) >= written.length, 20_000, 'lines of the new active file at the sink');
    agent.kill('SIGTERM');
    expect(await agent.exited).toBe(0);

    // The row of the file the agent stopped in, by inode: under load the stop can come before a
    // rescan has stored the rename of the file rotated away above, whose row then still says audit.log.
    const activeIno = String(fs.statSync(path.join(auditDir, 'audit.log')).ino);
    const active = checkpoints(stateDir).find((r) => r.ino === activeIno)!;
    expect(active.read_offset).toBeGreaterThan(0);
    const firstLine = `${line(150)}\n`;

    // While it is down: the active file gets more lines, then 5 rotations; lumberjack compresses the backups.
    const rotationsBefore = writer.rotations;
    while (writer.rotations < rotationsBefore + 5) await write(5);
    await writer.idle();
    // The file the agent stopped in now exists only as a .gz.
    const holders = fs.readdirSync(auditDir).filter((f) => {
      const data = fs.readFileSync(path.join(auditDir, f));
      return (f.endsWith('.gz') ? zlib.gunzipSync(data) : data).subarray(0, firstLine.length).toString() === firstLine;
    });
    expect(holders).toHaveLength(1);
    expect(holders[0]!.endsWith('.gz')).toBe(true);

    agent = start();
    await waitFor(() => sinkCount(outFile) >= written.length, 20_000, 'every line at the sink after the restart');
    await sleep(300);
    agent.kill('SIGTERM');
    expect(await agent.exited).toBe(0);

    expect(readSink(outFile).map((r) => r.id)).toEqual(written);
    // The row of the file the agent stopped in now names a .gz and was read to its end.
    const resumed = checkpoints(stateDir).find((r) => r.file_id === active.file_id)!;
    expect(resumed.path.endsWith('.gz')).toBe(true);
    expect(resumed.read_offset).toBe(resumed.size_bytes);
    expect(resumed.read_offset).toBeGreaterThan(active.read_offset);
    await writer.close();
  });

  // `audit.log` alone, as most configs name it: the exact path covers its lumberjack backups.
  it.each([
    ['audit*.log*', undefined],
    ['audit.log (exact path)', 'audit.log'],
  ])('survives 20 SIGKILLs at random moments while writing continues (paths: %s): every auditID arrives, duplicates only from in-flight batches', async (_name, exact) => {
    const root = tmpDir();
    const { auditDir, outFile, start } = setup(exact ? { paths: [path.join(root, 'audit', exact)] } : {}, root);
    const writer = new LumberjackWriter({ dir: auditDir, maxSizeBytes: 32 * 1024, compress: true, compressDelayMs: 5 });
    const written: string[] = [];
    let seq = 0;
    let writing = true;
    const writing$ = (async () => {
      while (writing) {
        for (let i = 0; i < 5; i++, seq++) {
          await writer.write(line(seq));
          written.push(`${auditId(seq)}:ResponseComplete`);
        }
        await sleep(4);
      }
    })();

    const kills = 20;
    for (let k = 0; k < kills; k++) {
      const agent = start();
      // Startup takes about half a second: some kills land in it, most in the middle of reading.
      await sleep(300 + Math.random() * 900);
      agent.kill('SIGKILL');
      await agent.exited;
    }
    writing = false;
    await writing$;
    await writer.close();
    expect(writer.rotations).toBeGreaterThan(20);

    const agent = start();
    const want = new Set(written);
    await waitFor(() => sinkCount(outFile) >= written.length && new Set(readSink(outFile).map((r) => r.id)).size === want.size, 30_000, 'every id at the sink');
    await sleep(300);
    agent.kill('SIGTERM');
    expect(await agent.exited).toBe(0);

    const got = readSink(outFile).map((r) => r.id);
    const unique = new Set(got);
    expect([...unique].sort()).toEqual([...want].sort());
    // A kill can repeat at most the request in flight (batch.max_records: 200 in the test config).
    const duplicates = got.length - unique.size;
    expect(duplicates).toBeLessThanOrEqual(kills * 200);
    // The input itself never duplicates: within each request the order is the file order.
    const firstSeen = got.filter((id, i) => got.indexOf(id) === i);
    expect(firstSeen).toEqual(written);
  });
});
