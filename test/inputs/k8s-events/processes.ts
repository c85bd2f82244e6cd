import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** The real agent as a child process (`node bin/ktrail.js run -c cfg`), for crash and leader tests. */

const BIN = path.join(import.meta.dirname, '..', '..', '..', 'bin', 'ktrail.js');

export interface CollectorConfig {
  dir: string;
  kubeconfig: string;
  sinkUrl: string;
  leader?: { identity: string; leaseName: string; leaseDuration: string; renewDeadline: string; retryPeriod: string };
  extra?: string[];
  /** The http output's batch.flush_interval (default 50ms; the shipped default is 1s). */
  flushInterval?: string;
}

export function writeCollectorConfig(c: CollectorConfig): string {
  const lines = [
    'service:',
    `  state_dir: ${path.join(c.dir, 'state')}`,
    '  metrics: { enabled: false }',
    '  shutdown_timeout: 3s',
    '  log_level: info',
    'inputs:',
    '  events:',
    '    type: k8s_events',
    `    kubeconfig: ${c.kubeconfig}`,
    '    backoff: { initial: 50ms, max: 500ms }',
    ...(c.extra ?? []),
  ];
  if (c.leader) {
    lines.push(
      '    leader_election:',
      '      enabled: true',
      `      identity: ${c.leader.identity}`,
      `      lease_name: ${c.leader.leaseName}`,
      '      lease_namespace: default',
      `      lease_duration: ${c.leader.leaseDuration}`,
      `      renew_deadline: ${c.leader.renewDeadline}`,
      `      retry_period: ${c.leader.retryPeriod}`,
    );
  }
  lines.push(
    'outputs:',
    '  sink:',
    '    type: http',
    `    url: ${c.sinkUrl}`,
    `    batch: { flush_interval: ${c.flushInterval ?? '50ms'} }`,
    '    retry: { initial_backoff: 50ms, max_backoff: 500ms }',
    '',
  );
  const file = path.join(c.dir, 'ktrail.yaml');
  fs.mkdirSync(c.dir, { recursive: true });
  fs.writeFileSync(file, lines.join('\n'));
  return file;
}

export class Collector {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  stderr = '';

  constructor(configFile: string) {
    this.child = spawn(process.execPath, [BIN, 'run', '-c', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child.stderr!.setEncoding('utf8');
    this.child.stderr!.on('data', (d: string) => {
      this.stderr += d;
    });
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }

  /** Log lines (pino JSON) whose msg contains `text`. */
  logs(text: string): Array<Record<string, unknown>> {
    const out: Array<Record<string, unknown>> = [];
    for (const line of this.stderr.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        const rec = JSON.parse(line) as Record<string, unknown>;
        if (String(rec.msg ?? '').includes(text)) out.push(rec);
      } catch {
        // a partial line at the end
      }
    }
    return out;
  }

  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }

  async terminate(): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    return this.exited;
  }
}
