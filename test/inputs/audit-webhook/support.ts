import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import Database from 'better-sqlite3';
import { auditLine } from '../../helpers/audit-events.ts';
import { makeCerts } from '../../helpers/certs.ts';
import { ChildAgent, auditId, tmpDir, waitFor } from '../audit-file/harness.ts';

export { makeCerts };

/** One Go-shaped audit event for sequence number `seq`. */
export function event(seq: number, padBytes = 0): Record<string, unknown> {
  return JSON.parse(
    auditLine({
      auditID: auditId(seq),
      stage: 'ResponseComplete',
      level: padBytes ? 'RequestResponse' : 'Metadata',
      verb: padBytes ? 'create' : 'get',
      objectRef: { resource: 'configmaps', namespace: 'default', name: `cm-${seq}`, apiVersion: 'v1' },
      ...(padBytes ? { requestObject: { kind: 'ConfigMap', apiVersion: 'v1', data: { blob: 'x'.repeat(padBytes) } } } : {}),
      requestReceivedTimestamp: new Date(1_714_557_600_000 + seq),
    }),
  ) as Record<string, unknown>;
}

export function eventList(items: unknown[]): string {
  return JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', metadata: {}, items });
}

export interface Env {
  dir: string;
  stateDir: string;
  outFile: string;
  cfgFile: string;
  /** The port the last agent started by `startAgent` listens on (each start binds port 0 anew). */
  port: number;
}

export function setup(input: Record<string, unknown> = {}, opts: { certs?: boolean } = {}): Env {
  const dir = tmpDir();
  if (opts.certs !== false) makeCerts(dir);
  // Port 0: the agent binds a free port itself and logs it (`audit webhook listening`), so no
  // other process can take the port between choosing it and listening on it.
  const port = 0;
  const stateDir = path.join(dir, 'state');
  const outFile = path.join(dir, 'out', 'sink.ndjson');
  const cfg = {
    type: 'audit_webhook',
    address: '127.0.0.1',
    port,
    tls: { cert_file: path.join(dir, 'server.pem'), key_file: path.join(dir, 'server.key'), client_ca_file: path.join(dir, 'ca.pem'), reload_interval: '100ms' },
    ...input,
  };
  const yaml = [
    'service:',
    `  state_dir: ${JSON.stringify(stateDir)}`,
    '  log_level: info',
    '  shutdown_timeout: 5s',
    '  metrics: { listen: "127.0.0.1:0" }',
    'inputs:',
    `  hook: ${JSON.stringify(cfg)}`,
    'outputs:',
    `  sink: { type: file, path: ${JSON.stringify(outFile)}, max_file_bytes: 10GiB, batch: { max_records: 2000, flush_interval: 50ms } }`,
  ].join('\n');
  const cfgFile = path.join(dir, 'ktrail.yaml');
  fs.writeFileSync(cfgFile, yaml);
  return { dir, stateDir, outFile, cfgFile, port };
}

/** Starts an agent on `env`'s config and sets `env.port` to the port its webhook bound. */
export async function startAgent(env: Env): Promise<ChildAgent> {
  const a = new ChildAgent(env.cfgFile);
  await waitFor(() => listeningPort(a.stderr) !== undefined || a.child.exitCode !== null, 20_000, 'webhook listening');
  const port = listeningPort(a.stderr);
  if (port === undefined) throw new Error(`agent did not start: ${a.stderr}`);
  env.port = port;
  return a;
}

/** The port of the `audit webhook listening` log line (a JSON line), once the whole line is there. */
export function listeningPort(stderr: string): number | undefined {
  // The last piece may be a line still being written: only complete lines count.
  for (const line of stderr.split('\n').slice(0, -1)) {
    if (!line.includes('audit webhook listening')) continue;
    const port = (JSON.parse(line) as { port?: unknown }).port;
    if (typeof port === 'number' && port > 0) return port;
  }
  return undefined;
}

export interface ClientOpts {
  port: number;
  dir: string;
  cert?: string | null;
  token?: string;
  path?: string;
}

export function post(o: ClientOpts, body: string | Buffer): Promise<{ status: number; headers: Record<string, unknown>; text: string }> {
  const certName = o.cert === undefined ? 'apiserver' : o.cert;
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: o.port,
        method: 'POST',
        path: o.path ?? '/audit?timeout=30s',
        ca: fs.readFileSync(path.join(o.dir, 'ca.pem')),
        ...(certName ? { cert: fs.readFileSync(path.join(o.dir, `${certName}.pem`)), key: fs.readFileSync(path.join(o.dir, `${certName}.key`)) } : {}),
        headers: { 'content-type': 'application/json', ...(o.token ? { authorization: `Bearer ${o.token}` } : {}) },
        agent: false,
        timeout: 30_000,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
      },
    );
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end(body);
  });
}

/**
 * A POST whose headers and first half of the body are sent now, and the rest
 * when `finish` is called: a request held in flight (concurrency, drain).
 */
export function postHalf(o: ClientOpts, body: string): { answer: Promise<number>; finish: () => void } {
  const half = Math.floor(body.length / 2);
  const req = https.request({
    host: '127.0.0.1',
    port: o.port,
    method: 'POST',
    path: o.path ?? '/audit?timeout=30s',
    ca: fs.readFileSync(path.join(o.dir, 'ca.pem')),
    cert: fs.readFileSync(path.join(o.dir, 'apiserver.pem')),
    key: fs.readFileSync(path.join(o.dir, 'apiserver.key')),
    headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    agent: false,
  });
  const answer = new Promise<number>((resolve, reject) => {
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
  });
  req.write(body.slice(0, half));
  return { answer, finish: () => req.end(body.slice(half)) };
}

/**
 * The apiserver's batch backend's rules: only 200–206 is success; ANY error
 * (status, refused connection, TLS, timeout) is retried, up to 5 attempts with
 * backoff ×1.5, then the batch is dropped (and reported as such).
 */
export async function sendLikeApiserver(o: ClientOpts, body: string, initialBackoffMs: number): Promise<'sent' | 'dropped'> {
  let backoff = initialBackoffMs;
  for (let attempt = 1; attempt <= 5; attempt++) {
    try {
      const r = await post(o, body);
      if (r.status >= 200 && r.status <= 206) return 'sent';
    } catch {
      // retried like any other error
    }
    if (attempt < 5) {
      await new Promise((r) => setTimeout(r, backoff * (1 + Math.random() * 0.2)));
      backoff *= 1.5;
    }
  }
  return 'dropped';
}

export interface DeadLetterRow {
  code: string;
  reason: string;
  data: Buffer | null;
  record_id: string | null;
}

export function deadLetters(stateDir: string): DeadLetterRow[] {
  const db = new Database(path.join(stateDir, 'ktrail.db'), { readonly: true, fileMustExist: true });
  try {
    const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'dead_letters%' ORDER BY name").all() as Array<{ name: string }>).map((t) => t.name);
    const t = tables.at(-1)!;
    return db.prepare(`SELECT code, reason, CAST(data AS BLOB) AS data, record_id FROM ${t} ORDER BY id`).all() as DeadLetterRow[];
  } finally {
    db.close();
  }
}
