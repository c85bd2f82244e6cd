/**
 * The run, for any output: an audit log written and rotated by a
 * lumberjack writer; a first agent (in-process, a gate holding its first
 * batch) that discovers every file and stops; a backup deleted before it
 * was read; three agent processes SIGKILLed while writing goes on; a last
 * one that delivers everything and stops with SIGTERM (sealing on the way).
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, expect } from 'vitest';
import { LumberjackWriter } from '../helpers/lumberjack.ts';
import { auditId, ChildAgent, configYaml, Gate, InProcessAgent, line, REPO, removeTmpDirs, tmpDir, waitFor } from '../inputs/audit-file/harness.ts';

export const MANIFEST = 'manifest: { enabled: true, seal_interval: 1s }';

const running: InProcessAgent[] = [];
const children: ChildAgent[] = [];
const gates: Gate[] = [];

/** Call once at the top of a test file. */
export function cleanUpScenarios(): void {
  afterEach(async () => {
    for (const g of gates.splice(0)) g.open();
    for (const a of running.splice(0)) await a.stop().catch(() => undefined);
    for (const c of children.splice(0)) {
      c.kill('SIGKILL');
      await c.exited;
    }
    removeTmpDirs();
  });
}

export interface Scenario {
  root: string;
  auditDir: string;
  stateDir: string;
  /** The config file the agents ran with (output `sink`). */
  config: string;
  /** The deleted backup: its path and size. */
  deleted: { file: string; bytes: number };
  /** Every record id that must have arrived (everything written but the deleted backup). */
  expectedIds: string[];
}

/** `sinkYaml`: the `sink` output's YAML mapping, on one line (`{ type: file, … }`). */
export function configFor(auditDir: string, stateDir: string, sinkYaml: string, extra = MANIFEST): string {
  const yaml = configYaml({ auditDir, stateDir, outFile: '/unused', input: { read_buffer_size: '16KiB' }, extra });
  return yaml.replace(/^ {2}sink: .*$/m, `  sink: ${sinkYaml}`);
}

export async function runScenario(sinkYaml: (root: string) => string): Promise<Scenario> {
  const root = tmpDir();
  const auditDir = path.join(root, 'audit');
  const stateDir = path.join(root, 'state');
  const sink = sinkYaml(root);
  const writer = new LumberjackWriter({ dir: auditDir, maxSizeBytes: 40 * 1024 });
  let seq = 0;
  for (; seq < 230; seq++) await writer.write(line(seq));
  const backups = writer.backups();
  expect(backups.length).toBeGreaterThanOrEqual(3);

  const gate = new Gate();
  gates.push(gate);
  const first = await InProcessAgent.start(configFor(auditDir, stateDir, sink, `${MANIFEST}\nprocessors:\n  gate: { type: test_gate }`), {
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

  const deleted = path.join(auditDir, backups[1]!);
  const bytes = fs.statSync(deleted).size;
  const deletedIds = new Set(idsOf(fs.readFileSync(deleted, 'utf8')));
  fs.unlinkSync(deleted);

  const config = path.join(root, 'ktrail.yaml');
  fs.writeFileSync(config, configFor(auditDir, stateDir, sink));
  let writing = true;
  const writing$ = (async () => {
    while (writing) {
      for (let i = 0; i < 5; i++, seq++) await writer.write(line(seq));
      await sleep(5);
    }
  })();
  for (let k = 0; k < 3; k++) {
    const agent = new ChildAgent(config);
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

  const last = new ChildAgent(config);
  children.push(last);
  await waitFor(() => caughtUp(stateDir, auditDir), 30_000, 'every file read to its end and delivered');
  last.kill('SIGTERM');
  expect(await last.exited).toBe(0);
  children.pop();
  const expectedIds = Array.from({ length: seq }, (_, s) => `${auditId(s)}:ResponseComplete`).filter((id) => !deletedIds.has(id));
  return { root, auditDir, stateDir, config, deleted: { file: deleted, bytes }, expectedIds };
}

/** Every file on disk checkpointed at its end, and nothing left to deliver. */
function caughtUp(stateDir: string, auditDir: string): boolean {
  const db = new BetterSqlite3(path.join(stateDir, 'ktrail.db'), { readonly: true });
  try {
    const rows = db.prepare('SELECT path, read_offset AS offset FROM audit_file_checkpoints').all() as Array<{ path: string; offset: number }>;
    const pending = (db.prepare('SELECT count(*) AS n FROM spool_deliveries').get() as { n: number }).n;
    if (pending > 0) return false;
    for (const f of fs.readdirSync(auditDir)) {
      const size = fs.statSync(path.join(auditDir, f)).size;
      const row = rows.find((r) => path.basename(r.path) === f);
      if (!row || row.offset < size) return false;
    }
    return true;
  } finally {
    db.close();
  }
}

export function idsOf(ndjson: string): string[] {
  const out: string[] = [];
  for (const l of ndjson.split('\n')) {
    if (l === '' || l.startsWith('{"ktrail_manifest":')) continue;
    const d = JSON.parse(l) as { auditID: string; stage: string };
    out.push(`${d.auditID}:${d.stage}`);
  }
  return out;
}

export function ktrailVerify(config: string, ...extra: string[]) {
  return spawnSync(process.execPath, [path.join(REPO, 'bin/ktrail.js'), 'verify', '-c', config, '--output', 'sink', ...extra], { encoding: 'utf8', timeout: 60_000 });
}

/** The same without blocking the event loop: needed when the destination is served by this process (the S3 proxy). */
export function ktrailVerifyAsync(config: string, ...extra: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [path.join(REPO, 'bin/ktrail.js'), 'verify', '-c', config, '--output', 'sink', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  return new Promise((resolve) =>
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    }),
  );
}

/** The gap lines `verify` printed. */
export function gapLines(stdout: string): string[] {
  return stdout.split('\n').filter((l) => / #\d+ at /.test(l));
}

export function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** A manifest record's own seq, from its first bytes. */
export const MANIFEST_SEQ_RE = (seq: number) => new RegExp(`^\\{"ktrail_manifest":\\{"version":1,"output":"sink","node":"[^"]*","seq":${seq},`);

/**
 * The intact run's verify report: nothing on stderr, `result: OK`, exit 0,
 * exactly one gap (the backup deleted unread, with its size), and every
 * expected record present and unchanged. Returns the gap lines and the
 * "N of M record(s)" match for callers that check more.
 */
export function expectOnlyTheDeletedGap(good: { status: number | null; stdout: string; stderr: string }, sc: Scenario): { gaps: string[]; covered: RegExpExecArray } {
  expect(good.stderr).toBe('');
  expect(good.stdout).toContain('result: OK');
  expect(good.status).toBe(0);
  const gaps = gapLines(good.stdout);
  expect(gaps).toHaveLength(1);
  expect(gaps[0]).toContain(`deleted, 1 file(s), ${sc.deleted.bytes} byte(s)`);
  const covered = /(\d+) of (\d+) record\(s\) present and unchanged/.exec(good.stdout)!;
  expect(Number(covered[1])).toBe(sc.expectedIds.length);
  return { gaps, covered };
}
