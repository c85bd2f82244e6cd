import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import BetterSqlite3 from 'better-sqlite3';
import { loadConfigText } from '../../../src/config/load.ts';
import { Agent } from '../../../src/pipeline/agent.ts';
import type { SpooledRecord } from '../../../src/pipeline/record.ts';
import type { OutboundRequest, Output, OutputContext, Plugin } from '../../../src/plugin.ts';
import { Spool } from '../../../src/spool/spool.ts';
import { createLogger } from '../../../src/telemetry/logger.ts';
import { ComponentTelemetry, createMetrics, type Metrics } from '../../../src/telemetry/metrics.ts';
import { fakeInputPlugin } from '../../support/fake-input.ts';
import { ChildAgent, line } from '../../inputs/audit-file/harness.ts';

/** Shared pieces of the output tests: temp dirs, a context for calling send() directly, agents, an HTTP sink. */

export function tempDir(cleanups: Array<() => unknown>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-out-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface TestContext {
  ctx: OutputContext;
  metrics: Metrics;
  spool: Spool;
}

/** An OutputContext backed by a real state database, for calling a plugin's send() directly. */
export function outputContext(stateDir: string, name = 'out', type = 'test', nodeName = 'node-a'): TestContext {
  const spool = new Spool({ stateDir, maxBytes: 64 * 1024 * 1024 });
  const metrics = createMetrics();
  const ctx: OutputContext = {
    name,
    log: createLogger('silent'),
    telemetry: new ComponentTelemetry(metrics, 'output', name, type),
    metrics,
    nodeName,
    stateDir,
    state: { db: spool.db, migrate: (owner, steps) => spool.migrate(owner, steps) },
  };
  return { ctx, metrics, spool };
}

/**
 * An output built from YAML exactly as the agent builds it (validation included), started, and
 * closed with the spool at cleanup. `yamlOutput` is the output's mapping, `type:` included.
 */
export async function startOutput(cleanups: Array<() => unknown>, yamlOutput: string, opts: { dir?: string; type?: string } = {}): Promise<{ output: Output; dir: string; metrics: Metrics }> {
  const dir = opts.dir ?? tempDir(cleanups);
  const cfg = loadConfigText(`service: { state_dir: ${dir} }\ninputs: { gen: { type: fake } }\noutputs:\n  out:\n${yamlOutput.replace(/^/gm, '    ')}`, 'test.yaml', {
    extraPlugins: [fakeInputPlugin()],
  });
  const oc = cfg.outputs[0]!;
  const { ctx, spool, metrics } = outputContext(dir, 'out', opts.type ?? oc.plugin.type);
  cleanups.push(() => spool.close());
  const output = oc.plugin.create(oc.config, ctx);
  await output.start?.();
  cleanups.push(() => output.close?.());
  return { output, dir, metrics };
}

export const BASE_TIME_MS = Date.UTC(2025, 0, 2, 3, 4, 5, 678);

export function makeRecords(n: number, opts: { from?: number; input?: string; timeMs?: (i: number) => number; pad?: string } = {}): SpooledRecord[] {
  const from = opts.from ?? 0;
  return Array.from({ length: n }, (_, k) => {
    const i = from + k;
    return {
      id: `rec-${i}`,
      timeMs: opts.timeMs ? opts.timeMs(i) : BASE_TIME_MS + i,
      input: opts.input ?? 'audit',
      json: JSON.stringify({ seq: i, verb: 'get', pad: opts.pad ?? '' }),
    };
  });
}

export function outbound(records: readonly SpooledRecord[], key = 'out-1-1', attempt = 1): OutboundRequest {
  return { key, firstBatchId: 1, lastBatchId: 1, records, attempt };
}

export async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 20_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export function makeAgent(yaml: string, extraPlugins: readonly Plugin[] = [fakeInputPlugin()]): { agent: Agent; metrics: Metrics } {
  const cfg = loadConfigText(yaml, 'test.yaml', { extraPlugins });
  const metrics = createMetrics();
  const agent = new Agent(cfg, { log: createLogger('silent'), metrics });
  return { agent, metrics };
}

export interface DeadLetterRow {
  component: string;
  output: string | null;
  record_id: string | null;
  reason: string;
  data: string;
}

/** Read the dead-letter table the way an operator would: straight from the state DB. */
export function deadLetters(stateDir: string): DeadLetterRow[] {
  const db = new BetterSqlite3(path.join(stateDir, 'ktrail.db'), { readonly: true });
  try {
    return db.prepare('SELECT component, output, record_id, reason, data FROM dead_letters ORDER BY id').all() as DeadLetterRow[];
  } finally {
    db.close();
  }
}

/** Record ids still spooled for `output` (not acked). */
export function pendingIds(stateDir: string, output: string): string[] {
  const db = new BetterSqlite3(path.join(stateDir, 'ktrail.db'), { readonly: true });
  try {
    const rows = db
      .prepare('SELECT b.data FROM spool_deliveries d JOIN spool_batches b ON b.id = d.batch_id WHERE d.output = ? ORDER BY b.id')
      .all(output) as Array<{ data: string }>;
    return rows.flatMap((r) => r.data.split('\n').filter((l) => l !== '').map((l) => l.slice(0, l.indexOf('\t'))));
  } finally {
    db.close();
  }
}

export async function counterValue(metrics: Metrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = await metrics.registry.getSingleMetric(name)!.get();
  return m.values.filter((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val)).reduce((n, v) => n + v.value, 0);
}

export interface SinkRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  /** Decompressed body. */
  body: string;
  rawBytes: number;
  status: number;
}

