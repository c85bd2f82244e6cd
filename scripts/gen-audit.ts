/**
 * Writes realistic, deterministic sample kube-apiserver audit logs (default `samples/audit/`).
 *
 *   node scripts/gen-audit.ts [--out DIR] [--bytes N] [--seed N]      (npm run gen:audit)
 *
 * The files go through the lumberjack-faithful writer, so the directory looks like a control
 * plane node's `--audit-log-path` directory: the oldest backup gzipped (`audit-<ts>.log.gz`),
 * three plain backups (`audit-<ts>.log`) and the active `audit.log`. The story behind that mix:
 * the apiserver first ran with `--audit-log-compress`, then was restarted without it.
 *
 * Same options ⇒ same bytes: the event stream is seeded, and the writer's clock is the
 * stageTimestamp of the event being written, so backup names follow the data, not the wall
 * clock. Re-running first deletes `audit.log` and its backups in the output directory (only
 * those files).
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { auditStream, goJsonStringify } from '../test/generators/audit-gen.ts';
import { LumberjackWriter, listBackups } from '../test/generators/lumberjack.ts';

export interface GenerateSampleAuditOptions {
  outDir: string;
  /** Approximate bytes of all events (uncompressed). Default 1.5 MB. */
  approxBytes?: number;
  seed?: number;
}

export interface SampleFile {
  name: string;
  sizeBytes: number;
}

const FILENAME = 'audit.log';
const FILES_WANTED = 5; // 1 compressed + 3 plain backups + the active file

/**
 * The maxSize that makes lumberjack's packing of `sizes` produce exactly FILES_WANTED files
 * with a reasonably full active file. Mirrors lumberjack: rotate when size + len > max.
 */
function chooseMaxSize(sizes: readonly number[], total: number): number {
  const largest = Math.max(...sizes);
  for (let divisor = 4.4; divisor >= 3.6; divisor -= 0.01) {
    const maxSize = Math.ceil(total / divisor);
    if (maxSize <= largest) continue;
    let files = 1;
    let current = 0;
    for (const size of sizes) {
      if (current + size > maxSize) {
        files++;
        current = 0;
      }
      current += size;
    }
    if (files === FILES_WANTED && current >= maxSize / 4) return maxSize;
  }
  throw new Error(`could not size ${total} bytes of events into ${FILES_WANTED} files`);
}

export async function generateSampleAudit(opts: GenerateSampleAuditOptions): Promise<SampleFile[]> {
  const approxBytes = opts.approxBytes ?? 1_500_000;
  const seed = opts.seed ?? 20240501;
  const outDir = opts.outDir;
  fs.mkdirSync(outDir, { recursive: true });
  for (const name of [FILENAME, ...listBackups(outDir, FILENAME)]) fs.rmSync(path.join(outDir, name), { force: true });

  // ~1.5 MB of events is a few hundred requests: raise the rare kinds so each shows up, and
  // cap big lists so one line always fits a file (lumberjack refuses writes above maxSize).
  const events = Array.from(
    auditStream({
      seed,
      approxBytes,
      mix: { bigList: 0.6, exec: 2, secret: 4, configmap: 4, kubectl: 6, error: 3, panic: 0.3 },
      maxLineBytes: Math.floor(approxBytes / 12),
    }),
  );
  const lines = events.map((e) => `${goJsonStringify(e)}\n`);
  const sizes = lines.map((l) => Buffer.byteLength(l));
  const maxSizeBytes = chooseMaxSize(
    sizes,
    sizes.reduce((a, b) => a + b, 0),
  );

  let nowMs = 0;
  const clock = (): Date => new Date(nowMs);
  const compressing = new LumberjackWriter({ dir: outDir, filename: FILENAME, maxSizeBytes, compress: true, clock });
  const plain = new LumberjackWriter({ dir: outDir, filename: FILENAME, maxSizeBytes, clock });
  let writer = compressing;
  for (const [i, line] of lines.entries()) {
    nowMs = Date.parse((events[i] as (typeof events)[number]).stageTimestamp);
    await writer.write(line);
    if (writer === compressing && compressing.rotations === 1) {
      await compressing.mill();
      await compressing.close();
      writer = plain;
    }
  }
  await writer.close();

  return [...listBackups(outDir, FILENAME), FILENAME].map((name) => ({ name, sizeBytes: fs.statSync(path.join(outDir, name)).size }));
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      out: { type: 'string' },
      bytes: { type: 'string' },
      seed: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write('usage: node scripts/gen-audit.ts [--out DIR] [--bytes N] [--seed N]\n');
    return;
  }
  const outDir = path.resolve(values.out ?? path.join(import.meta.dirname, '..', 'samples', 'audit'));
  const approxBytes = values.bytes === undefined ? undefined : Number(values.bytes);
  const seed = values.seed === undefined ? undefined : Number(values.seed);
  if (approxBytes !== undefined && !(Number.isInteger(approxBytes) && approxBytes >= 50_000)) {
    throw new Error(`--bytes must be an integer ≥ 50000, got ${values.bytes}`);
  }
  if (seed !== undefined && !Number.isInteger(seed)) throw new Error(`--seed must be an integer, got ${values.seed}`);
  const files = await generateSampleAudit({ outDir, approxBytes, seed });
  let total = 0;
  for (const f of files) {
    total += f.sizeBytes;
    process.stdout.write(`${String(f.sizeBytes).padStart(9)}  ${f.name}\n`);
  }
  process.stdout.write(`${String(total).padStart(9)}  total in ${outDir}\n`);
}

if (import.meta.main) {
  try {
    await main(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`gen-audit: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
}
