import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { LumberjackWriter } from '../helpers/lumberjack.ts';
import { auditId, ChildAgent, configYaml, Gate, InProcessAgent, line, readSink, REPO, removeTmpDirs, tmpDir, waitFor } from '../inputs/audit-file/harness.ts';

/**
 * The scenario against the file output: a run with rotations, a
 * backup deleted before it was read, 3 SIGKILLs; then `ktrail verify -c
 * --output` passes and reports exactly that one gap, and fails on a deleted
 * record, an edited record and a removed manifest, naming what is wrong.
 */

const running: InProcessAgent[] = [];
const children: ChildAgent[] = [];
const gates: Gate[] = [];
afterEach(async () => {
  for (const g of gates.splice(0)) g.open();
  for (const a of running.splice(0)) await a.stop().catch(() => undefined);
  for (const c of children.splice(0)) {
    c.kill('SIGKILL');
    await c.exited;
  }
  removeTmpDirs();
});

const MANIFEST = 'manifest: { enabled: true, seal_interval: 1s }';

function verify(cfg: string, ...extra: string[]) {
  return spawnSync(process.execPath, [path.join(REPO, 'bin/ktrail.js'), 'verify', '-c', cfg, '--output', 'sink', ...extra], { encoding: 'utf8', timeout: 60_000 });
}

/** The config `verify` reads (the output's section is what matters), pointed at `outFile`. */
function verifyConfig(root: string, name: string, auditDir: string, stateDir: string, outFile: string): string {
  const file = path.join(root, `${name}.yaml`);
  fs.writeFileSync(file, configYaml({ auditDir, stateDir, outFile, extra: MANIFEST }));
  return file;
}

/** A copy of the sink's directory, changed by `edit`, and a config that points at it. */
function variant(root: string, name: string, auditDir: string, stateDir: string, outFile: string, edit: (lines: string[]) => string[]): string {
  const dir = path.join(root, name);
  fs.mkdirSync(dir);
  for (const f of fs.readdirSync(path.dirname(outFile))) {
    const lines = fs.readFileSync(path.join(path.dirname(outFile), f), 'utf8').split('\n');
    fs.writeFileSync(path.join(dir, f), edit(lines).join('\n'));
  }
  return verifyConfig(root, name, auditDir, stateDir, path.join(dir, path.basename(outFile)));
}

