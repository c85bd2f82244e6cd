import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KubeClient } from '../src/kube/client.ts';
import { KubeApiServer } from '../test/helpers/kube-api-server.ts';
import { header, scale } from './lib.ts';

/**
 * The k8s_events input end to end: the real agent (`bin/ktrail.js run`, a
 * child process) watching the Kubernetes API emulation, committing to its
 * spool and shipping to a file output.
 *
 * - steady: 500 event versions/s (half new events, half count bumps) for a
 *   minute × KTRAIL_BENCH_SCALE;
 * - burst: 5,000 versions/s for 10 s × scale, then how long the agent needs
 *   to catch up.
 *
 * Reported per phase: versions delivered/s, the agent's CPU (% of one core
 * and ms per 1,000 versions), its peak RSS, and the lag between the last
 * write and its delivery. The reference is a bare watch consumer (client
 * only, no spool, no output) in this process reading the same burst: the
 * burst's ratio to it is what the spool, seen-set and output cost.
 */

const BIN = path.join(import.meta.dirname, '..', 'bin', 'ktrail.js');

interface ProcSample {
  cpuMs: number;
  peakRssMiB: number;
}

/** CPU time and peak RSS of a child, from /proc (Linux); zeros elsewhere. */
function sample(pid: number): ProcSample {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const hwm = /VmHWM:\s+(\d+)\s+kB/.exec(status);
    return { cpuMs: (ticks * 1000) / 100, peakRssMiB: hwm ? Number(hwm[1]) / 1024 : 0 };
  } catch {
    return { cpuMs: 0, peakRssMiB: 0 };
  }
}

class Writer {
  readonly #kube: KubeApiServer;
  readonly #names: string[] = [];
  written = 0;
  #seq = 0;

  constructor(kube: KubeApiServer) {
    this.#kube = kube;
  }

