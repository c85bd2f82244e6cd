import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { auditLines } from '../test/generators/audit-gen.ts';
import { metadataLines, metadataTemplate, uuidOf, writeStream } from './audit-file.ts';
import type { PipelineResult, PipelineSpec, SinkKind } from './pipeline-child.ts';
import { childEnv, childUrl, header, MiB, row, scale, SHIPPED_V8_FLAGS, tmpFile, type Measurement } from './lib.ts';

/**
 * The rows of issue #19, end to end with the shipped defaults (the V8 flags
 * of the manifests, the image and `npm start`; every config default):
 *
 * `e2e` — catch-up: files laid out as lumberjack leaves them, read from their
 * head until the destination has acknowledged every record.
 *   - audit_file → spool → http (NDJSON), and → elasticsearch (`_bulk`, gzip on);
 *   - on 1 GiB of ~1.42 KB Metadata lines and 256 MiB of mixed traffic
 *     (RequestResponse bodies, lines up to ~1 MB); KTRAIL_BENCH_SCALE shrinks both;
 *   - beside the reference, measured in the same run against the same sink:
 *     the plain Node pipeline read → split → id → request body → POST
 *     (bench/pipeline-child.ts), with the output's request size and concurrency.
 *
 * `live` — traffic written while the agent runs (audit_file → http):
 *   - steady 15k and 10k events/s: peak RSS and cores used (CPU time / wall)
 *     while keeping up; then idle RSS after 10 s without traffic;
 *   - stalled sink: 5k events/s while the sink answers 503 for
 *     KTRAIL_BENCH_STALL_SECONDS (default 60; the row is 600): the
 *     spool takes the backlog, RSS must stay flat; then the sink recovers
 *     and the clock runs until every record is delivered.
 *
 * The sink runs in its own process (bench/sink-child.ts), and so does each
 * measured pipeline, so CPU and peak RSS are the pipeline's own.
 * KTRAIL_BENCH_RUNS=n repeats every measured run and reports the median.
 */
const here = path.dirname(fileURLToPath(import.meta.url));

interface Sink {
  url: string;
  proc: ChildProcess;
  count(): Promise<number>;
  stall(on: boolean): Promise<void>;
  stop(): void;
}

async function startSink(kind: SinkKind): Promise<Sink> {
  const proc = spawn(process.execPath, [path.join(here, 'sink-child.ts'), kind === 'http' ? 'ndjson' : 'bulk'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const url = await childUrl(proc, 'sink');
  return {
    url,
    proc,
    count: async () => ((await (await fetch(`${url}/_bench/count`)).json()) as { docs: number }).docs,
    stall: async (on) => void (await fetch(`${url}/_bench/stall?on=${on ? 1 : 0}`, { method: 'POST' })),
    stop: () => {
      proc.stdin!.end();
      proc.kill();
    },
  };
}

function runChild(mode: 'agent' | 'reference', spec: PipelineSpec): { proc: ChildProcess; result: Promise<PipelineResult> } {
  const proc = spawn(process.execPath, [...SHIPPED_V8_FLAGS, path.join(here, 'pipeline-child.ts'), mode, JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'inherit'], env: childEnv() });
  const result = new Promise<PipelineResult>((resolve, reject) => {
    let out = '';
    proc.stdout!.setEncoding('utf8');
    proc.stdout!.on('data', (d: string) => (out += d));
    proc.on('error', reject);
    proc.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`bench child (${mode}) exited with ${code}`));
      resolve(JSON.parse(out.trim().split('\n').at(-1)!) as PipelineResult);
    });
  });
  return { proc, result };
}

function runs(): number {
  const n = Number(process.env.KTRAIL_BENCH_RUNS ?? '1');
  return Number.isInteger(n) && n > 0 ? n : 1;
}

