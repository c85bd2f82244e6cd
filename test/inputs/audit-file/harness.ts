/**
 * Helpers for the audit_file tests: temp dirs, configs, the agent in-process
 * (for tests that need a gate or direct access to the state DB) or as a child
 * process (`node bin/ktrail.js run`), and reading what reached the `file` sink.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach } from 'vitest';
import { z } from 'zod';
import { loadConfigText } from '../../../src/config/load.ts';
import { Agent } from '../../../src/pipeline/agent.ts';
import { prepareInputs } from '../../../src/pipeline/prepare.ts';
import type { Plugin, ProcessorPlugin } from '../../../src/plugin.ts';
import { createLogger } from '../../../src/telemetry/logger.ts';
import { createMetrics, type Metrics } from '../../../src/telemetry/metrics.ts';
import { TelemetryServer } from '../../../src/telemetry/server.ts';
import { auditLine } from '../../helpers/audit-events.ts';

export const REPO = path.resolve(import.meta.dirname, '../../..');

const dirs: string[] = [];
export function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-af-'));
  dirs.push(d);
  return d;
}
export function removeTmpDirs(): void {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}

/** A deterministic auditID for sequence number `seq`. */
export function auditId(seq: number): string {
  return `00000000-0000-4000-8000-${seq.toString(16).padStart(12, '0')}`;
}

/** One realistic audit line (no newline) with auditID(seq); `padBytes` grows it with a request body. */
export function line(seq: number, opts: { padBytes?: number; stage?: 'RequestReceived' | 'ResponseComplete' } = {}): string {
  return auditLine({
    auditID: auditId(seq),
    stage: opts.stage ?? 'ResponseComplete',
    level: opts.padBytes ? 'Request' : 'Metadata',
    verb: opts.padBytes ? 'create' : 'get',
    objectRef: { resource: 'configmaps', namespace: 'default', name: `cm-${seq}`, apiVersion: 'v1' },
    ...(opts.padBytes ? { requestObject: { kind: 'ConfigMap', apiVersion: 'v1', data: { blob: 'x'.repeat(opts.padBytes) } } } : {}),
    requestReceivedTimestamp: new Date(1_714_557_600_000 + seq),
  });
}

export interface ConfigOptions {
  auditDir: string;
  stateDir: string;
  outFile: string;
  input?: Record<string, unknown>;
  metrics?: boolean;
  extra?: string;
  logLevel?: string;
}

export function configYaml(o: ConfigOptions): string {
  const input = { type: 'audit_file', paths: [path.join(o.auditDir, 'audit*.log*')], rescan_interval: '200ms', ...o.input };
  return [
    'service:',
    `  state_dir: ${JSON.stringify(o.stateDir)}`,
    `  log_level: ${o.logLevel ?? 'info'}`,
    '  shutdown_timeout: 5s',
    o.metrics === false ? '  metrics: { enabled: false }' : '  metrics: { listen: "127.0.0.1:0" }',
    'inputs:',
    `  audit: ${JSON.stringify(input)}`,
    o.extra ?? '',
    'outputs:',
    `  sink: { type: file, path: ${JSON.stringify(o.outFile)}, max_file_bytes: 10GiB, batch: { max_records: 200, flush_interval: 50ms } }`,
  ].join('\n');
}

/** A processor that holds batches until allowed through: lets a test stop the agent mid-stream. */
export class Gate {
  #passes = 0;
  #waiters: Array<() => void> = [];
  blocked = 0;
  allow(n: number): void {
    this.#passes += n;
    const w = this.#waiters.splice(0);
    for (const f of w) f();
  }
  open(): void {
    this.allow(Number.POSITIVE_INFINITY);
  }
  async pass(): Promise<void> {
    while (this.#passes <= 0) {
      this.blocked++;
      await new Promise<void>((r) => this.#waiters.push(r));
      this.blocked--;
    }
    this.#passes--;
  }
  plugin(): ProcessorPlugin {
    return {
      kind: 'processor',
      type: 'test_gate',
      description: 'test gate',
      schema: z.strictObject({}),
      create: () => ({
        process: async (records) => {
          await this.pass();
          return records;
        },
      }),
    };
  }
}

export class InProcessAgent {
  readonly agent: Agent;
  readonly metrics: Metrics;
  readonly logFile: string;
  readonly #logFd: number;
  #server: TelemetryServer | undefined;
  metricsUrl = '';

  private constructor(agent: Agent, metrics: Metrics, logFile: string, logFd: number) {
    this.agent = agent;
    this.metrics = metrics;
    this.logFile = logFile;
    this.#logFd = logFd;
  }

