import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import { auditLines } from '../test/generators/audit-gen.ts';
import { COMPRESS_SUFFIX, LumberjackWriter } from '../test/generators/lumberjack.ts';
import { header, MiB, scale, SHIPPED_V8_FLAGS, tmpFile } from './lib.ts';

/**
 * Start-up of `ktrail run`, restarted again and again on one state dir, as
 * the node agent is after every upgrade, eviction or crash. The audit
 * directory is what kube-apiserver's lumberjack leaves (10 backups of 5 MB,
 * the older half gzipped, and audit.log), written by test/generators/lumberjack.ts;
 * the config is audit_file on `audit*.log*` → http output to an NDJSON sink in
 * this process, with the telemetry server on a free port.
 *
 * Per run, measured from spawn (`node bin/ktrail.js run -c cfg`, the command
 * `npm start` runs, with the shipped V8 flags):
 * - all files open: the `openedAt` time in the agent's `audit files open` log
 *   line (every matching file is open; the line itself is written after the
 *   config is validated), minus the spawn time (both wall clock, one machine);
 *   an agent that does not log it yet is timed by `audit_file input started`
 *   instead, and the output says so;
 * - ready: first 200 from GET /readyz, polled every 5 ms;
 * - RSS (VmRSS) and peak RSS (VmHWM) from /proc/<pid>/status right after ready.
 * Then the agent catches up on what was appended since the last run (the
 * sink has every line), gets SIGTERM, and lines are appended for the next run.
 *
 * References, interleaved with the runs so they see the same machine load:
 * `node -e 0` spawn → exit, and a plain Node script doing the same first job
 * (readdir + open every file, then exit) spawn → exit.
 *
 * KTRAIL_BENCH_SCALE scales the number of restarts (50, at least 5) and the
 * file size (5 MB); the number of files stays 11.
 */
const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..');
const BACKUPS = 10;
const GZIPPED = 5;
const FILES_OPEN_MSG = 'audit files open';
const FALLBACK_MSG = 'audit_file input started';
const READY_POLL_MS = 5;

interface Run {
  filesOpenMs: number | undefined;
  signal: string | undefined;
  files: number | undefined;
  readyMs: number;
  rssMiB: number;
  hwmMiB: number;
  stopMs: number;
}

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

const median = (xs: number[]) => quantile(xs, 0.5);

/** Least-squares slope of xs against their index (units per restart). */
function slope(xs: number[]): number {
  const n = xs.length;
  if (n < 2) return Number.NaN;
  const mx = (n - 1) / 2;
  const my = xs.reduce((s, x) => s + x, 0) / n;
  let num = 0;
  let den = 0;
  xs.forEach((y, i) => {
    num += (i - mx) * (y - my);
    den += (i - mx) ** 2;
  });
  return num / den;
}

