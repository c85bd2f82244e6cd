import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';

// `npm start` = `node bin/ktrail.js run -c config/local.yaml`, run here in a
// copy of the repo's config and samples so that ./.state and ./out are private.
const root = path.join(import.meta.dirname, '..', '..');
const bin = path.join(root, 'bin', 'ktrail.js');
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function sampleLines(): string[] {
  const dir = path.join(root, 'samples', 'audit');
  const lines: string[] = [];
  for (const f of fs.readdirSync(dir)) {
    if (!f.startsWith('audit')) continue;
    let buf = fs.readFileSync(path.join(dir, f));
    if (f.endsWith('.gz')) buf = zlib.gunzipSync(buf);
    lines.push(...buf.toString('utf8').split('\n').filter((l) => l.trim() !== ''));
  }
  return lines;
}

async function runDemo(cwd: string, untilLines: number) {
  const child = spawn(process.execPath, [bin, 'run', '-c', 'config/local.yaml'], {
    cwd,
    env: { ...process.env, KTRAIL_METRICS_LISTEN: '127.0.0.1:0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const out = path.join(cwd, 'out', 'audit.ndjson');
  const count = () => (fs.existsSync(out) ? fs.readFileSync(out, 'utf8').split('\n').filter(Boolean).length : 0);
  const end = Date.now() + 30_000;
  // Wait for the work and for the first progress line (the agent is up).
  while ((count() < untilLines || !stderr.includes('ktrail: read')) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  child.kill('SIGINT');
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  return { code, stderr, lines: fs.existsSync(out) ? fs.readFileSync(out, 'utf8').split('\n').filter(Boolean) : [] };
}

describe('the local demo (npm start)', () => {
  it('ships every sample audit event once, redacts secrets, stops on Ctrl-C and resumes without re-reading', async () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-demo-'));
    dirs.push(cwd);
    fs.cpSync(path.join(root, 'config'), path.join(cwd, 'config'), { recursive: true });
    fs.cpSync(path.join(root, 'samples'), path.join(cwd, 'samples'), { recursive: true });
    const expected = sampleLines();
    expect(expected.length).toBeGreaterThan(500);

    const first = await runDemo(cwd, expected.length);
    expect(first.code).toBe(0);
    expect(first.stderr).toMatch(/ktrail: read \d+ · delivered/); // the progress line
    const docs = first.lines.map((l) => JSON.parse(l) as { auditID: string; stage: string; objectRef?: { resource?: string }; requestObject?: unknown; responseObject?: unknown });
    const ids = docs.map((d) => `${d.auditID}:${d.stage}`);
    expect(new Set(ids).size).toBe(ids.length);
    expect(new Set(ids)).toEqual(new Set(expected.map((l) => { const d = JSON.parse(l); return `${d.auditID}:${d.stage}`; })));
    const secretBodies = docs.filter((d) => d.objectRef?.resource === 'secrets' && (d.requestObject !== undefined || d.responseObject !== undefined));
    expect(secretBodies).toEqual([]);
    expect(expected.some((l) => l.includes('"resource":"secrets"') && l.includes('"responseObject"'))).toBe(true);

    const second = await runDemo(cwd, 0);
    expect(second.code).toBe(0);
    expect(second.lines.length).toBe(first.lines.length);
  });
});
