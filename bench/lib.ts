/**
 * Shared measuring for `npm run bench`. Every case is reported beside a
 * reference measured in the same run on the same machine, so the figure to
 * read is the ratio, not the absolute number.
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface Measurement {
  name: string;
  bytes: number;
  events: number;
  wallMs: number;
  cpuMs: number;
  peakRssMiB?: number;
}

export async function measure(name: string, fn: () => Promise<{ bytes: number; events: number }> | { bytes: number; events: number }): Promise<Measurement> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const { bytes, events } = await fn();
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { name, bytes, events, wallMs, cpuMs: (cpu.user + cpu.system) / 1000, peakRssMiB: process.resourceUsage().maxRSS / 1024 };
}

export const MiB = 1024 * 1024;

/**
 * The V8 flags ktrail ships with: NODE_OPTIONS in manifests/ and the image,
 * and `npm start` (test/deploy/v8-flags.test.ts keeps them equal).
 * Benchmarks run agent children with them.
 */
export const SHIPPED_V8_FLAGS = ['--max-old-space-size=224', '--max-semi-space-size=8'];

/**
 * The environment of a measured child: the compile cache the shipped launcher
 * (bin/ktrail.js) enables, in its default place, so start-up is measured as
 * it runs in the image and under `npm start`, not with every source compiled
 * and type-stripped afresh.
 */
export function childEnv(): NodeJS.ProcessEnv {
  return { ...process.env, NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE || path.join(os.tmpdir(), 'node-compile-cache') };
}

/** KTRAIL_BENCH_SCALE shrinks or grows every case (default 1). */
export function scale(): number {
  const s = Number(process.env.KTRAIL_BENCH_SCALE ?? '1');
  return Number.isFinite(s) && s > 0 ? s : 1;
}

export function row(m: Measurement, reference?: Measurement): string {
  const mibs = m.bytes / MiB / (m.wallMs / 1000);
  const evs = m.events / (m.wallMs / 1000);
  const cpuPerMiB = m.cpuMs / (m.bytes / MiB);
  const ratio = reference ? ` ${(mibs / (reference.bytes / MiB / (reference.wallMs / 1000))).toFixed(2)}×ref` : '';
  const rss = m.peakRssMiB !== undefined ? `${m.peakRssMiB.toFixed(0)} MiB` : '-';
  const cores = m.wallMs > 0 ? m.cpuMs / m.wallMs : 0;
  return `${m.name.padEnd(44)} ${mibs.toFixed(1).padStart(8)} MiB/s ${Math.round(evs).toString().padStart(9)} ev/s ${cpuPerMiB.toFixed(1).padStart(7)} CPU ms/MiB  peak RSS ${rss.padStart(8)}  ${cores.toFixed(2)} cores${ratio}`;
}

export function header(title: string): void {
  process.stdout.write(`\n== ${title}\n`);
}

export function tmpFile(prefix: string): string {
  const dir = fs.mkdtempSync(`/tmp/ktrail-bench-${prefix}-`);
  return dir;
}

/**
 * The URL a bench server child prints once it listens: the first stdout line
 * starting with `{`, as `{"url": ...}`. Rejects if the child exits first.
 */
export function childUrl(proc: ChildProcess, what: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) resolve((JSON.parse(line) as { url: string }).url);
    });
    proc.once('exit', (code) => reject(new Error(`${what} exited with ${code}`)));
  });
}