function procStatusKiB(pid: number, key: 'VmRSS' | 'VmHWM'): number {
  try {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = http.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** NDJSON sink: counts the lines it was sent and answers 200. */
async function startSink(): Promise<{ url: string; lines: () => number; close: () => Promise<void> }> {
  let lines = 0;
  const server = http.createServer((req, res) => {
    req.on('data', (c: Buffer) => {
      for (let i = c.indexOf(10); i !== -1; i = c.indexOf(10, i + 1)) lines++;
    });
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/ingest`,
    lines: () => lines,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function getStatus(port: number, urlPath: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, agent: false, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => req.destroy());
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The older backups gzipped, as lumberjack's mill leaves them; the newest GZIPPED plain. */
function gzipOlderBackups(w: LumberjackWriter): void {
  const plain = w.backups().filter((n) => !n.endsWith(COMPRESS_SUFFIX));
  for (const name of plain.slice(0, Math.max(0, plain.length - (BACKUPS - GZIPPED)))) {
    const src = path.join(w.dir, name);
    fs.writeFileSync(src + COMPRESS_SUFFIX, zlib.gzipSync(fs.readFileSync(src)));
    fs.unlinkSync(src);
  }
}

function dirBytes(dir: string): number {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    n += e.isDirectory() ? dirBytes(p) : fs.statSync(p).size;
  }
  return n;
}

/** Spawn → exit of `node args`, in ms. */
function timeExit(args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, args, { stdio: 'ignore' });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`node ${args.join(' ')} exited with ${code}`))));
  });
}

const OPEN_ALL = "const fs=require('fs'),p=require('path'),d=process.argv[1];for(const n of fs.readdirSync(d))fs.closeSync(fs.openSync(p.join(d,n),'r'));";

async function runAgent(cfgFile: string, port: number, caughtUp: () => boolean): Promise<Run> {
  const t0 = performance.now();
  const spawnedAtMs = Date.now();
  const child = spawn(process.execPath, [...SHIPPED_V8_FLAGS, path.join(repo, 'bin/ktrail.js'), 'run', '-c', cfgFile], { cwd: repo, stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let exitCode: number | null | undefined;
  void exited.then((c) => (exitCode = c));
  const tail: string[] = [];
  let filesOpenMs: number | undefined;
  let fallbackMs: number | undefined;
  let files: number | undefined;
  let buf = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    const now = performance.now() - t0;
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      tail.push(line);
      if (tail.length > 30) tail.shift();
      let msg: unknown;
      let rec: Record<string, unknown> | undefined;
      try {
        rec = JSON.parse(line) as Record<string, unknown>;
        msg = rec.msg;
      } catch {
        continue;
      }
      if (msg === FILES_OPEN_MSG && filesOpenMs === undefined) {
        // The line is written once the config is validated; `openedAt` says when the files were open.
        const openedAt = typeof rec.openedAt === 'string' ? Date.parse(rec.openedAt) : Number.NaN;
        filesOpenMs = Number.isFinite(openedAt) ? Math.max(0, openedAt - spawnedAtMs) : now;
        files = typeof rec.files === 'number' ? rec.files : undefined;
      } else if (msg === FALLBACK_MSG && fallbackMs === undefined) fallbackMs = now;
    }
  });
  const fail = (what: string) => new Error(`ktrail run ${what}; last stderr lines:\n${tail.join('\n')}`);

  let readyMs: number | undefined;
  while (readyMs === undefined) {
    if (exitCode !== undefined) throw fail(`exited with ${exitCode} before ready`);
    if (performance.now() - t0 > 60_000) {
      child.kill('SIGKILL');
      throw fail('not ready after 60 s');
    }
    if ((await getStatus(port, '/readyz')) === 200) readyMs = performance.now() - t0;
    else await sleep(READY_POLL_MS);
  }
  const rssMiB = procStatusKiB(child.pid!, 'VmRSS') / 1024;
  const hwmMiB = procStatusKiB(child.pid!, 'VmHWM') / 1024;

  // The next start should find this run's reading done and checkpointed.
  const caughtUpBy = performance.now() + 120_000;
  while (!caughtUp()) {
    if (exitCode !== undefined) throw fail(`exited with ${exitCode} while reading`);
    if (performance.now() > caughtUpBy) {
      child.kill('SIGKILL');
      throw fail('did not deliver every line within 120 s');
    }
    await sleep(20);
  }
  // The 'audit files open' line may trail readiness by a little in the pipe.
  if (filesOpenMs === undefined) await sleep(50);
  const s0 = performance.now();
  child.kill('SIGTERM');
  const code = await exited;
  const stopMs = performance.now() - s0;
  if (code !== 0) throw fail(`exited with ${code} after SIGTERM`);
  const signal = filesOpenMs !== undefined ? FILES_OPEN_MSG : fallbackMs !== undefined ? FALLBACK_MSG : undefined;
  return { filesOpenMs: filesOpenMs ?? fallbackMs, signal, files, readyMs, rssMiB, hwmMiB, stopMs };
}

function fmt(x: number, digits = 0): string {
  return Number.isFinite(x) ? x.toFixed(digits) : '-';
}

export async function benchStartup(): Promise<void> {
  const s = scale();
  const restarts = Math.max(5, Math.round(50 * s));
  const fileBytes = Math.max(256 * 1024, Math.round(5 * 1000 * 1000 * s));
  const appendBytes = Math.round(fileBytes / 10);
  const root = tmpFile('startup');
  const sink = await startSink();
  try {
    const auditDir = path.join(root, 'audit');
    const stateDir = path.join(root, 'state');
    const writer = new LumberjackWriter({ dir: auditDir, maxSizeBytes: fileBytes, maxBackups: BACKUPS });
    const lines = auditLines({ seed: 12, approxBytes: Number.MAX_SAFE_INTEGER, maxLineBytes: Math.min(256 * 1024, Math.floor(fileBytes / 4)) })[Symbol.iterator]();
    let written = 0;
    const append = async (bytes: number) => {
      const rotations = writer.rotations;
      for (let n = 0; n < bytes; ) {
        const l = lines.next().value!;
        await writer.write(l);
        n += Buffer.byteLength(l) + 1;
        written++;
      }
      if (writer.rotations !== rotations) {
        await writer.mill();
        gzipOlderBackups(writer);
      }
    };
    while (writer.rotations < BACKUPS || writer.sizeBytes < fileBytes / 2) await append(64 * 1024);
    await writer.mill();
    gzipOlderBackups(writer);
    await writer.close();
    const onDisk = fs.readdirSync(auditDir);

    const port = await freePort();
    const cfgFile = path.join(root, 'ktrail.yaml');
    fs.writeFileSync(
      cfgFile,
      [
        'service:',
        `  state_dir: ${JSON.stringify(stateDir)}`,
        '  log_level: info',
        '  log_format: json',
        `  metrics: { listen: "127.0.0.1:${port}" }`,
        'inputs:',
        `  audit: { type: audit_file, paths: [${JSON.stringify(path.join(auditDir, 'audit*.log*'))}], start_at: beginning }`,
        'outputs:',
        `  sink: { type: http, url: ${JSON.stringify(sink.url)}, format: ndjson, batch: { flush_interval: 10ms } }`,
        '',
      ].join('\n'),
    );
    header(
      `start-up: ${onDisk.length} files (${BACKUPS} backups of ${(fileBytes / 1e6).toFixed(1)} MB, ${onDisk.filter((n) => n.endsWith(COMPRESS_SUFFIX)).length} gzipped, audit.log), ` +
        `${(dirBytes(auditDir) / MiB).toFixed(1)} MiB on disk → audit_file → http sink; 1 fresh start + ${restarts} restarts on one state dir`,
    );

    const caughtUp = () => sink.lines() >= written;
    const fresh = await runAgent(cfgFile, port, caughtUp);
    const stateAfterFresh = dirBytes(stateDir);
    const runs: Run[] = [];
    const nodeE0: number[] = [];
    const openAll: number[] = [];
    for (let i = 0; i < restarts; i++) {
      await append(appendBytes);
      runs.push(await runAgent(cfgFile, port, caughtUp));
      nodeE0.push(await timeExit(['-e', '0']));
      openAll.push(await timeExit(['-e', OPEN_ALL, auditDir]));
    }
    const stateAfter = dirBytes(stateDir);

    const signals = new Set(runs.map((r) => r.signal ?? 'none'));
    const filesSeen = [...new Set(runs.map((r) => r.files).filter((f) => f !== undefined))];
    process.stdout.write(
      signals.has(FILES_OPEN_MSG) && signals.size === 1
        ? `all files open = '${FILES_OPEN_MSG}' log line (files=${filesSeen.join('/')}, ${onDisk.length} on disk at the start)\n`
        : `all files open: the agent does not log '${FILES_OPEN_MSG}' (${[...signals].join(', ')}); timed by '${FALLBACK_MSG}' instead — before its first scan, so a lower bound\n`,
    );
    process.stdout.write(
      `fresh state dir: files open ${fmt(fresh.filesOpenMs ?? Number.NaN)} ms, ready ${fmt(fresh.readyMs)} ms, RSS ${fmt(fresh.rssMiB)} MiB (peak ${fmt(fresh.hwmMiB)}), stop ${fmt(fresh.stopMs)} ms\n`,
    );
    const k = Math.min(10, Math.floor(restarts / 2));
    const cols = `${'restarts'.padEnd(44)} ${'median'.padStart(8)} ${'p90'.padStart(8)} ${`first ${k}`.padStart(9)} ${`last ${k}`.padStart(9)} ${'slope/run'.padStart(10)}   target`;
    process.stdout.write(`${cols}\n`);
    const line = (name: string, xs: number[], target: string, digits = 0) => {
      const ys = xs.filter(Number.isFinite);
      process.stdout.write(
        `${name.padEnd(44)} ${fmt(median(ys), digits).padStart(8)} ${fmt(quantile(ys, 0.9), digits).padStart(8)} ${fmt(median(xs.slice(0, k)), digits).padStart(9)} ${fmt(median(xs.slice(-k)), digits).padStart(9)} ${fmt(slope(xs), 2).padStart(10)}   ${target}\n`,
      );
    };
    line('spawn → all files open (ms)', runs.map((r) => r.filesOpenMs ?? Number.NaN), '≤ 100 ms, no growth');
    line('spawn → ready, /readyz 200 (ms)', runs.map((r) => r.readyMs), '≤ 300 ms, no growth');
    line('RSS after ready (MiB)', runs.map((r) => r.rssMiB), 'no growth', 1);
    line('peak RSS at ready, VmHWM (MiB)', runs.map((r) => r.hwmMiB), 'no growth', 1);
    line('SIGTERM → exit (ms)', runs.map((r) => r.stopMs), '-');
    line('reference: node -e 0, spawn → exit (ms)', nodeE0, '-');
    line('reference: readdir + open each, spawn → exit', openAll, '-');
    const ready = median(runs.map((r) => r.readyMs));
    const open = median(runs.map((r) => r.filesOpenMs ?? Number.NaN));
    process.stdout.write(
      `medians over references: files open ${fmt(open / median(openAll), 1)}× readdir+open, ready ${fmt(ready / median(nodeE0), 1)}× node -e 0; ` +
        `state dir ${(stateAfterFresh / MiB).toFixed(1)} MiB after the fresh start, ${(stateAfter / MiB).toFixed(1)} MiB after the last restart; sink received ${sink.lines()} lines of ${written} written\n`,
    );
    process.stdout.write('targets (issue 12, 2-core machine): all files open ≤ 100 ms, ready ≤ 300 ms, no growth across restarts — printed, not enforced\n');
  } finally {
    await sink.close();
    fs.rmSync(root, { recursive: true, force: true });
  }
}
