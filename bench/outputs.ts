import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { z } from 'zod';
import { loadConfigText } from '../src/config/load.ts';
import { Agent } from '../src/pipeline/agent.ts';
import { Spool } from '../src/spool/spool.ts';
import { LogRecord } from '../src/pipeline/record.ts';
import type { InputPlugin } from '../src/plugin.ts';
import { createLogger } from '../src/telemetry/logger.ts';
import { createMetrics } from '../src/telemetry/metrics.ts';
import { auditLines } from '../test/generators/audit-gen.ts';
import { FakeHec } from '../test/helpers/splunk-hec-server.ts';
import { startS3Server } from '../test/helpers/s3-server.ts';
import { childUrl, header, measure, MiB, row, scale, tmpFile, type Measurement } from './lib.ts';

/**
 * Outputs end to end: realistic audit lines go input → spool → shared sender
 * → output → a local sink, and the clock stops when the spool is empty (every
 * record acknowledged). Reference, same run: encoding the same records to
 * NDJSON and gzip level 1 with no network, no spool — the floor of what any
 * output must spend on them.
 *
 * The sinks run in other processes (the _bulk harness and the OTLP receiver in
 * child Nodes, s3rver in its own), so CPU ms/MiB is the agent's alone (except
 * splunk_hec, whose fake runs in this process). Peak RSS is the process's
 * high-water mark so far (it only grows across cases).
 *
 * The input is a bench input emitting pre-generated lines in batches of 500,
 * standing in for audit_file until that input is registered.
 */
const gzip = promisify(zlib.gzip);

function generate(): { lines: string[]; bytes: number } {
  const approxBytes = Math.round(64 * MiB * scale());
  const lines: string[] = [];
  let bytes = 0;
  for (const line of auditLines({ seed: 7, approxBytes, maxLineBytes: 256 * 1024 })) {
    lines.push(line);
    bytes += Buffer.byteLength(line) + 1;
  }
  return { lines, bytes };
}

function benchInput(lines: readonly string[], done: { resolve: () => void }): InputPlugin {
  return {
    kind: 'input',
    type: 'bench_lines',
    description: 'benchmark input',
    schema: z.strictObject({}),
    create: (_cfg, ctx) => ({
      async start() {
        void (async () => {
          const base = Date.UTC(2025, 0, 1);
          for (let i = 0; i < lines.length && !ctx.signal.aborted; i += 500) {
            const records = lines.slice(i, i + 500).map((raw, k) => new LogRecord({ id: `bench-${i + k}`, timeMs: base + i + k, input: ctx.name, raw }));
            await ctx.emit({ records });
          }
          done.resolve();
        })();
      },
      async stop() {},
    }),
  };
}

