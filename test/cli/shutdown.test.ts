import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

const root = path.join(import.meta.dirname, '..', '..');
const bin = path.join(root, 'bin', 'ktrail.js');
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

describe('ktrail run shutdown with an unreachable output', () => {
  it('says at warn what it waits for and exits at once on the second Ctrl-C', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-shutdown-'));
    dirs.push(dir);
    fs.cpSync(path.join(root, 'samples', 'audit', 'audit.log'), path.join(dir, 'audit.log'));
    fs.writeFileSync(
      path.join(dir, 'ktrail.yaml'),
      `service:
  state_dir: ${dir}/state
  log_level: warn
  shutdown_timeout: 60s
  metrics: { enabled: false }
inputs:
  audit: { type: audit_file, paths: [${dir}/audit.log], start_at: beginning }
outputs:
  down:
    type: http
    url: http://127.0.0.1:1/ingest
    retry: { initial_backoff: 10ms, max_backoff: 50ms }
`,
    );
    const child = spawn(process.execPath, [bin, 'run', '-c', path.join(dir, 'ktrail.yaml')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((r) => child.once('exit', r));
    const until = async (cond: () => boolean) => {
      const end = Date.now() + 30_000;
      while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      expect(cond(), stderr).toBe(true);
    };
    // Records are spooled once the state DB holds batches; give the input a moment.
    await new Promise((r) => setTimeout(r, 1500));
    child.kill('SIGINT');
    await until(() => stderr.includes('stopping: waiting for'));
    const warn = stderr.split('\n').find((l) => l.includes('stopping: waiting for'))!;
    const line = JSON.parse(warn) as { level: string; msg: string; waitingFor: Array<{ output: string }>; deadline: string };
    expect(line.level).toBe('warn');
    expect(line.waitingFor.map((w) => w.output)).toEqual(['down']);
    expect(line.msg).toMatch(/press Ctrl-C again/);
    // The deadline is a minute away; the second signal does not wait for it.
    expect(Date.parse(line.deadline) - Date.now()).toBeGreaterThan(30_000);
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(stderr).toMatch(/second SIGINT: exiting now/);
  }, 60_000);
});
