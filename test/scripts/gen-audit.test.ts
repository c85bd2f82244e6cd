import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { listBackups, parseBackupName } from '../generators/lumberjack.ts';

const run = promisify(execFile);
const script = path.join(import.meta.dirname, '..', '..', 'scripts', 'gen-audit.ts');
const dirs: string[] = [];

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-'));
  dirs.push(dir);
  return dir;
}

async function gen(outDir: string, ...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [script, '--out', outDir, '--bytes', '400000', ...args]);
  return stdout;
}

function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of fs.readdirSync(dir).sort()) out[name] = fs.readFileSync(path.join(dir, name)).toString('base64');
  return out;
}

afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('scripts/gen-audit.ts', () => {
  it('writes the same bytes on every run, into any directory, and reruns in place', async () => {
    const a = tempDir();
    const b = tempDir();
    await gen(a);
    await gen(b);
    expect(snapshot(b)).toEqual(snapshot(a));
    fs.writeFileSync(path.join(a, 'keep-me.txt'), 'not a log');
    await gen(a);
    const again = snapshot(a);
    expect(again['keep-me.txt']).toBeDefined();
    delete again['keep-me.txt'];
    expect(again).toEqual(snapshot(b));
  });

  it('lays files out like a rotated audit dir: one .gz backup, three plain ones, audit.log', async () => {
    const dir = tempDir();
    const stdout = await gen(dir);
    expect(stdout).toContain('audit.log');
    const backups = listBackups(dir);
    expect(backups).toHaveLength(4);
    expect(backups[0]).toMatch(/^audit-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{3}\.log\.gz$/);
    for (const name of backups.slice(1)) expect(parseBackupName('audit.log', name)?.compressed).toBe(false);
    expect(fs.readdirSync(dir).sort()).toEqual([...backups, 'audit.log'].sort());

    // Oldest first, the files are one stream of complete requests in time order.
    const text = [...backups, 'audit.log']
      .map((name) => {
        const bytes = fs.readFileSync(path.join(dir, name));
        return (name.endsWith('.gz') ? zlib.gunzipSync(bytes) : bytes).toString();
      })
      .join('');
    expect(text.endsWith('\n')).toBe(true);
    const events = text.trimEnd().split('\n').map((l) => JSON.parse(l) as { auditID: string; stage: string; stageTimestamp: string });
    const stages = new Map<string, string[]>();
    for (const e of events) stages.set(e.auditID, [...(stages.get(e.auditID) ?? []), e.stage]);
    for (const s of stages.values()) {
      expect(s[0]).toBe('RequestReceived');
      expect(['ResponseComplete', 'Panic']).toContain(s.at(-1));
    }
    const times = events.map((e) => e.stageTimestamp);
    expect([...times].sort()).toEqual(times);
  });

  it('rejects bad arguments with a message and exit code 1', async () => {
    await expect(run(process.execPath, [script, '--bytes', 'lots', '--out', tempDir()])).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining('--bytes must be an integer'),
    });
  });
});
