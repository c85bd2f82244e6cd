import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { auditLine, auditLines } from '../test/generators/audit-gen.ts';
import { backupName } from '../test/generators/lumberjack.ts';
import type { ChildResult, ChildSpec } from './audit-file-child.ts';
import { childEnv, header, MiB, row, scale, SHIPPED_V8_FLAGS, tmpFile, type Measurement } from './lib.ts';

/**
 * Tailing throughput of the audit_file input, end to end: files laid out as
 * lumberjack leaves them (100 MiB backups + audit.log) → audit_file → spool →
 * file output, the clock stopping when the output has acknowledged every
 * record. Reference, measured in the same run on the same files: read → split
 * on \n → JSON.parse → JSON.stringify into a reused buffer → write, with no
 * spool and no checkpoints. Both run in child processes, so CPU and peak RSS
 * are each pipeline's own.
 *
 * Cases: 1 GiB of ~1.4 KB Metadata lines; 256 MiB of the generator's mixed
 * traffic (Metadata, Request and RequestResponse; lines up to ~1 MB).
 * KTRAIL_BENCH_SCALE (or opts.scale) shrinks both.
 */
const here = path.dirname(fileURLToPath(import.meta.url));
const FILE_BYTES = 100 * MiB;

export interface AuditFileBenchOptions {
  /** Defaults to KTRAIL_BENCH_SCALE (1). */
  scale?: number;
  /** Keep the generated files (printed) instead of deleting them. */
  keep?: boolean;
}

export interface AuditFileBenchCase {
  name: string;
  reference: Measurement;
  agent: Measurement;
  /** agent MiB/s ÷ reference MiB/s. */
  ratio: number;
  /** The same agent with manifest.enabled. */
  withManifest: Measurement;
}

/** A ~1.4 KB Metadata event of a pod's service account, split around its auditID. */
export function metadataTemplate(): [string, string] {
  const marker = '00000000-0000-0000-0000-000000000000';
  const l = auditLine({
    level: 'Metadata',
    auditID: marker,
    verb: 'list',
    requestURI: '/apis/apps/v1/namespaces/monitoring/deployments?labelSelector=app.kubernetes.io%2Fname%3Dkube-state-metrics&limit=500',
    user: {
      username: 'system:serviceaccount:monitoring:kube-state-metrics',
      uid: '5d3f0c7e-2b7a-4b8e-9a51-6f7f3c1d2e90',
      groups: ['system:serviceaccounts', 'system:serviceaccounts:monitoring', 'system:authenticated'],
      extra: {
        'authentication.kubernetes.io/credential-id': ['JTI=2f6f1c3e-8c1d-4c7b-9d43-0d5b8f6a7e21'],
        'authentication.kubernetes.io/node-name': ['ip-10-0-3-17.eu-west-1.compute.internal'],
        'authentication.kubernetes.io/node-uid': ['a3c9b1f2-6e4d-4d3a-8f1e-2b7c9d0e1f23'],
        'authentication.kubernetes.io/pod-name': ['kube-state-metrics-7c9d8f6b5-x2k4p'],
        'authentication.kubernetes.io/pod-uid': ['e1d2c3b4-a596-4877-8c9d-0e1f2a3b4c5d'],
      },
    },
    sourceIPs: ['10.0.3.17'],
    userAgent: 'kube-state-metrics/v2.12.0 (linux/amd64) kubernetes/8d7e4c2',
    objectRef: { resource: 'deployments', namespace: 'monitoring', apiGroup: 'apps', apiVersion: 'v1' },
    annotations: {
      'authorization.k8s.io/decision': 'allow',
      'authorization.k8s.io/reason': 'RBAC: allowed by ClusterRoleBinding "kube-state-metrics" of ClusterRole "kube-state-metrics" to ServiceAccount "kube-state-metrics/monitoring"',
    },
  });
  const i = l.indexOf(marker);
  return [l.slice(0, i), l.slice(i + marker.length)];
}

export function uuidOf(n: number): string {
  const h = n.toString(16).padStart(12, '0');
  return `b3nc4a11-0000-4000-8000-${h}`;
}

/** Writes lines into 100 MiB lumberjack-named backups and a last audit.log; returns the files oldest first. */
export function writeStream(dir: string, lines: Iterable<string>): { files: string[]; events: number; bytes: number } {
  fs.mkdirSync(dir, { recursive: true });
  const files: string[] = [];
  let events = 0;
  let bytes = 0;
  let chunk: string[] = [];
  let chunkBytes = 0;
  let fileBytes = 0;
  let fd = -1;
  let t = Date.UTC(2024, 4, 1, 10, 0, 0);
  const open = () => {
    const name = path.join(dir, 'audit.log.tmp');
    fd = fs.openSync(name, 'w');
    fileBytes = 0;
  };
  const flushChunk = () => {
    if (chunkBytes === 0) return;
    fs.writeSync(fd, chunk.join(''));
    chunk = [];
    chunkBytes = 0;
  };
  const close = (last: boolean) => {
    flushChunk();
    fs.closeSync(fd);
    t += 60_000;
    const target = path.join(dir, last ? 'audit.log' : backupName('audit.log', new Date(t)));
    fs.renameSync(path.join(dir, 'audit.log.tmp'), target);
    files.push(target);
  };
  open();
  for (const l of lines) {
    const n = Buffer.byteLength(l) + 1;
    if (fileBytes > 0 && fileBytes + n > FILE_BYTES) {
      close(false);
      open();
    }
    chunk.push(l, '\n');
    chunkBytes += n;
    fileBytes += n;
    events++;
    bytes += n;
    if (chunkBytes >= 4 * MiB) flushChunk();
  }
  close(true);
  return { files, events, bytes };
}

