import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { size } from '../../config/units.ts';
import type { OutboundRequest, Output, OutputContext, OutputPlugin, SendOutcome } from '../../plugin.ts';
import { fileWriteProblem } from '../../config/writable.ts';
import { errorMessage } from '../../errors.ts';
import { fileEvent, fileLogEvents } from './telemetry.ts';

/**
 * Appends records as NDJSON to a local file and rolls it by size:
 * `ktrail.ndjson` becomes `ktrail-<UTC timestamp>.ndjson` once it would pass
 * `max_file_bytes`, and only the newest `max_files` rolled files are kept.
 * A request is acknowledged after its bytes are written (and fsynced when
 * `fsync: true`), so a crash can at worst repeat the last request. A failed
 * write is cut back to the last complete request, so its retry never lands
 * after a torn line. A process killed inside a write (SIGKILL, OOM) can leave
 * a torn last line that no one cut: start() cuts the file back to its last
 * newline, since those bytes belong to a request that was never acknowledged
 * and is sent again from the spool.
 */
/**
 * Kernel pseudo-filesystems are no place for an append-only log: a write under
 * /proc or /sys fails or blocks, and a device under /dev may never return.
 * The check is lexical (the resolved path), so it also runs in `ktrail check`
 * on a machine without that path.
 */
const PSEUDO_FS_ROOTS = ['/proc', '/sys', '/dev'];
const ALLOWED_DEVICES = new Set(['/dev/stdout', '/dev/stderr']);

export function pseudoFsProblem(p: string): string | undefined {
  const abs = path.resolve(p);
  if (ALLOWED_DEVICES.has(abs)) return undefined;
  const root = PSEUDO_FS_ROOTS.find((r) => abs === r || abs.startsWith(`${r}/`));
  return root === undefined ? undefined : `${JSON.stringify(p)} is under ${root}, a kernel pseudo-filesystem: a file output cannot append and roll files there`;
}

const outputPath = z
  .string()
  .min(1)
  .superRefine((p, ctx) => {
    const problem = pseudoFsProblem(p);
    if (problem !== undefined) {
      ctx.addIssue({
        code: 'custom',
        message: problem,
        params: { fix: 'write to a regular directory (for example /var/lib/ktrail/out/audit.ndjson), or use /dev/stdout, /dev/stderr or the stdout output' },
        input: p,
      });
    }
  });

const schema = z.strictObject({
  path: outputPath,
  max_file_bytes: size().default(100 * 1024 * 1024),
  max_files: z.number().int().min(0).default(5),
  fsync: z.boolean().default(false),
});
type FileConfig = z.output<typeof schema>;

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Exactly the names `#roll` creates, `<name>-<ISO stamp with - for : and .>[.<n>]<ext>`,
 * so retention never counts or deletes a sibling's files (`audit-important.db`,
 * another output's `audit-x-<stamp>.ndjson`).
 */
export function rolledNamePattern(name: string, ext: string): RegExp {
  return new RegExp(`^${escapeRe(name)}-(\\d{4}-\\d{2}-\\d{2}T\\d{2}-\\d{2}-\\d{2}-\\d{3}Z)(?:\\.(\\d+))?${escapeRe(ext)}$`);
}

class FileOutput implements Output {
  readonly #cfg: FileConfig;
  readonly #ctx: OutputContext;
  #fd: number | undefined;
  #size = 0;
  #out = Buffer.allocUnsafe(1024 * 1024);

  constructor(cfg: FileConfig, ctx: OutputContext) {
    this.#cfg = cfg;
    this.#ctx = ctx;
  }

