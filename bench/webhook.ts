import { spawn } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { auditLines } from '../test/generators/audit-gen.ts';
import { makeCerts } from '../test/helpers/certs.ts';
import { header, MiB, row, scale, tmpFile, type Measurement } from './lib.ts';
import type { WebhookChildResult, WebhookChildSpec } from './webhook-child.ts';

/**
 * audit_webhook: the apiserver's batch backend sends EventList bodies of 400
 * realistic events (mTLS, keep-alive, a few batches in flight as client-go's
 * buffered backend has); the figure is events/s answered 2xx — committed to
 * the spool — and the p50/p99 time from sending a request to its 2xx.
 * Reference, same run, same client and bodies: the fastest plain Node HTTPS
 * server that does what any receiver must — mTLS, read the body, JSON.parse
 * it, check it is an EventList — and answers 200 at once (no spool, no commit).
 *
 * Each server runs in its own process (bench/webhook-child.ts), so CPU ms/MiB
 * and peak RSS are the server's alone; the agent's CPU includes its stop, when
 * the spool drains to an output that acknowledges everything. The load
 * generator runs here.
 */
const BATCH_EVENTS = 400;
const IN_FLIGHT = 4;

function bodies(): { bodies: Buffer[]; events: number; bytes: number } {
  const approxBytes = Math.round(48 * MiB * scale());
  const out: Buffer[] = [];
  let items: string[] = [];
  let events = 0;
  let bytes = 0;
  const flush = () => {
    if (items.length === 0) return;
    const b = Buffer.from(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[${items.join(',')}]}`);
    out.push(b);
    bytes += b.length;
    items = [];
  };
  // The events as the apiserver's encoding/json writes them (the same lines its log backend writes).
  for (const line of auditLines({ seed: 11, approxBytes, maxLineBytes: 256 * 1024 })) {
    items.push(line);
    events++;
    if (items.length === BATCH_EVENTS) flush();
  }
  flush();
  return { bodies: out, events, bytes };
}

interface ClientRun {
  wallMs: number;
  latenciesMs: number[];
}

/** Sends every body once, IN_FLIGHT at a time on keep-alive mTLS connections; every answer must be 2xx. */
async function send(port: number, certDir: string, list: readonly Buffer[]): Promise<ClientRun> {
  const agent = new https.Agent({
    keepAlive: true,
    maxSockets: IN_FLIGHT,
    ca: fs.readFileSync(path.join(certDir, 'ca.pem')),
    cert: fs.readFileSync(path.join(certDir, 'apiserver.pem')),
    key: fs.readFileSync(path.join(certDir, 'apiserver.key')),
  });
  const latenciesMs: number[] = [];
  const post = (body: Buffer) =>
    new Promise<void>((resolve, reject) => {
      const t0 = performance.now();
      const req = https.request(
        { host: '127.0.0.1', port, method: 'POST', path: '/audit?timeout=30s', agent, headers: { 'content-type': 'application/json', 'content-length': body.length } },
        (res) => {
          res.resume();
          res.on('end', () => {
            if ((res.statusCode ?? 0) < 200 || (res.statusCode ?? 0) > 206) reject(new Error(`bench: HTTP ${res.statusCode}`));
            latenciesMs.push(performance.now() - t0);
            resolve();
          });
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < list.length) await post(list[next++]!);
    }),
  );
  const wallMs = performance.now() - t0;
  agent.destroy();
  return { wallMs, latenciesMs };
}

async function run(mode: 'agent' | 'reference', certDir: string, list: readonly Buffer[], events: number, bytes: number): Promise<{ m: Measurement; p50: number; p99: number }> {
  const stateDir = tmpFile('webhook');
  const spec: WebhookChildSpec = { certDir, stateDir };
  const child = spawn(process.execPath, [path.join(import.meta.dirname, 'webhook-child.ts'), mode, JSON.stringify(spec)], { stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    let out = '';
    const lines: string[] = [];
    let wake: (() => void) | undefined;
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const parts = out.split('\n');
      out = parts.pop()!;
      lines.push(...parts.filter((l) => l.startsWith('{')));
      wake?.();
    });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const nextLine = async (): Promise<string> => {
      while (lines.length === 0) {
        const more = new Promise<void>((r) => (wake = r));
        if ((await Promise.race([more.then(() => 'more'), exited.then(() => 'exit')])) === 'exit' && lines.length === 0) throw new Error(`bench: webhook ${mode} exited`);
      }
      return lines.shift()!;
    };
    const { port } = JSON.parse(await nextLine()) as { port: number };
    const client = await send(port, certDir, list);
    child.stdin!.end();
    const result = JSON.parse(await nextLine()) as WebhookChildResult;
    if (result.events !== events) throw new Error(`bench: the ${mode} took ${result.events} of ${events} events`);
    const sorted = [...client.latenciesMs].sort((a, b) => a - b);
    const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
    const name = mode === 'agent' ? 'audit_webhook → spool (2xx after commit)' : 'reference: HTTPS + JSON.parse, 200 at once';
    return { m: { name, bytes, events, wallMs: client.wallMs, cpuMs: result.cpuMs, peakRssMiB: result.maxRssKiB / 1024 }, p50: pct(50), p99: pct(99) };
  } finally {
    child.kill();
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
}

export async function benchWebhook(): Promise<void> {
  header(`audit_webhook: EventList bodies of ${BATCH_EVENTS} events, ${IN_FLIGHT} in flight, mTLS keep-alive`);
  const certDir = tmpFile('webhook-certs');
  try {
    makeCerts(certDir);
    const { bodies: list, events, bytes } = bodies();
    process.stdout.write(`${list.length} requests, ${events} events, ${(bytes / MiB).toFixed(1)} MiB of bodies\n`);
    const ref = await run('reference', certDir, list, events, bytes);
    const agent = await run('agent', certDir, list, events, bytes);
    const latency = (r: { p50: number; p99: number }) => `  request→2xx p50 ${r.p50.toFixed(1)} ms p99 ${r.p99.toFixed(1)} ms`;
    process.stdout.write(`${row(ref.m)}${latency(ref)}\n`);
    process.stdout.write(`${row(agent.m, ref.m)}${latency(agent)}\n`);
  } finally {
    fs.rmSync(certDir, { recursive: true, force: true });
  }
}