function median<T>(xs: T[], key: (x: T) => number): T {
  const sorted = [...xs].sort((a, b) => key(a) - key(b));
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

function toMeasurement(name: string, r: PipelineResult): Measurement {
  return { name, bytes: r.bytes, events: r.events, wallMs: r.wallMs, cpuMs: r.cpuMs, peakRssMiB: r.maxRssKiB / 1024 };
}

/** One measured catch-up, repeated KTRAIL_BENCH_RUNS times; the median by wall time. */
async function catchUp(name: string, mode: 'agent' | 'reference', sink: Sink, spec: Omit<PipelineSpec, 'stateDir' | 'sinkUrl'>, root: string): Promise<Measurement> {
  const results: PipelineResult[] = [];
  for (let i = 0; i < runs(); i++) {
    const stateDir = path.join(root, `state-${mode}-${spec.sink}-${i}`);
    const before = await sink.count();
    const r = await runChild(mode, { ...spec, stateDir, sinkUrl: sink.url }).result;
    const got = (await sink.count()) - before;
    if (got < spec.events) throw new Error(`bench: ${name}: the sink holds ${got} of ${spec.events} records`);
    fs.rmSync(stateDir, { recursive: true, force: true });
    results.push(r);
  }
  return toMeasurement(name, median(results, (r) => r.wallMs));
}

/**
 * One unmeasured agent run on a few lines per destination, so the compile
 * cache holds every module the measured runs load (as in the image, where it
 * is filled at build time).
 */
async function warmUp(sink: Sink, kind: SinkKind): Promise<void> {
  const root = tmpFile('warm');
  try {
    const { files, events, bytes } = writeStream(path.join(root, 'audit'), metadataLines(2 * MiB));
    await runChild('agent', { glob: path.join(root, 'audit', 'audit*.log*'), files, events, bytes, sampleMs: 1000, stateDir: path.join(root, 'state'), sinkUrl: sink.url, sink: kind }).result;
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

async function e2eCase(name: string, lines: Iterable<string>): Promise<void> {
  const root = tmpFile('pipeline');
  const sinks = { http: await startSink('http'), elasticsearch: await startSink('elasticsearch') };
  try {
    const auditDir = path.join(root, 'audit');
    const { files, events, bytes } = writeStream(auditDir, lines);
    header(`tail → destination: ${name} — ${(bytes / MiB).toFixed(0)} MiB, ${events} events in ${files.length} files`);
    const base = { glob: path.join(auditDir, 'audit*.log*'), files, events, bytes, sampleMs: 250 };
    for (const kind of ['http', 'elasticsearch'] as const) {
      const spec = { ...base, sink: kind };
      await warmUp(sinks[kind], kind);
      const refName = kind === 'http' ? 'reference: read/split/id → NDJSON POST' : 'reference: read/split/id → _bulk gzip 1 POST';
      const ref = await catchUp(refName, 'reference', sinks[kind], spec, root);
      const agent = await catchUp(kind === 'http' ? 'audit_file → spool → http NDJSON' : 'audit_file → spool → elasticsearch (gzip)', 'agent', sinks[kind], spec, root);
      process.stdout.write(`${row(ref)}\n${row(agent, ref)}\n`);
      const mibs = bytes / MiB / (agent.wallMs / 1000);
      const cpu = agent.cpuMs / (bytes / MiB);
      const [minMiBs, maxCpu] = kind === 'http' ? [185, 9] : [150, 10];
      const verdict = (ok: boolean) => (ok ? 'met' : 'MISSED');
      process.stdout.write(
        `targets (issue #19): ≥ ${minMiBs} MiB/s (${verdict(mibs >= minMiBs)}), ≤ ${maxCpu} CPU ms/MiB (${verdict(cpu <= maxCpu)}), peak RSS ≤ 128 MiB (${verdict((agent.peakRssMiB ?? 0) <= 128)})\n`,
      );
    }
  } finally {
    sinks.http.stop();
    sinks.elasticsearch.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
}

export async function benchPipeline(): Promise<void> {
  const s = scale();
  await e2eCase('~1.42 KB Metadata lines', metadataLines(Math.round(1024 * MiB * s)));
  await e2eCase('mixed traffic (RequestResponse bodies, lines up to ~1 MB)', auditLines({ seed: 11, approxBytes: Math.round(256 * MiB * s) }));
}

/** Appends Metadata lines to `file` at `rate` per second for `seconds`; resolves with what it wrote. */
async function writeAtRate(file: string, rate: number, seconds: number, firstId: number): Promise<{ events: number; bytes: number }> {
  const [pre, post] = metadataTemplate();
  const fd = fs.openSync(file, 'a');
  const t0 = performance.now();
  const total = Math.round(rate * seconds);
  let written = 0;
  let bytes = 0;
  try {
    while (written < total) {
      const due = Math.min(total, Math.round(((performance.now() - t0) / 1000) * rate));
      if (due > written) {
        let chunk = '';
        for (let i = written; i < due; i++) chunk += `${pre}${uuidOf(firstId + i)}${post}\n`;
        fs.writeSync(fd, chunk);
        bytes += Buffer.byteLength(chunk);
        written = due;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    fs.closeSync(fd);
  }
  return { events: written, bytes };
}

function coresBetween(r: PipelineResult, from: number, to: number): number {
  const inside = r.samples.filter((x) => x.at >= from && x.at <= to);
  if (inside.length < 2) return Number.NaN;
  const a = inside[0]!;
  const b = inside.at(-1)!;
  return (b.cpuMs - a.cpuMs) / (b.at - a.at);
}

function rssRange(r: PipelineResult, from: number, to: number): { min: number; max: number } {
  const inside = r.samples.filter((x) => x.at >= from && x.at <= to).map((x) => x.rssKiB / 1024);
  return { min: Math.min(...inside), max: Math.max(...inside) };
}

async function steady(rate: number, seconds: number, idleMs: number | undefined): Promise<void> {
  const root = tmpFile('live');
  const sink = await startSink('http');
  try {
    await warmUp(sink, 'http');
    const dir = path.join(root, 'audit');
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, 'audit.log');
    fs.writeFileSync(file, '');
    const events = Math.round(rate * seconds);
    const child = runChild('agent', { glob: path.join(dir, 'audit*.log*'), files: [file], stateDir: path.join(root, 'state'), sinkUrl: sink.url, sink: 'http', events, bytes: 0, sampleMs: 500, idleMs });
    // Give the agent its start-up before the traffic begins (start-up is bench startup's case).
    await new Promise((r) => setTimeout(r, 1500));
    const t0 = Date.now();
    const w = await writeAtRate(file, rate, seconds, 0);
    const t1 = Date.now();
    const r = await child.result;
    // The middle of the run: the agent keeping up, without start and end.
    const span = t1 - t0;
    const cores = coresBetween(r, t0 + span * 0.2, t1 - span * 0.1);
    const rss = rssRange(r, t0, t1);
    process.stdout.write(
      `steady ${rate} ev/s for ${seconds} s → http: ${w.events} records (${((w.bytes / MiB) / seconds).toFixed(1)} MiB/s)  cores used ${cores.toFixed(3)}  RSS ${rss.min.toFixed(0)}–${rss.max.toFixed(0)} MiB, peak RSS ${(r.maxRssKiB / 1024).toFixed(0)} MiB` +
        (r.idleRssKiB !== undefined ? `  idle RSS after ${(idleMs! / 1000).toFixed(0)} s ${(r.idleRssKiB / 1024).toFixed(0)} MiB` : '') +
        '\n',
    );
    const targets: string[] = [`peak RSS ≤ 128 MiB (${r.maxRssKiB / 1024 <= 128 ? 'met' : 'MISSED'})`];
    if (rate === 10_000) targets.push(`≤ 0.25 cores (${cores <= 0.25 ? 'met' : 'MISSED'})`);
    if (r.idleRssKiB !== undefined) targets.push(`idle ≤ 64 MiB (${r.idleRssKiB / 1024 <= 64 ? 'met' : 'MISSED'})`);
    process.stdout.write(`targets (issue #19): ${targets.join(', ')}\n`);
  } finally {
    sink.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
}

async function stalled(rate: number, stallSeconds: number): Promise<void> {
  const root = tmpFile('stall');
  const sink = await startSink('http');
  try {
    const dir = path.join(root, 'audit');
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, 'audit.log');
    fs.writeFileSync(file, '');
    const before = 5;
    const seconds = before + stallSeconds;
    const events = Math.round(rate * seconds);
    const child = runChild('agent', { glob: path.join(dir, 'audit*.log*'), files: [file], stateDir: path.join(root, 'state'), sinkUrl: sink.url, sink: 'http', events, bytes: 0, sampleMs: 500 });
    await new Promise((r) => setTimeout(r, 1500));
    const t0 = Date.now();
    const stallAt = t0 + before * 1000;
    const writing = writeAtRate(file, rate, seconds, 0);
    await new Promise((r) => setTimeout(r, before * 1000));
    await sink.stall(true);
    await writing;
    const t1 = Date.now();
    await sink.stall(false);
    const r = await child.result;
    const done = r.samples.at(-1)?.at ?? t1;
    const during = rssRange(r, stallAt + (t1 - stallAt) / 2, t1);
    const early = rssRange(r, stallAt, stallAt + (t1 - stallAt) / 2);
    process.stdout.write(
      `stalled sink: ${rate} ev/s, sink answers 503 for ${stallSeconds} s, then recovers: RSS first half of the stall ${early.min.toFixed(0)}–${early.max.toFixed(0)} MiB, second half ${during.min.toFixed(0)}–${during.max.toFixed(0)} MiB, ` +
        `peak RSS ${(r.maxRssKiB / 1024).toFixed(0)} MiB; backlog of ${Math.round(rate * stallSeconds)} records delivered ${((done - t1) / 1000).toFixed(1)} s after recovery\n`,
    );
    process.stdout.write(`targets (issue #19): peak RSS ≤ 128 MiB (${r.maxRssKiB / 1024 <= 128 ? 'met' : 'MISSED'}), flat (second half max − first half max ≤ 8 MiB: ${during.max - early.max <= 8 ? 'met' : 'MISSED'})\n`);
  } finally {
    sink.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
}

export async function benchLive(): Promise<void> {
  const s = scale();
  const seconds = Math.max(5, Math.round(30 * s));
  header('live traffic → http (audit_file tailing a growing audit.log)');
  await steady(15_000, seconds, 10_000);
  await steady(10_000, seconds, undefined);
  const stallSeconds = Number(process.env.KTRAIL_BENCH_STALL_SECONDS ?? Math.max(10, Math.round(60 * s)));
  await stalled(5_000, stallSeconds);
}