export function* metadataLines(totalBytes: number): Generator<string> {
  const [pre, post] = metadataTemplate();
  let bytes = 0;
  for (let i = 0; bytes < totalBytes; i++) {
    const l = pre + uuidOf(i) + post;
    bytes += l.length + 1;
    yield l;
  }
}

function runChild(mode: 'agent' | 'reference', spec: ChildSpec): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    // Both children run with the V8 flags the manifests set (NODE_OPTIONS there).
    // KTRAIL_BENCH_CPU_PROF=DIR: each agent child writes a V8 CPU profile there (open it in Chrome DevTools).
    const prof = process.env.KTRAIL_BENCH_CPU_PROF && mode === 'agent' ? ['--cpu-prof', `--cpu-prof-dir=${process.env.KTRAIL_BENCH_CPU_PROF}`] : [];
    const child = spawn(process.execPath, [...SHIPPED_V8_FLAGS, ...prof, path.join(here, 'audit-file-child.ts'), mode, JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'inherit'], env: childEnv() });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => (out += d));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`bench child (${mode}) exited with ${code}`));
      resolve(JSON.parse(out.trim().split('\n').at(-1)!) as ChildResult);
    });
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

function medianResult(rs: ChildResult[]): ChildResult {
  return { ...rs[0]!, wallMs: median(rs.map((r) => r.wallMs)), cpuMs: median(rs.map((r) => r.cpuMs)), maxRssKiB: median(rs.map((r) => r.maxRssKiB)) };
}

function toMeasurement(name: string, r: ChildResult): Measurement {
  return { name, bytes: r.bytes, events: r.events, wallMs: r.wallMs, cpuMs: r.cpuMs, peakRssMiB: r.maxRssKiB / 1024 };
}

async function runCase(name: string, lines: Iterable<string>, opts: AuditFileBenchOptions): Promise<AuditFileBenchCase> {
  const root = tmpFile('audit-file');
  try {
    const auditDir = path.join(root, 'audit');
    const { files, events, bytes } = writeStream(auditDir, lines);
    header(`audit_file tailing: ${name} — ${(bytes / MiB).toFixed(0)} MiB, ${events} events in ${files.length} files`);
    const spec = (sub: string): ChildSpec => {
      const outDir = path.join(root, sub, 'out');
      fs.mkdirSync(outDir, { recursive: true });
      return { auditDir, files, outDir, stateDir: path.join(root, sub, 'state'), events, bytes };
    };
    const reference = toMeasurement('reference: read/split/parse/stringify/write', await runChild('reference', spec('ref')));
    fs.rmSync(path.join(root, 'ref'), { recursive: true, force: true });
    // KTRAIL_BENCH_RUNS=N: N runs of each, alternating (so a burst of load on a shared machine hits
    // both), reported as medians; wall clock and CPU each take their own median.
    const runs = Math.max(1, Math.floor(Number(process.env.KTRAIL_BENCH_RUNS ?? '1')) || 1);
    const plain: ChildResult[] = [];
    const sealed: ChildResult[] = [];
    for (let i = 0; i < runs; i++) {
      plain.push(await runChild('agent', spec('agent')));
      fs.rmSync(path.join(root, 'agent'), { recursive: true, force: true });
      sealed.push(await runChild('agent', { ...spec('manifest'), manifest: true }));
      fs.rmSync(path.join(root, 'manifest'), { recursive: true, force: true });
    }
    const suffix = runs > 1 ? ` (median of ${runs})` : '';
    const agent = toMeasurement(`audit_file → spool → file output${suffix}`, medianResult(plain));
    const withManifest = toMeasurement(`the same with manifest.enabled${suffix}`, medianResult(sealed));
    process.stdout.write(`${row(reference)}\n${row(agent, reference)}\n${row(withManifest, reference)}\n`);
    // Throughput with the chain relative to without it, in the same run on the same files.
    const cost = 1 - agent.wallMs / withManifest.wallMs;
    const cpuCost = withManifest.cpuMs / agent.cpuMs - 1;
    process.stdout.write(
      `manifest cost: ${(cost * 100).toFixed(1)} % throughput, +${(cpuCost * 100).toFixed(1)} % CPU per MiB (target ≤ 3 % throughput: ${cost <= 0.03 ? 'met' : 'MISSED'})\n`,
    );
    const ratio = bytes / MiB / (agent.wallMs / 1000) / (bytes / MiB / (reference.wallMs / 1000));
    process.stdout.write(
      `targets: ≥ 0.60×ref (${ratio >= 0.6 ? 'met' : 'MISSED'}: ${ratio.toFixed(2)}×), peak RSS < 200 MiB (${(agent.peakRssMiB ?? 0) < 200 ? 'met' : 'MISSED'}: ${(agent.peakRssMiB ?? 0).toFixed(0)} MiB)\n`,
    );
    return { name, reference, agent, ratio, withManifest };
  } finally {
    if (opts.keep) process.stdout.write(`kept ${root}\n`);
    else fs.rmSync(root, { recursive: true, force: true });
  }
}

export async function benchAuditFile(opts: AuditFileBenchOptions = {}): Promise<AuditFileBenchCase[]> {
  const s = opts.scale ?? scale();
  return [
    await runCase('~1.4 KB Metadata lines', metadataLines(Math.round(1024 * MiB * s)), opts),
    await runCase('mixed traffic (RequestResponse bodies, lines up to ~1 MB)', auditLines({ seed: 11, approxBytes: Math.round(256 * MiB * s) }), opts),
  ];
}
