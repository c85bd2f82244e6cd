/**
 * One measured process of bench/pipeline.ts: the agent (audit_file → spool →
 * http or elasticsearch output) or the reference pipeline, each in its own
 * process so CPU time and peak RSS are its own.
 *
 *   node <shipped V8 flags> bench/pipeline-child.ts agent|reference '<spec json>'
 *
 * Prints one JSON line (PipelineResult). `samples` are taken every
 * `sampleMs`: wall clock (Date.now, so the parent can line them up with what
 * it did meanwhile), RSS, CPU time so far and records delivered so far.
 */
import fs from 'node:fs';
import http from 'node:http';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { loadConfigText } from '../src/config/load.ts';
import { Agent } from '../src/pipeline/agent.ts';
import { createLogger } from '../src/telemetry/logger.ts';
import { createMetrics } from '../src/telemetry/metrics.ts';

export type SinkKind = 'http' | 'elasticsearch';

export interface PipelineSpec {
  /** Glob of the audit files (agent). */
  glob: string;
  /** The stream's files, oldest first (reference). */
  files: string[];
  stateDir: string;
  sinkUrl: string;
  sink: SinkKind;
  /** Records to wait for. */
  events: number;
  bytes: number;
  sampleMs: number;
  /** After everything is delivered, stay idle this long and report the RSS then (agent). */
  idleMs?: number;
}

export interface Sample {
  at: number;
  rssKiB: number;
  cpuMs: number;
  delivered: number;
}

export interface PipelineResult {
  wallMs: number;
  cpuMs: number;
  maxRssKiB: number;
  events: number;
  bytes: number;
  samples: Sample[];
  idleRssKiB?: number;
}

const gzip = promisify(zlib.gzip);

function cpuMs(): number {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
}

/** VmRSS now (process.memoryUsage().rss walks the same counter). */
function rssKiB(): number {
  return Math.round(process.memoryUsage.rss() / 1024);
}

/**
 * The reference: read → split on \n → id (auditID:stage, found by byte
 * search, no JSON.parse) → request body → POST to the same sink, with the
 * same request sizes and concurrency as the output it stands beside (http:
 * 1 MiB NDJSON, one request in flight; elasticsearch: 5 MiB `_bulk` with
 * action lines, gzip level 1 on libuv's pool, two in flight). Reading goes on
 * while requests are in flight, which is what a plain Node program gets for
 * free, and what the agent has to match.
 */
async function reference(spec: PipelineSpec, sample: () => void): Promise<number> {
  const bulk = spec.sink === 'elasticsearch';
  const bodyBytes = bulk ? 5 * 1024 * 1024 : 1024 * 1024;
  const maxInFlight = bulk ? 2 : 1;
  const agent = new http.Agent({ keepAlive: true, maxSockets: maxInFlight });
  const url = new URL(bulk ? `${spec.sinkUrl}/_bulk` : spec.sinkUrl);
  const inFlight = new Set<Promise<void>>();
  const post = (body: Buffer, headers: Record<string, string>) =>
    new Promise<void>((resolve, reject) => {
      const req = http.request(url, { method: 'POST', agent, headers: { ...headers, 'content-length': String(body.length) } }, (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`sink answered ${res.statusCode}`))));
      });
      req.on('error', reject);
      req.end(body);
    });
  const send = async (body: Buffer) => {
    while (inFlight.size >= maxInFlight) await Promise.race(inFlight);
    const p = (async () => {
      if (bulk) await post(await gzip(body, { level: 1 }), { 'content-type': 'application/x-ndjson', 'content-encoding': 'gzip' });
      else await post(body, { 'content-type': 'application/x-ndjson' });
    })();
    const tracked = p.finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
  };
  const ID = Buffer.from('"auditID":"');
  const STAGE = Buffer.from('"stage":"');
  const inBuf = Buffer.allocUnsafe(1024 * 1024);
  let out = Buffer.allocUnsafe(bodyBytes + 64 * 1024);
  let outLen = 0;
  let events = 0;
  let lastSample = Date.now();
  const flush = async () => {
    if (outLen === 0) return;
    const body = out.subarray(0, outLen);
    // The body goes out while the next one is built in a fresh buffer.
    out = Buffer.allocUnsafe(bodyBytes + 64 * 1024);
    outLen = 0;
    await send(body);
  };
  const emit = async (data: Buffer, start: number, end: number) => {
    const a = data.indexOf(ID, start);
    const s = data.indexOf(STAGE, a);
    if (a < 0 || s < 0 || s > end) throw new Error('reference: a line without auditID/stage');
    const idEnd = data.indexOf(0x22, a + ID.length);
    const stageEnd = data.indexOf(0x22, s + STAGE.length);
    const id = `${data.toString('latin1', a + ID.length, idEnd)}:${data.toString('latin1', s + STAGE.length, stageEnd)}`;
    const len = end - start;
    const need = len + 1 + (bulk ? id.length + 64 : 0);
    if (outLen + need > bodyBytes) await flush();
    if (outLen + need > out.length) out = Buffer.allocUnsafe(need * 2);
    if (bulk) outLen += out.write(`{"create":{"_index":"bench","_id":"${id}"}}\n`, outLen, 'latin1');
    data.copy(out, outLen, start, end);
    outLen += len;
    out[outLen++] = 0x0a;
    events++;
  };
  for (const file of spec.files) {
    const fd = fs.openSync(file, 'r');
    let carry: Buffer = Buffer.alloc(0);
    for (;;) {
      const n = fs.readSync(fd, inBuf, 0, inBuf.length, null);
      if (n === 0) break;
      let data = inBuf.subarray(0, n);
      if (carry.length > 0) data = Buffer.concat([carry, data]);
      let start = 0;
      for (let nl = data.indexOf(0x0a, start); nl !== -1; nl = data.indexOf(0x0a, start)) {
        if (nl > start) await emit(data, start, nl);
        start = nl + 1;
      }
      carry = Buffer.from(data.subarray(start));
      if (Date.now() - lastSample >= spec.sampleMs) {
        sample();
        lastSample = Date.now();
      }
      // Let responses in between reads.
      await new Promise<void>((r) => setImmediate(r));
    }
    fs.closeSync(fd);
  }
  await flush();
  await Promise.all(inFlight);
  agent.destroy();
  return events;
}

