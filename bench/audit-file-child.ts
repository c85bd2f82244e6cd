/**
 * One measured run of bench/audit-file.ts, in its own process so that CPU
 * time and peak RSS are those of the pipeline alone.
 *
 *   node bench/audit-file-child.ts agent|reference '<spec json>'
 *
 * Prints one JSON line: { wallMs, cpuMs, maxRssKiB, events, bytes }.
 */
import fs from 'node:fs';
import path from 'node:path';
import { loadConfigText } from '../src/config/load.ts';
import { Agent } from '../src/pipeline/agent.ts';
import { createLogger } from '../src/telemetry/logger.ts';
import { createMetrics } from '../src/telemetry/metrics.ts';

export interface ChildSpec {
  auditDir: string;
  /** The stream's files, oldest first (the reference reads them in this order). */
  files: string[];
  outDir: string;
  stateDir: string;
  events: number;
  bytes: number;
  /** Keep the completeness chain and seal it (manifest.enabled), to measure its cost. */
  manifest?: boolean;
}

export interface ChildResult {
  wallMs: number;
  cpuMs: number;
  maxRssKiB: number;
  events: number;
  bytes: number;
}

/** read → split on \n → JSON.parse → JSON.stringify into a reused buffer → write. */
function reference(spec: ChildSpec): number {
  const out = fs.openSync(path.join(spec.outDir, 'reference.ndjson'), 'w');
  const inBuf = Buffer.allocUnsafe(1024 * 1024);
  let outBuf = Buffer.allocUnsafe(1024 * 1024);
  let outLen = 0;
  let events = 0;
  const flush = () => {
    let off = 0;
    while (off < outLen) off += fs.writeSync(out, outBuf, off, outLen - off);
    outLen = 0;
  };
  const emit = (text: string) => {
    const json = JSON.stringify(JSON.parse(text));
    const need = Buffer.byteLength(json) + 1;
    if (outLen + need > outBuf.length) {
      flush();
      if (need > outBuf.length) outBuf = Buffer.allocUnsafe(need * 2);
    }
    outLen += outBuf.write(json, outLen);
    outBuf[outLen++] = 0x0a;
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
      for (let nl = data.indexOf(0x0a); nl !== -1; nl = data.indexOf(0x0a, start)) {
        if (nl > start) emit(data.toString('utf8', start, nl));
        start = nl + 1;
      }
      carry = Buffer.from(data.subarray(start));
    }
    fs.closeSync(fd);
  }
  flush();
  fs.closeSync(out);
  return events;
}

async function agent(spec: ChildSpec, done: () => void): Promise<number> {
  const yaml = [
    'service:',
    `  state_dir: ${JSON.stringify(spec.stateDir)}`,
    '  log_level: warn',
    '  metrics: { enabled: false }',
    spec.manifest === true ? 'manifest: { enabled: true, seal_interval: 1s }' : '',
    'inputs:',
    `  audit: { type: audit_file, paths: [${JSON.stringify(path.join(spec.auditDir, 'audit*.log*'))}], start_at: beginning, read_buffer_size: 1MiB }`,
    // A short flush interval: the last, partial batch would otherwise wait 200 ms, which is latency, not throughput.
    'outputs:',
    `  sink: { type: file, path: ${JSON.stringify(path.join(spec.outDir, 'audit.ndjson'))}, max_file_bytes: 256MiB, max_files: 1, batch: { flush_interval: 10ms } }`,
  ].join('\n');
  const cfg = loadConfigText(yaml, 'bench');
  const metrics = createMetrics();
  const a = new Agent(cfg, { log: createLogger('warn'), metrics });
  await a.start();
  const delivered = async () => (await metrics.sentEvents.get()).values.filter((v) => v.labels.component_kind === 'output').reduce((s, v) => s + v.value, 0);
  let n = 0;
  while ((n = await delivered()) < spec.events) await new Promise((r) => setTimeout(r, 20));
  // The clock stops once everything is delivered; the graceful stop is not throughput.
  done();
  await a.stop();
  return n;
}

const [mode, specJson] = process.argv.slice(2);
if (mode === 'agent' || mode === 'reference') {
  const spec = JSON.parse(specJson!) as ChildSpec;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let wallMs = 0;
  let cpu = { user: 0, system: 0 };
  const done = () => {
    wallMs = performance.now() - t0;
    cpu = process.cpuUsage(cpu0);
  };
  let events: number;
  if (mode === 'reference') {
    events = reference(spec);
    done();
  } else {
    events = await agent(spec, done);
  }
  const result: ChildResult = { wallMs, cpuMs: (cpu.user + cpu.system) / 1000, maxRssKiB: process.resourceUsage().maxRSS, events, bytes: spec.bytes };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