describe('ktrail verify against the file output', () => {
  it('after rotations, a deleted-unread backup and 3 SIGKILLs: passes with exactly that gap; fails on a deleted record, an edited record, a removed manifest', async () => {
    const root = tmpDir();
    const auditDir = path.join(root, 'audit');
    const stateDir = path.join(root, 'state');
    const outFile = path.join(root, 'out', 'audit.ndjson');
    const writer = new LumberjackWriter({ dir: auditDir, maxSizeBytes: 40 * 1024 });
    let seq = 0;
    for (; seq < 230; seq++) await writer.write(line(seq));
    const backups = writer.backups();
    expect(backups.length).toBeGreaterThanOrEqual(3);

    // Run 1 (in-process): a gate holds the first batch while every file is discovered, then it stops.
    const gate = new Gate();
    gates.push(gate);
    const base = { auditDir, stateDir, outFile, input: { read_buffer_size: '16KiB' } };
    const first = await InProcessAgent.start(configYaml({ ...base, extra: `${MANIFEST}\nprocessors:\n  gate: { type: test_gate }` }), {
      extraPlugins: [gate.plugin()],
      logFile: path.join(root, 'run1.log'),
    });
    running.push(first);
    const known = () => (first.agent.spool.db.prepare('SELECT count(*) AS n FROM audit_file_checkpoints').get() as { n: number }).n;
    await waitFor(() => gate.blocked === 1 && known() === backups.length + 1, 10_000, 'all files discovered, first batch held');
    const stopping = first.stop();
    gate.open();
    await stopping;
    running.pop();
    // While it is down, retention deletes the second-oldest backup, never read.
    const deleted = path.join(auditDir, backups[1]!);
    const deletedBytes = fs.statSync(deleted).size;
    const deletedIds = new Set(
      fs
        .readFileSync(deleted, 'utf8')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => {
          const d = JSON.parse(l) as { auditID: string; stage: string };
          return `${d.auditID}:${d.stage}`;
        }),
    );
    expect(deletedIds.size).toBeGreaterThan(0);
    fs.unlinkSync(deleted);

    // Runs 2-4 are SIGKILLed while the apiserver keeps writing and rotating; run 5 drains and stops.
    const cfg = path.join(root, 'ktrail.yaml');
    fs.writeFileSync(cfg, configYaml({ ...base, extra: MANIFEST }));
    let writing = true;
    const writing$ = (async () => {
      while (writing) {
        for (let i = 0; i < 5; i++, seq++) await writer.write(line(seq));
        await sleep(5);
      }
    })();
    for (let k = 0; k < 3; k++) {
      const agent = new ChildAgent(cfg);
      children.push(agent);
      await sleep(1500 + Math.random() * 1500);
      agent.kill('SIGKILL');
      await agent.exited;
      children.pop();
    }
    writing = false;
    await writing$;
    await writer.close();
    expect(writer.rotations).toBeGreaterThan(5);
    const last = new ChildAgent(cfg);
    children.push(last);
    const wantIds = Array.from({ length: seq }, (_, s) => `${auditId(s)}:ResponseComplete`).filter((id) => !deletedIds.has(id));
    await waitFor(() => new Set(readSinkData(outFile)).size >= wantIds.length, 30_000, 'every record not deleted unread at the sink');
    await sleep(500);
    last.kill('SIGTERM');
    expect(await last.exited).toBe(0);
    children.pop();
    expect([...new Set(readSinkData(outFile))].sort()).toEqual(wantIds.sort());

    // Intact: passes, and the only gap is the deleted backup with its size.
    const good = verify(verifyConfig(root, 'verify', auditDir, stateDir, outFile));
    expect(good.stderr).toBe('');
    expect(good.stdout).toContain('result: OK');
    expect(good.status).toBe(0);
    const gapLines = good.stdout.split('\n').filter((l) => / #\d+ at /.test(l));
    expect(gapLines).toHaveLength(1);
    expect(gapLines[0]).toContain(`deleted, 1 file(s), ${deletedBytes} byte(s)`);
    expect(gapLines[0]).toContain(backups[1]!);
    // Every record that reached the sink is covered by a manifest.
    const covered = /(\d+) of (\d+) record\(s\) present and unchanged/.exec(good.stdout)!;
    expect(Number(covered[1])).toBe(Number(covered[2]));
    expect(Number(covered[1])).toBe(new Set(readSinkData(outFile)).size);

    // One record deleted (every copy of it, replays included): fails and names its entry and source range.
    const data = readSink(outFile).filter((r) => r.id !== '');
    const victim = data[Math.floor(data.length / 2)]!;
    const missing = verify(variant(root, 'missing', auditDir, stateDir, outFile, (ls) => ls.filter((l) => l !== victim.raw)));
    expect(missing.status).toBe(1);
    expect(missing.stdout).toMatch(new RegExp(`FAIL audit:${escape(path.join(auditDir, 'audit.log'))} entry #\\d+, \\S+ bytes \\d+\\.\\.\\d+ \\(fingerprint [0-9a-f]+\\), batch \\d+: record \\d+ \\(${victim.id}\\) missing`));
    expect(missing.stdout).toContain('result: FAILED');

    // One record edited: fails on its hash.
    const edited = verify(variant(root, 'edited', auditDir, stateDir, outFile, (ls) => ls.map((l) => (l === victim.raw ? l.replace('"verb":"get"', '"verb":"delete"') : l))));
    expect(edited.status).toBe(1);
    expect(edited.stdout).toContain(`(${victim.id}) altered (SHA-256 differs from the manifest`);

    // One manifest removed: fails on the chain.
    const removed = verify(variant(root, 'removed', auditDir, stateDir, outFile, (ls) => ls.filter((l) => !/^\{"ktrail_manifest":\{"version":1,"output":"sink","node":"[^"]*","seq":2,/.test(l))));
    if (process.env.KTRAIL_VERIFY_DEBUG) fs.writeFileSync(process.env.KTRAIL_VERIFY_DEBUG, [good, missing, edited, removed].map((r) => r.stdout).join('\n=====\n'));
    expect(removed.status).toBe(1);
    expect(removed.stdout).toMatch(/manifests #2\.\.#2 are missing|entries #\d+\.\.#\d+ are in no manifest found/);
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The ids of the data records at the sink (manifests left out). */
function readSinkData(outFile: string): string[] {
  return readSink(outFile)
    .filter((r) => r.id !== '')
    .map((r) => r.id);
}
