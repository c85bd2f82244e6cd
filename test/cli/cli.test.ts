import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Spool, writeCheckpoint } from '../../src/spool/spool.ts';

const bin = path.join(import.meta.dirname, '..', '..', 'bin', 'ktrail.js');
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-cli-'));
  dirs.push(d);
  return d;
}
function ktrail(args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 30_000 });
}

function validConfig(dir: string, withHttp = true): string {
  fs.mkdirSync(path.join(dir, 'logs'), { recursive: true });
  const file = path.join(dir, 'ktrail.yaml');
  fs.writeFileSync(
    file,
    `service:
  state_dir: ${dir}/state
  metrics: { listen: "127.0.0.1:0" }
  shutdown_timeout: 2s
inputs:
  audit:
    type: audit_file
    paths: ["${dir}/logs/audit*.log*"]
outputs:
  out:
    type: file
    path: ${dir}/out/audit.ndjson
${withHttp ? '  es:\n    type: http\n    url: http://127.0.0.1:9/ingest\n    auth: { bearer_token: "super-secret-value" }\n' : ''}`,
  );
  return file;
}

describe('ktrail CLI', () => {
  it('--version and --help', () => {
    const v = ktrail(['--version']);
    expect(v.status).toBe(0);
    expect(v.stdout).toMatch(/^ktrail \d+\.\d+\.\d+/);
    const h = ktrail(['--help']);
    expect(h.status).toBe(0);
    expect(h.stdout).toContain('ktrail check -c FILE');
    expect(ktrail([]).status).toBe(2);
    const bad = ktrail(['frobnicate']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('unknown command "frobnicate"');
  });

  it('check: a valid config exits 0 and prints the resolved config with secrets masked', () => {
    const dir = tmp();
    const file = validConfig(dir);
    // With a file for the input path there is nothing to warn about.
    fs.writeFileSync(path.join(dir, 'logs', 'audit.log'), '');
    const r = ktrail(['check', '-c', file, '--json']);
    // No warning; only the note of the files the input path covers.
    expect(r.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('note: inputs.audit: paths[0] '))).toEqual([]);
    expect(r.status).toBe(0);
    const resolved = JSON.parse(r.stdout);
    expect(resolved.inputs.audit.type).toBe('audit_file');
    expect(resolved.service.shutdown_timeout).toBe(2000);
    expect(r.stdout).not.toContain('super-secret-value');
    expect(r.stdout).toContain('***');
  });

  it('check: an invalid config exits 2 and lists every problem with path, line and fix', () => {
    const dir = tmp();
    const file = path.join(dir, 'bad.yaml');
    fs.writeFileSync(file, 'spool:\n  max_bytes: plenty\ninputs:\n  audit:\n    type: audit_fle\noutputs:\n  out: { type: file }\n');
    const r = ktrail(['check', '-c', file]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('3 problems found');
    expect(r.stderr).toContain('spool.max_bytes (line 2): "plenty" is not a size');
    expect(r.stderr).toContain('inputs.audit.type (line 5): unknown input type "audit_fle"');
    expect(r.stderr).toContain('did you mean "audit_file"?');
    expect(r.stderr).toContain('outputs.out.path (line 7): required key is missing');
  });

  it('check: a missing file exits 2 with the reason', () => {
    const r = ktrail(['check', '-c', '/nonexistent/ktrail.yaml']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('cannot read config file /nonexistent/ktrail.yaml');
  });

  it('status: per-input checkpoints, spool size, per-output watermark and lag, dead letters', () => {
    const dir = tmp();
    const spool = new Spool({ stateDir: dir, maxBytes: 1e9 });
    const recs = Array.from({ length: 4 }, (_, i) => ({ id: `a:${i}`, timeMs: i, input: 'events', json: '{"x":1}' }));
    const b1 = spool.append({ input: 'events', records: recs, routes: ['es', 's3'], checkpoint: (db) => writeCheckpoint(db, 'events', 'resourceVersion', '12345') }).batchId!;
    spool.append({ input: 'events', records: recs, routes: ['es', 's3'] });
    spool.ack('es', [b1], { deadLetters: [{ component: 'es', output: 'es', code: 'mapper_parsing_exception', reason: 'mapper_parsing_exception: bad', data: '{}' }] });
    // The agent keeps the database open while status reads it.
    const r = ktrail(['status', '--state-dir', dir]);
    spool.close();
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('spool: 2 batches, 8 records');
    expect(r.stdout).toMatch(/events:\n\s+key=resourceVersion\s+value=12345/);
    expect(r.stdout).toMatch(/es: watermark=1 lag=4 records/);
    expect(r.stdout).toMatch(/s3: watermark=0 lag=8 records/);
    expect(r.stdout).toMatch(/es: 1 × mapper_parsing_exception, first \S+, last \S+\n\s+latest: mapper_parsing_exception: bad/);
    const json = JSON.parse(ktrail(['status', '--state-dir', dir, '--json']).stdout);
    expect(json.outputs.find((o: { output: string }) => o.output === 's3').pendingRecords).toBe(8);
  });

  it('status: a directory without state says so and exits 1', () => {
    const r = ktrail(['status', '--state-dir', tmp()]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('no ktrail state database');
  });

  it('run: SIGTERM stops the agent gracefully with exit 0 after delivering what was read', async () => {
    const dir = tmp();
    const file = validConfig(dir, false);
    const lines = Array.from({ length: 50 }, (_, i) =>
      JSON.stringify({ kind: 'Event', apiVersion: 'audit.k8s.io/v1', level: 'Metadata', auditID: `id-${i}`, stage: 'ResponseComplete', stageTimestamp: '2026-11-23T10:00:00.000000Z', verb: 'get' }),
    );
    fs.writeFileSync(path.join(dir, 'logs', 'audit.log'), `${lines.join('\n')}\n`);
    const child = spawn(process.execPath, [bin, 'run', '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const out = path.join(dir, 'out', 'audit.ndjson');
    const end = Date.now() + 20_000;
    while (!(fs.existsSync(out) && fs.readFileSync(out, 'utf8').split('\n').length > 50) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    expect(code).toBe(0);
    expect(stderr).toContain('"msg":"ktrail stopped"');
    const delivered = fs.readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l).auditID);
    expect(delivered).toEqual(lines.map((_, i) => `id-${i}`));
  });
});
