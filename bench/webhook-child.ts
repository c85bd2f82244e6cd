/**
 * The server side of bench/webhook.ts, in its own process so that CPU time
 * and peak RSS are the server's alone (the load generator runs in the parent).
 *
 *   node bench/webhook-child.ts agent|reference '<spec json>'
 *
 * Prints `{"port":N}` once listening; when stdin ends, prints
 * `{"cpuMs":..,"maxRssKiB":..,"events":..}` and exits.
 */
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { pino } from 'pino';
import { z } from 'zod';
import { loadConfigText } from '../src/config/load.ts';
import { Agent } from '../src/pipeline/agent.ts';
import type { OutputPlugin } from '../src/plugin.ts';
import { createMetrics } from '../src/telemetry/metrics.ts';

export interface WebhookChildSpec {
  certDir: string;
  stateDir: string;
}

export interface WebhookChildResult {
  cpuMs: number;
  maxRssKiB: number;
  /** Events the server took (committed, for the agent). */
  events: number;
}

/** Acknowledges every request at once: the figure is the webhook input and the spool, not a sink. */
const nullOutput: OutputPlugin = {
  kind: 'output',
  type: 'bench_null',
  description: 'benchmark output that acknowledges everything',
  schema: z.strictObject({}),
  create: () => ({ send: async () => ({ kind: 'ok' as const }) }),
};

function tlsFiles(dir: string) {
  return { cert: path.join(dir, 'server.pem'), key: path.join(dir, 'server.key'), ca: path.join(dir, 'ca.pem') };
}

/** audit_webhook in a full agent (spool, runner, a null output), mTLS as the apiserver uses it. */
async function startAgent(spec: WebhookChildSpec): Promise<{ port: number; events: () => number; stop: () => Promise<void> }> {
  const t = tlsFiles(spec.certDir);
  const text = [
    `service: { state_dir: ${JSON.stringify(spec.stateDir)}, shutdown_timeout: 30s, metrics: { enabled: false } }`,
    'inputs:',
    `  hook: ${JSON.stringify({ type: 'audit_webhook', address: '127.0.0.1', port: 0, tls: { cert_file: t.cert, key_file: t.key, client_ca_file: t.ca } })}`,
    'outputs:',
    '  out: { type: bench_null }',
  ].join('\n');
  const cfg = loadConfigText(text, 'bench.yaml', { extraPlugins: [nullOutput] });
  let port = 0;
  const log = pino({ level: 'info' }, {
    write: (line: string) => {
      if (line.includes('audit webhook listening')) port = (JSON.parse(line) as { port: number }).port;
      else if (/"level":"(warn|error|fatal)"/.test(line)) process.stderr.write(line);
    },
  });
  const metrics = createMetrics();
  const agent = new Agent(cfg, { log, metrics });
  await agent.start();
  const committed = async () => {
    const m = await metrics.registry.getSingleMetric('ktrail_component_sent_events_total')!.get();
    return m.values.filter((v) => v.labels.component_kind === 'input').reduce((n, v) => n + v.value, 0);
  };
  let events = 0;
  return {
    port,
    events: () => events,
    stop: async () => {
      events = await committed();
      await agent.stop();
    },
  };
}

/**
 * The reference: the fastest plain Node HTTPS server that does what any receiver must — mTLS,
 * read the body, JSON.parse it, check it is an EventList — and answers 200. No spool, no commit.
 */
async function startReference(spec: WebhookChildSpec): Promise<{ port: number; events: () => number; stop: () => Promise<void> }> {
  const t = tlsFiles(spec.certDir);
  let events = 0;
  const server = https.createServer({ cert: fs.readFileSync(t.cert), key: fs.readFileSync(t.key), ca: fs.readFileSync(t.ca), requestCert: true, rejectUnauthorized: true }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const doc = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { kind?: unknown; items?: unknown };
      if (doc.kind !== 'EventList' || !Array.isArray(doc.items)) {
        res.writeHead(400).end();
        return;
      }
      events += doc.items.length;
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}\n');
    });
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    events: () => events,
    stop: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

const [mode, specJson] = process.argv.slice(2);
const spec = JSON.parse(specJson!) as WebhookChildSpec;
const cpu0 = process.cpuUsage();
const server = mode === 'agent' ? await startAgent(spec) : await startReference(spec);
process.stdout.write(`${JSON.stringify({ port: server.port })}\n`);
process.stdin.resume();
process.stdin.on('end', () => {
  void (async () => {
    await server.stop();
    const cpu = process.cpuUsage(cpu0);
    const result: WebhookChildResult = { cpuMs: (cpu.user + cpu.system) / 1000, maxRssKiB: process.resourceUsage().maxRSS, events: server.events() };
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exit(0);
  })();
});