  /**
   * `afterPrepare`, when given, runs between the inputs' prepare step (which
   * opens the audit files, as `ktrail run` does first) and the agent's start.
   */
  static async start(
    yaml: string,
    opts: { extraPlugins?: Plugin[]; logFile: string; serveMetrics?: boolean; afterPrepare?: () => unknown },
  ): Promise<InProcessAgent> {
    const cfg = loadConfigText(yaml, 'test', { extraPlugins: opts.extraPlugins });
    const fd = fs.openSync(opts.logFile, 'a');
    const log = createLogger(cfg.service.log_level, fd);
    const metrics = createMetrics();
    let prepared: Map<string, unknown> | undefined;
    if (opts.afterPrepare) {
      prepared = await prepareInputs(cfg, log);
      await opts.afterPrepare();
    }
    const agent = new Agent(cfg, { log, metrics, prepared });
    const a = new InProcessAgent(agent, metrics, opts.logFile, fd);
    await agent.start();
    if (opts.serveMetrics) {
      a.#server = new TelemetryServer({ listen: '127.0.0.1:0', registry: metrics.registry, readiness: () => agent.readiness() });
      const addr = await a.#server.listen();
      a.metricsUrl = `http://127.0.0.1:${addr.port}/metrics`;
    }
    return a;
  }

  logText(): string {
    return fs.readFileSync(this.logFile, 'utf8');
  }

  async stop(): Promise<void> {
    await this.agent.stop();
    await this.#server?.close();
    fs.closeSync(this.#logFd);
  }
}

/** The agent as a real process. */
export class ChildAgent {
  readonly child: ChildProcess;
  stderr = '';
  readonly exited: Promise<number | null>;

  constructor(configFile: string) {
    this.child = spawn(process.execPath, [path.join(REPO, 'bin/ktrail.js'), 'run', '-c', configFile], {
      cwd: REPO,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.child.stderr!.setEncoding('utf8');
    this.child.stderr!.on('data', (d: string) => {
      this.stderr += d;
    });
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }

  /** The metrics port, once the agent logged it. */
  async metricsUrl(timeoutMs = 20_000): Promise<string> {
    let url = '';
    await waitFor(() => {
      const m = /"address":"127\.0\.0\.1:(\d+)"/.exec(this.stderr);
      if (m) url = `http://127.0.0.1:${m[1]}/metrics`;
      return url !== '';
    }, timeoutMs, 'agent metrics address');
    return url;
  }

  kill(signal: NodeJS.Signals): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }
}

export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

export interface SinkRecord {
  id: string;
  auditID?: string;
  raw: string;
  doc: Record<string, unknown>;
}

/** Every record in the file sink, in order (rolled files first). */
export function readSink(outFile: string): SinkRecord[] {
  const dir = path.dirname(outFile);
  const { name, ext } = path.parse(outFile);
  if (!fs.existsSync(dir)) return [];
  const rolled = fs
    .readdirSync(dir)
    .filter((f) => f.startsWith(`${name}-`) && f.endsWith(ext))
    .sort()
    .map((f) => path.join(dir, f));
  const files = [...rolled, ...(fs.existsSync(outFile) ? [outFile] : [])];
  const out: SinkRecord[] = [];
  for (const f of files) {
    const text = fs.readFileSync(f, 'utf8');
    // Complete lines only: the agent may be writing the last one right now.
    for (const l of text.slice(0, text.lastIndexOf('\n') + 1).split('\n')) {
      if (l === '') continue;
      const doc = JSON.parse(l) as Record<string, unknown>;
      const auditID = typeof doc.auditID === 'string' ? doc.auditID : undefined;
      out.push({ id: auditID !== undefined ? `${auditID}:${String(doc.stage)}` : '', auditID, raw: l, doc });
    }
  }
  return out;
}

export function sinkCount(outFile: string): number {
  if (!fs.existsSync(outFile)) return 0;
  const buf = fs.readFileSync(outFile);
  let n = 0;
  for (let i = buf.indexOf(0x0a); i !== -1; i = buf.indexOf(0x0a, i + 1)) n++;
  return n;
}

/** Value of one Prometheus series from a /metrics text, summed over matching label sets. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const l of text.split('\n')) {
    if (!l.startsWith(`${name}{`) && !l.startsWith(`${name} `)) continue;
    const ok = Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`));
    if (ok) sum += Number(l.slice(l.lastIndexOf(' ') + 1));
  }
  return sum;
}

export async function fetchMetrics(url: string): Promise<string> {
  const res = await fetch(url);
  return res.text();
}

/**
 * Child agents a test file starts, SIGKILLed after each test (with the temp
 * dirs removed): call once at the top of a test file, push what `start` returns.
 */
export function childAgentsKilledAfterEach(): ChildAgent[] {
  const agents: ChildAgent[] = [];
  afterEach(async () => {
    for (const a of agents.splice(0)) {
      a.kill('SIGKILL');
      await a.exited;
    }
    removeTmpDirs();
  });
  return agents;
}