  /** One version: a new event, or a count bump of a recent one. */
  one(): void {
    const kube = this.#kube;
    if (this.#seq++ % 2 === 0 || this.#names.length === 0) {
      const name = `web-${this.#seq}`;
      const e = kube.addEvent({
        namespace: `team-${this.#seq % 20}`,
        reason: 'BackOff',
        message: `Back-off restarting failed container app in pod ${name}_default(0b7e3c5e-${this.#seq})`,
        type: 'Warning',
        involvedObject: { kind: 'Pod', namespace: `team-${this.#seq % 20}`, name, apiVersion: 'v1', fieldPath: 'spec.containers{app}' },
        source: { component: 'kubelet', host: `node-${this.#seq % 50}` },
      });
      this.#names.push(`${e.metadata.namespace}/${e.metadata.name}`);
      if (this.#names.length > 1000) this.#names.shift();
    } else {
      const [ns, name] = this.#names[this.#seq % this.#names.length]!.split('/') as [string, string];
      kube.bumpEvent(ns, name);
    }
    this.written++;
  }

  /** Writes `ratePerS` versions per second for `seconds`, in 10 ms ticks. */
  async run(ratePerS: number, seconds: number): Promise<void> {
    const t0 = performance.now();
    const total = Math.round(ratePerS * seconds);
    let done = 0;
    while (done < total) {
      const due = Math.min(total, Math.round(((performance.now() - t0) / 1000) * ratePerS));
      while (done < due) {
        this.one();
        done++;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

/** Counts the lines of a growing file, reading only what was appended since the last call. */
class LineCounter {
  readonly #file: string;
  #offset = 0;
  #lines = 0;
  readonly #buf = Buffer.allocUnsafe(1 << 20);

  constructor(file: string) {
    this.#file = file;
  }

  count(): number {
    let fd: number;
    try {
      fd = fs.openSync(this.#file, 'r');
    } catch {
      return this.#lines;
    }
    try {
      for (;;) {
        const n = fs.readSync(fd, this.#buf, 0, this.#buf.length, this.#offset);
        if (n === 0) break;
        this.#offset += n;
        for (let i = this.#buf.indexOf(10); i !== -1 && i < n; i = this.#buf.indexOf(10, i + 1)) this.#lines++;
      }
    } finally {
      fs.closeSync(fd);
    }
    return this.#lines;
  }
}

async function waitFor(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

function line(name: string, versions: number, wallMs: number, cpuMs: number | undefined, rssMiB: number | undefined, lagMs: number | undefined, ref?: number): string {
  const evs = versions / (wallMs / 1000);
  const cpu = cpuMs !== undefined ? `${((cpuMs / wallMs) * 100).toFixed(0)}% CPU, ${((cpuMs / versions) * 1000).toFixed(0)} ms/1k` : '';
  const rss = rssMiB ? `peak RSS ${rssMiB.toFixed(0)} MiB` : '';
  const lag = lagMs !== undefined ? `lag ${lagMs} ms` : '';
  const ratio = ref !== undefined ? `${(evs / ref).toFixed(2)}×ref` : '';
  return `${name.padEnd(44)} ${Math.round(evs).toString().padStart(9)} ev/s  ${cpu.padStart(22)}  ${rss.padStart(18)}  ${lag.padStart(12)}  ${ratio}\n`;
}

/** Reference: a bare watch consumer reading `versions` new versions. */
async function reference(kube: KubeApiServer, versions: number): Promise<number> {
  const client = new KubeClient({ server: kube.url, tls: {}, auth: { kind: 'none' }, namespace: undefined, source: 'kubeconfig', origin: 'bench' });
  const writer = new Writer(kube);
  const abort = new AbortController();
  const stream = client.watch({ path: '/api/v1/events', query: { watch: 1, resourceVersion: kube.resourceVersion }, signal: abort.signal, maxLifeMs: 600_000 });
  let seen = 0;
  const first = stream.next();
  await kube.waitForWatches(1);
  const t0 = performance.now();
  const writing = writer.run(5000, versions / 5000);
  const r = await first;
  if (!r.done) seen += r.value.events.length;
  for await (const chunk of stream) {
    seen += chunk.events.length;
    if (seen >= versions) break;
  }
  await writing;
  const wallMs = performance.now() - t0;
  abort.abort();
  await client.close();
  return versions / (wallMs / 1000);
}

export async function benchK8sEvents(): Promise<void> {
  const s = scale();
  const steadyS = Math.max(2, 60 * s);
  const burstS = Math.max(1, 10 * s);
  header(`k8s_events: agent process watching the API emulation — ${steadyS.toFixed(0)} s at 500/s, then ${burstS.toFixed(0)} s at 5,000/s`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-bench-events-'));
  const kube = await KubeApiServer.start({ bookmarkIntervalMs: 60_000, watchTimeoutSeconds: 3600 });
  let child: ChildProcess | undefined;
  try {
    const refEvs = await reference(kube, Math.round(5000 * burstS));
    process.stdout.write(line('reference: bare watch consumer (same burst)', Math.round(5000 * burstS), (Math.round(5000 * burstS) / refEvs) * 1000, undefined, undefined, undefined));

    const kubeconfig = path.join(dir, 'kubeconfig');
    fs.writeFileSync(
      kubeconfig,
      `apiVersion: v1\nkind: Config\nclusters: [{ name: emu, cluster: { server: "${kube.url}" } }]\nusers: [{ name: u, user: {} }]\ncontexts: [{ name: emu, context: { cluster: emu, user: u } }]\ncurrent-context: emu\n`,
    );
    const out = path.join(dir, 'events.ndjson');
    const config = path.join(dir, 'ktrail.yaml');
    fs.writeFileSync(
      config,
      [
        'service:',
        `  state_dir: ${path.join(dir, 'state')}`,
        '  metrics: { enabled: false }',
        '  log_level: warn',
        'inputs:',
        '  events:',
        '    type: k8s_events',
        `    kubeconfig: ${kubeconfig}`,
        'outputs:',
        '  file:',
        '    type: file',
        `    path: ${out}`,
        `    max_file_bytes: 4GiB`,
        '',
      ].join('\n'),
    );
    const before = kube.list('events').length;
    const counter = new LineCounter(out);
    const countLines = () => counter.count();
    child = spawn(process.execPath, [BIN, 'run', '-c', config], { stdio: ['ignore', 'ignore', 'inherit'] });
    await kube.waitForWatches(1, 30_000);
    await waitFor(() => countLines() >= before, 30_000);
    const pid = child.pid!;
    const writer = new Writer(kube);

    for (const [name, rate, seconds] of [
      ['steady 500 versions/s', 500, steadyS],
      ['burst 5,000 versions/s', 5000, burstS],
    ] as const) {
      const base = countLines();
      const target = base + Math.round(rate * seconds);
      const cpu0 = sample(pid).cpuMs;
      const t0 = performance.now();
      await writer.run(rate, seconds);
      const wroteMs = performance.now();
      const ok = await waitFor(() => countLines() >= target, 120_000);
      const t1 = performance.now();
      const after = sample(pid);
      const lagMs = Math.round(t1 - wroteMs);
      // Only the burst offers the reference's load; the steady phase is paced by the writer.
      const ref = rate === 5000 ? refEvs : undefined;
      process.stdout.write(line(`agent: ${name}${ok ? '' : ' (INCOMPLETE)'}`, countLines() - base, t1 - t0, after.cpuMs - cpu0, after.peakRssMiB, lagMs, ref));
    }
  } finally {
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child!.once('exit', r));
    }
    await kube.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await benchK8sEvents();