  async start(): Promise<void> {
    fs.mkdirSync(path.dirname(path.resolve(this.#cfg.path)), { recursive: true });
    const cut = cutTornTail(this.#cfg.path);
    this.#open();
    if (cut > 0) {
      this.#ctx.log.warn({ event: fileEvent.torn_line_cut, path: this.#cfg.path, bytes: cut }, 'file output: cut a torn last line left by an interrupted write; its records are sent again');
    }
  }

  #open(): void {
    this.#fd = fs.openSync(this.#cfg.path, 'a');
    this.#size = fs.fstatSync(this.#fd).size;
  }

  #roll(): void {
    this.#closeFd();
    const { dir, name, ext } = path.parse(path.resolve(this.#cfg.path));
    const pattern = rolledNamePattern(name, ext);
    const listRolled = () => {
      const out: Array<{ file: string; stamp: string; n: number }> = [];
      for (const file of fs.readdirSync(dir)) {
        const m = pattern.exec(file);
        if (m) out.push({ file, stamp: m[1]!, n: m[2] === undefined ? 0 : Number(m[2]) });
      }
      // Oldest first: by stamp, then by the collision counter (".10" after ".9").
      return out.sort((a, b) => (a.stamp < b.stamp ? -1 : a.stamp > b.stamp ? 1 : a.n - b.n));
    };
    let stamp = new Date().toISOString().replace(/[:.]/g, '-');
    // A clock stepped back must not name the newest file as older than the ones before it.
    const newest = listRolled().at(-1);
    if (newest !== undefined && newest.stamp > stamp) stamp = newest.stamp;
    // Within one millisecond the counter goes on from the newest, also after retention deleted
    // the older ones: a reused lower counter would sort as the oldest file.
    let n = newest?.stamp === stamp ? newest.n + 1 : 0;
    const nameFor = (i: number) => path.join(dir, i === 0 ? `${name}-${stamp}${ext}` : `${name}-${stamp}.${i}${ext}`);
    while (fs.existsSync(nameFor(n))) n++;
    const target = nameFor(n);
    fs.renameSync(this.#cfg.path, target);
    const rolled = listRolled();
    for (const old of rolled.slice(0, Math.max(0, rolled.length - this.#cfg.max_files))) fs.rmSync(path.join(dir, old.file), { force: true });
    this.#open();
  }

  #closeFd(): void {
    const fd = this.#fd;
    // Forget the number first: a closed fd number may be reused by an unrelated file.
    this.#fd = undefined;
    if (fd !== undefined) fs.closeSync(fd);
  }

  /**
   * Cut the file back to its size before the failed request (a partial write
   * or an un-fsynced one), so the retry appends whole lines after whole lines.
   * If even that fails, reopen on the next send and take the file as it is.
   */
  #discardPartial(): void {
    if (this.#fd === undefined) return;
    try {
      fs.ftruncateSync(this.#fd, this.#size);
    } catch {
      try {
        this.#closeFd();
      } catch {
        // The fd is unusable either way; the next send opens the file again.
      }
    }
  }

  async send(request: OutboundRequest): Promise<SendOutcome> {
    const buf = this.#encode(request.records);
    try {
      if (this.#fd === undefined) this.#open();
      if (this.#size > 0 && this.#size + buf.length > this.#cfg.max_file_bytes) this.#roll();
      let off = 0;
      while (off < buf.length) off += fs.writeSync(this.#fd!, buf, off);
      if (this.#cfg.fsync) fs.fsyncSync(this.#fd!);
      // Only now is the request whole (and durable when asked): the size to cut back to on a later failure.
      this.#size += buf.length;
      return { kind: 'ok' };
    } catch (err) {
      this.#discardPartial();
      return { kind: 'retryable', code: 'write_failed', detail: `file write failed: ${errorMessage(err)}` };
    }
  }

  /**
   * The request's NDJSON in one reused buffer: writing each record's string
   * into it costs a tenth of concatenating them and converting the result
   * (which flattens a rope of strings, then allocates an external buffer per
   * request that only a GC frees). Valid until the next call: send() writes
   * it before it first awaits, so concurrent sends never share it.
   */
  #encode(records: OutboundRequest['records']): Buffer {
    let o = 0;
    for (const r of records) {
      // A UTF-16 code unit is at most 3 UTF-8 bytes.
      const need = o + r.json.length * 3 + 1;
      if (need > this.#out.length) {
        const bigger = Buffer.allocUnsafe(Math.max(need, this.#out.length * 2));
        this.#out.copy(bigger, 0, 0, o);
        this.#out = bigger;
      }
      o += this.#out.write(r.json, o);
      this.#out[o++] = 0x0a;
    }
    const buf = this.#out.subarray(0, o);
    // Give a buffer grown for one huge request back.
    if (this.#out.length > 16 * 1024 * 1024) this.#out = Buffer.allocUnsafe(1024 * 1024);
    return buf;
  }

  async close(): Promise<void> {
    this.#closeFd();
  }
}

/**
 * Truncate a regular file after its last newline; returns the bytes cut.
 * A missing file, streams and devices (/dev/stdout) are left alone.
 */
export function cutTornTail(file: string): number {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    return 0;
  }
  if (!st.isFile() || st.size === 0) return 0;
  const fd = fs.openSync(file, 'r+');
  try {
    return cutAfterLastNewline(fd, st.size);
  } finally {
    fs.closeSync(fd);
  }
}

function cutAfterLastNewline(fd: number, size: number): number {
  const chunk = Buffer.allocUnsafe(64 * 1024);
  let end = size;
  while (end > 0) {
    const start = Math.max(0, end - chunk.length);
    const n = fs.readSync(fd, chunk, 0, end - start, start);
    const nl = chunk.subarray(0, n).lastIndexOf(0x0a);
    if (nl >= 0) {
      const keep = start + nl + 1;
      if (keep < size) fs.ftruncateSync(fd, keep);
      return size - keep;
    }
    end = start;
  }
  fs.ftruncateSync(fd, 0);
  return size;
}

export const fileOutput: OutputPlugin<typeof schema> = {
  kind: 'output',
  type: 'file',
  description: 'NDJSON appended to a local file, rolled by size.',
  schema,
  logEvents: fileLogEvents,
  delivery: { batch: { flush_interval: 200 } },
  create: (cfg, ctx) => new FileOutput(cfg, ctx),
  inspect: (cfg) => {
    const problem = writeProblem(cfg.path);
    return { warnings: problem === undefined ? [] : [`path: the output cannot write its files: ${problem}`], notes: [] };
  },
  probe: async (cfg) => {
    const problem = writeProblem(cfg.path);
    return [{ target: path.resolve(cfg.path), ok: problem === undefined, detail: problem ?? 'a local file, no connection needed; writable' }];
  },
};

/** Rolling creates new files next to `path`: its directory must be writable too (the standard streams excepted). */
function writeProblem(p: string): string | undefined {
  return ALLOWED_DEVICES.has(path.resolve(p)) ? undefined : fileWriteProblem(p);
}