export interface SinkReply {
  status: number;
  headers?: Record<string, string>;
  body?: string;
  /** Wait before answering. */
  delayMs?: number;
  /** Destroy the connection instead of answering. */
  reset?: boolean;
}

/**
 * A generic HTTP receiver: answers what `reply` returns (default 200), records
 * every request, and keeps the records of 2xx-answered requests deduplicated by
 * Idempotency-Key — the way a receiver that honours the header would.
 */
export class HttpSink {
  reply: (req: SinkRequest, n: number) => SinkReply = () => ({ status: 200 });
  readonly requests: SinkRequest[] = [];
  /** Idempotency-Key → NDJSON lines of the first accepted request with that key. */
  readonly accepted = new Map<string, string[]>();
  #server: http.Server;
  #sockets = new Set<Socket>();

  constructor() {
    this.#server = http.createServer((req, res) => void this.#handle(req, res));
    this.#server.on('connection', (s: Socket) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
    });
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    return this;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  /** Record ids (the `seq`-bearing docs' ids are not in the body; callers parse lines). */
  acceptedLines(): string[] {
    return [...this.accepted.values()].flat();
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const s of this.#sockets) s.destroy();
    await closed;
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks);
    let body = raw;
    if (req.headers['content-encoding'] === 'gzip') body = zlib.gunzipSync(raw);
    const rec: SinkRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: body.toString('utf8'), rawBytes: raw.length, status: 0 };
    this.requests.push(rec);
    const r = this.reply(rec, this.requests.length);
    // A 2xx is committed on arrival, before any delay: "stored, answer lost" is then a real case.
    if (!r.reset && r.status >= 200 && r.status < 300) {
      rec.status = r.status;
      const key = String(req.headers['idempotency-key'] ?? `no-key-${this.requests.length}`);
      if (!this.accepted.has(key)) {
        const text = rec.body.trim();
        const lines = text.startsWith('[') ? (JSON.parse(text) as unknown[]).map((d) => JSON.stringify(d)) : text.split('\n');
        this.accepted.set(key, lines);
      }
    }
    if (r.delayMs) await new Promise((resolve) => setTimeout(resolve, r.delayMs));
    if (r.reset) {
      req.socket.destroy();
      return;
    }
    rec.status = r.status;
    res.writeHead(r.status, r.headers ?? {});
    res.end(r.body ?? '');
  }
}

/**
 * A config for the agent as a child process in `dir`: an audit_file input over
 * `lines` audit lines (written to dir/audit/audit.log, ids `auditId(i)`) and
 * the one output given by its YAML (`name: { type: … }`). Returns its path.
 */
export function auditFileConfig(dir: string, lines: number, outputYaml: string): string {
  fs.mkdirSync(path.join(dir, 'audit'));
  fs.writeFileSync(path.join(dir, 'audit', 'audit.log'), Array.from({ length: lines }, (_, i) => `${line(i)}\n`).join(''));
  const cfg = path.join(dir, 'ktrail.yaml');
  fs.writeFileSync(
    cfg,
    [
      'service:',
      `  state_dir: ${path.join(dir, 'state')}`,
      '  metrics: { enabled: false }',
      'inputs:',
      `  audit: { type: audit_file, paths: [${JSON.stringify(path.join(dir, 'audit', 'audit*.log*'))}] }`,
      'outputs:',
      `  ${outputYaml}`,
    ].join('\n'),
  );
  return cfg;
}

/** The agent started as a child process on `cfg`; SIGKILLed at cleanup if still running. */
export function startChild(cleanups: Array<() => unknown>, cfg: string): ChildAgent {
  const a = new ChildAgent(cfg);
  cleanups.push(() => a.kill('SIGKILL'));
  return a;
}

/**
 * Crash loop: `kills` times, start the agent on `cfg`, wait until
 * `inFlight(k)` says the k-th run has requests outstanding, SIGKILL it and
 * wait for it to die. The next run resumes from the same state directory.
 */
export async function sigkillRestarts(cleanups: Array<() => unknown>, cfg: string, kills: number, inFlight: (k: number) => boolean): Promise<void> {
  for (let k = 0; k < kills; k++) {
    const a = startChild(cleanups, cfg);
    await until(() => inFlight(k), 15_000, 'requests in flight');
    a.kill('SIGKILL');
    await a.exited;
  }
}
