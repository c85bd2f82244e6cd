import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

// `npm start` in a private copy of the project (package.json, config, samples;
// bin/ linked back), so ./.state and ./out stay out of the repo. The signal
// goes to npm's own process, as a supervisor's or a terminal's would.
const root = path.join(import.meta.dirname, '..', '..');
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

async function portIsFree(port: number): Promise<boolean> {
  const srv = net.createServer();
  return new Promise((resolve) => {
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

async function metricsUp(port: number): Promise<boolean> {
  try {
    return (await fetch(`http://127.0.0.1:${port}/metrics`)).ok;
  } catch {
    return false;
  }
}

describe('npm start', () => {
  it('passes SIGINT on: ktrail exits cleanly within 5 s and frees its port', async () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-npmstart-'));
    dirs.push(cwd);
    fs.copyFileSync(path.join(root, 'package.json'), path.join(cwd, 'package.json'));
    fs.symlinkSync(path.join(root, 'bin'), path.join(cwd, 'bin'));
    fs.cpSync(path.join(root, 'config'), path.join(cwd, 'config'), { recursive: true });
    fs.cpSync(path.join(root, 'samples'), path.join(cwd, 'samples'), { recursive: true });
    const port = await freePort();
    const npm = spawn('npm', ['start', '--silent'], {
      cwd,
      env: { ...process.env, KTRAIL_METRICS_LISTEN: `127.0.0.1:${port}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    npm.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
      npm.once('exit', (code, signal) => r({ code, signal })),
    );
    const upBy = Date.now() + 30_000;
    while (!(await metricsUp(port)) && Date.now() < upBy) await new Promise((r) => setTimeout(r, 100));
    expect(await metricsUp(port), stderr).toBe(true);

    const sentAt = Date.now();
    npm.kill('SIGINT');
    const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 5_000).unref());
    const result = await Promise.race([exited, timeout]);
    if (result === 'timeout') npm.kill('SIGKILL');
    expect(result, stderr).not.toBe('timeout');
    expect(Date.now() - sentAt).toBeLessThan(5_000);
    expect(result).toEqual({ code: 0, signal: null });
    // The process npm ran is gone too: nothing holds the port.
    expect(await portIsFree(port)).toBe(true);
  }, 60_000);
});
