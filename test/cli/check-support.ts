import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const bin = path.join(import.meta.dirname, '..', '..', 'bin', 'ktrail.js');

export interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `ktrail ...` asynchronously, so test servers in this process keep answering. */
export function ktrail(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

export function tmpDir(dirs: string[]): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-check-'));
  dirs.push(d);
  return d;
}

/** A config with one audit_file input reading `<dir>/logs`, the given extra sections and outputs (YAML text). */
export function writeConfig(dir: string, opts: { inputs?: string; processors?: string; outputs: string; stateDir?: string }): string {
  fs.mkdirSync(path.join(dir, 'logs'), { recursive: true });
  const file = path.join(dir, 'ktrail.yaml');
  fs.writeFileSync(
    file,
    [
      'service:',
      `  state_dir: ${opts.stateDir ?? path.join(dir, 'state')}`,
      'inputs:',
      '  audit:',
      '    type: audit_file',
      `    paths: ["${dir}/logs/audit*.log*"]`,
      ...(opts.inputs ? [opts.inputs] : []),
      ...(opts.processors ? ['processors:', opts.processors] : []),
      'outputs:',
      opts.outputs,
      '',
    ].join('\n'),
  );
  return file;
}