async function runAgent(lines: readonly string[], outputYaml: string): Promise<void> {
  const dir = tmpFile('outputs');
  let resolveDone!: () => void;
  const inputDone = new Promise<void>((r) => (resolveDone = r));
  try {
    const cfg = loadConfigText(
      `service: { state_dir: ${dir}, shutdown_timeout: 60s, metrics: { enabled: false } }\ninputs: { lines: { type: bench_lines } }\noutputs:\n  out:\n${outputYaml.replace(/^/gm, '    ')}`,
      'bench.yaml',
      { extraPlugins: [benchInput(lines, { resolve: resolveDone })] },
    );
    const agent = new Agent(cfg, { log: createLogger('warn'), metrics: createMetrics() });
    await agent.start();
    await inputDone;
    // End of stream: stop() drains, flushing partial requests at once instead
    // of waiting out flush_interval (which would measure the timer, not the agent).
    await agent.stop();
    const left = new Spool({ stateDir: dir, maxBytes: 1, lockTimeoutMs: 5000 });
    const undelivered = left.records;
    left.close();
    if (undelivered > 0) throw new Error(`bench: ${undelivered} records were not delivered`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A minimal `_bulk` endpoint in a child process: it counts the action lines and
 * answers every item `201 created` in Elasticsearch's response shape (honouring
 * `filter_path` the way the output asks for it). The test harness indexes every
 * document in memory, which would make the figure measure the mock, not the agent.
 */
async function startEsChild(): Promise<{ url: string; proc: ChildProcess }> {
  const script = gunzippingServer(`
    let lines = 0;
    for (let i = body.indexOf(10); i !== -1; i = body.indexOf(10, i + 1)) lines++;
    const items = Math.floor(lines / 2);
    const item = '{"create":{"status":201}}';
    const out = '{"took":1,"errors":false,"items":[' + Array(items).fill(item).join(',') + ']}';
    res.writeHead(200, { 'content-type': 'application/json' }).end(out);
`);
  return childServer(script, 'bulk endpoint');
}

/**
 * An OTLP/HTTP receiver in a child process: it gunzips each request and
 * answers 200 with an empty ExportLogsServiceResponse (zero bytes: full
 * success). Decoding is tested against the official definitions in
 * test/outputs/otlp-http.test.ts; here it would only measure the receiver.
 */
async function startOtlpChild(): Promise<{ url: string; proc: ChildProcess }> {
  const script = gunzippingServer(`
    res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': '0' }).end();
`);
  return childServer(script, 'OTLP receiver');
}

/**
 * An ES module for childServer: an HTTP server on 127.0.0.1 port 0 that
 * gathers each request's body into `body` (gunzipped if sent gzip) and runs
 * `onBody` (script text using `req`, `res`, `body`) to answer it; it
 * prints its URL and exits when stdin closes.
 */
function gunzippingServer(onBody: string): string {
  return `
import http from 'node:http';
import zlib from 'node:zlib';
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let body = Buffer.concat(chunks);
    if (req.headers['content-encoding'] === 'gzip') body = zlib.gunzipSync(body);
${onBody}
  });
});
server.listen(0, '127.0.0.1', () => process.stdout.write(JSON.stringify({ url: 'http://127.0.0.1:' + server.address().port }) + '\\n'));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();`;
}

/** Run `script` (an ES module printing `{"url": ...}` once it listens) in a child Node. */
async function childServer(script: string, what: string): Promise<{ url: string; proc: ChildProcess }> {
  const proc = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const url = await childUrl(proc, what);
  return { url, proc };
}

async function reference(lines: readonly string[], bytes: number): Promise<Measurement> {
  return measure('reference: NDJSON + gzip level 1, no network', async () => {
    // Same request size as the elasticsearch output (5 MiB of NDJSON per gzip call).
    let chunk: string[] = [];
    let chunkBytes = 0;
    for (const l of lines) {
      chunk.push(l);
      chunkBytes += l.length + 1;
      if (chunkBytes >= 5 * MiB) {
        await gzip(Buffer.from(`${chunk.join('\n')}\n`), { level: 1 });
        chunk = [];
        chunkBytes = 0;
      }
    }
    if (chunk.length > 0) await gzip(Buffer.from(`${chunk.join('\n')}\n`), { level: 1 });
    return { bytes, events: lines.length };
  });
}

export async function benchElasticsearchOutput(data = generate(), ref?: Measurement): Promise<Measurement> {
  const es = await startEsChild();
  try {
    const m = await measure('agent → elasticsearch _bulk (gzip 1)', async () => {
      await runAgent(data.lines, `type: elasticsearch\nurl: ${es.url}\nindex: bench-%Y.%m.%d`);
      return { bytes: data.bytes, events: data.lines.length };
    });
    process.stdout.write(`${row(m, ref)}\n`);
    return m;
  } finally {
    es.proc.stdin!.end();
    es.proc.kill();
  }
}

export async function benchS3Output(data = generate(), ref?: Measurement): Promise<Measurement> {
  const s3 = await startS3Server({ buckets: ['bench'] });
  try {
    const m = await measure('agent → s3 PutObject (gzip 1, s3rver)', async () => {
      // Straight to s3rver (not the verifying proxy, which would run in this process).
      await runAgent(
        data.lines,
        `type: s3\nbucket: bench\nendpoint: ${s3.endpoint}\nforce_path_style: true\naccess_key_id: ${s3.accessKeyId}\nsecret_access_key: ${s3.secretAccessKey}\nmax_object_age: 1s\nmax_object_bytes: 8MiB`,
      );
      return { bytes: data.bytes, events: data.lines.length };
    });
    process.stdout.write(`${row(m, ref)}\n`);
    return m;
  } finally {
    await s3.stop();
  }
}

export async function benchSplunkHecOutput(data = generate(), ref?: Measurement): Promise<Measurement> {
  const hec = await new FakeHec().start();
  try {
    // The fake HEC decodes and acks in this process, so its CPU is in the figure too.
    const m = await measure('agent → splunk_hec (acks; HEC in-process)', async () => {
      await runAgent(data.lines, `type: splunk_hec\nurl: ${hec.url}\ntoken: ${hec.token}\nack: { poll_interval: 20ms }`);
      return { bytes: data.bytes, events: data.lines.length };
    });
    process.stdout.write(`${row(m, ref)}\n`);
    return m;
  } finally {
    await hec.close();
  }
}

export async function benchOtlpHttpOutput(data = generate(), ref?: Measurement): Promise<Measurement[]> {
  const otlp = await startOtlpChild();
  try {
    const out: Measurement[] = [];
    // map: every record parsed and turned into an AnyValue tree (the default); string: the JSON text as the body.
    for (const body of ['map', 'string'] as const) {
      const m = await measure(`agent → otlp_http (protobuf, ${body} body, gzip 1)`, async () => {
        await runAgent(data.lines, `type: otlp_http\nendpoint: ${otlp.url}\nbody: ${body}`);
        return { bytes: data.bytes, events: data.lines.length };
      });
      process.stdout.write(`${row(m, ref)}\n`);
      out.push(m);
    }
    return out;
  } finally {
    otlp.proc.stdin!.end();
    otlp.proc.kill();
  }
}

/** Every output case beside the in-process reference. */
export async function benchOutputs(): Promise<void> {
  const data = generate();
  header(`outputs end to end (${(data.bytes / MiB).toFixed(0)} MiB of audit events, ${data.lines.length} records; the clock stops when all are acked)`);
  const ref = await reference(data.lines, data.bytes);
  process.stdout.write(`${row(ref)}\n`);
  await benchElasticsearchOutput(data, ref);
  await benchS3Output(data, ref);
  await benchSplunkHecOutput(data, ref);
  await benchOtlpHttpOutput(data, ref);
}