function agentYaml(spec: PipelineSpec): string {
  const output =
    spec.sink === 'http'
      ? `{ type: http, url: ${JSON.stringify(spec.sinkUrl)} }`
      : `{ type: elasticsearch, url: ${JSON.stringify(spec.sinkUrl)}, index: bench-%Y.%m.%d }`;
  // Shipped defaults throughout: buffer sizes, batch sizes, gzip (on for elasticsearch), spool.
  return [
    'service:',
    `  state_dir: ${JSON.stringify(spec.stateDir)}`,
    '  log_level: warn',
    '  metrics: { enabled: false }',
    '  shutdown_timeout: 5s',
    'inputs:',
    `  audit: { type: audit_file, paths: [${JSON.stringify(spec.glob)}], start_at: beginning }`,
    'outputs:',
    `  sink: ${output}`,
  ].join('\n');
}

async function runAgent(spec: PipelineSpec, sample: () => void, delivered: { get: () => Promise<number> }, done: () => void): Promise<{ events: number; idleRssKiB?: number }> {
  const cfg = loadConfigText(agentYaml(spec), 'bench');
  const metrics = createMetrics();
  const a = new Agent(cfg, { log: createLogger('warn'), metrics });
  delivered.get = async () => (await metrics.sentEvents.get()).values.filter((v) => v.labels.component_kind === 'output').reduce((s, v) => s + v.value, 0);
  await a.start();
  let n = 0;
  while ((n = await delivered.get()) < spec.events) {
    await new Promise((r) => setTimeout(r, 20));
  }
  done();
  let idleRssKiB: number | undefined;
  if (spec.idleMs !== undefined) {
    const until = Date.now() + spec.idleMs;
    while (Date.now() < until) {
      await new Promise((r) => setTimeout(r, spec.sampleMs));
      sample();
    }
    idleRssKiB = rssKiB();
  }
  await a.stop();
  return { events: n, idleRssKiB };
}

const [mode, specJson] = process.argv.slice(2);
if (mode === 'agent' || mode === 'reference') {
  const spec = JSON.parse(specJson!) as PipelineSpec;
  const samples: Sample[] = [];
  let deliveredNow = 0;
  const delivered = { get: async () => deliveredNow };
  const sample = () => {
    samples.push({ at: Date.now(), rssKiB: rssKiB(), cpuMs: cpuMs(), delivered: deliveredNow });
    // KTRAIL_BENCH_MEM=1: where the memory is, on stderr (heap, external and array buffers beside RSS).
    if (process.env.KTRAIL_BENCH_MEM === '1') {
      const m = process.memoryUsage();
      const mib = (n: number) => (n / 1048576).toFixed(0);
      process.stderr.write(`mem rss ${mib(m.rss)} heapTotal ${mib(m.heapTotal)} heapUsed ${mib(m.heapUsed)} external ${mib(m.external)} arrayBuffers ${mib(m.arrayBuffers)} delivered ${deliveredNow}\n`);
    }
  };
  const sampler = setInterval(() => {
    void delivered.get().then((n) => {
      deliveredNow = n;
      sample();
    });
  }, spec.sampleMs);
  const cpu0 = cpuMs();
  const t0 = performance.now();
  let wallMs = 0;
  let cpu = 0;
  const done = () => {
    wallMs = performance.now() - t0;
    cpu = cpuMs() - cpu0;
  };
  let events: number;
  let idleRssKiB: number | undefined;
  if (mode === 'reference') {
    events = await reference(spec, sample);
    done();
  } else {
    ({ events, idleRssKiB } = await runAgent(spec, sample, delivered, done));
  }
  clearInterval(sampler);
  const result: PipelineResult = { wallMs, cpuMs: cpu, maxRssKiB: process.resourceUsage().maxRSS, events, bytes: spec.bytes, samples, idleRssKiB };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
