/**
 * A file writer that performs the same file-system steps, in the same order, as the Go
 * lumberjack library (gopkg.in/natefinch/lumberjack.v2) that kube-apiserver uses for
 * `--audit-log-path`. It exists so tailer tests, benchmarks and the sample generator meet
 * the real rotation sequence instead of an idealised one.
 *
 * What lumberjack does, and this writer repeats:
 * - Opening (first write): a missing file is created; an existing file is appended to
 *   (O_APPEND) unless `size + len(write) >= max`, in which case it is rotated first. Note the
 *   `>=` here against the `>` used on every later write — a lumberjack quirk kept on purpose.
 * - Every write is one `write(2)` of the whole buffer on a kept fd. A write longer than the
 *   maximum size fails ("write length N exceeds maximum file size M") and writes nothing;
 *   kube-apiserver then loses that event.
 * - Rotation when `size + len > max`: close the fd, `rename(audit.log, audit-<ts>.log)` with
 *   `<ts>` = rotation time in UTC as `2006-01-02T15-04-05.000` (kube-apiserver leaves
 *   LocalTime false), then — a separate step — `open(audit.log, O_CREAT|O_WRONLY|O_TRUNC)` with
 *   the old file's mode. Between the two steps `audit.log` does not exist.
 * - After every rotation (and at the first open) the "mill" runs in the background: backups
 *   beyond MaxBackups (newest kept; a plain and a `.gz` of the same name count once) and older
 *   than MaxAge (by the time in the name) are removed; with Compress every remaining plain
 *   backup is gzipped to `<backup>.gz` (created O_TRUNC with the backup's mode) and only then
 *   the plain backup is removed — so for a moment both exist.
 *
 * Deliberate differences, all in service of deterministic tests:
 * - The mill only runs on its own when `compressDelayMs` is set; otherwise call `mill()`.
 * - Backup names are unique: if the clock has not advanced past the previous rotation (or the
 *   name is taken), the time used for the name is bumped by 1 ms. Lumberjack would overwrite
 *   the older backup instead; set `uniqueBackupNames: false` to get that.
 * - `renameGapMs` and `hooks.afterRename` stretch or pause the window between rename and
 *   create; `compressGapMs` and `hooks.afterCompress` do the same between writing the `.gz`
 *   and removing the plain backup.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import zlib from 'node:zlib';

/** Go layout lumberjack formats the rotation time with. */
export const BACKUP_TIME_LAYOUT = '2006-01-02T15-04-05.000';
export const COMPRESS_SUFFIX = '.gz';

const BACKUP_TIME_RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2})-(\d{2})-(\d{2})\.(\d{3})$/;
const { O_APPEND, O_CREAT, O_TRUNC, O_WRONLY } = fs.constants;

export interface LumberjackHookInfo {
  /** Backup file name (no directory), e.g. `audit-2024-05-01T10-00-00.000.log`. */
  backupName: string;
}

export interface LumberjackHooks {
  /** Runs after the rename and before the new file is created: `audit.log` is absent. */
  afterRename?: (info: LumberjackHookInfo) => void | Promise<void>;
  /** Runs after `<backup>.gz` is complete and before the plain backup is removed. */
  afterCompress?: (info: LumberjackHookInfo & { compressedName: string }) => void | Promise<void>;
}

export interface LumberjackOptions {
  dir: string;
  /** Active file name inside `dir`. Default `audit.log`. */
  filename?: string;
  /** `--audit-log-maxsize` in bytes (lumberjack counts MiB; tests want small files). */
  maxSizeBytes: number;
  /** `--audit-log-maxbackup`; 0 or absent keeps all. */
  maxBackups?: number;
  /** `--audit-log-maxage` in ms (lumberjack counts days); 0 or absent keeps all. */
  maxAgeMs?: number;
  /** `--audit-log-compress`. */
  compress?: boolean;
  /** Time source for backup names and the MaxAge cutoff. Default `new Date()`. */
  clock?: () => Date;
  /**
   * When set, the mill runs by itself this many ms after each rotation (and after the first
   * open), like lumberjack's goroutine; signals arriving while one is pending coalesce.
   * When absent the mill only runs when `mill()` is called.
   */
  compressDelayMs?: number;
  /** Pause between rename and create, so an observer can see `audit.log` missing. */
  renameGapMs?: number;
  /** Pause between writing `<backup>.gz` and removing the plain backup. */
  compressGapMs?: number;
  /** Bump backup times by 1 ms instead of overwriting an existing backup. Default true. */
  uniqueBackupNames?: boolean;
  /**
   * Create the directory (0700) and file (0600) before the first write, as kube-apiserver's
   * ensureLogFile does at startup. Default true. When false lumberjack's own default (0644)
   * applies to a file it creates.
   */
  ensureLogFile?: boolean;
  hooks?: LumberjackHooks;
}

export interface BackupNameParts {
  /** Rotation time encoded in the name. */
  time: Date;
  compressed: boolean;
}

/** `audit.log` → prefix `audit-`, ext `.log`, as lumberjack's prefixAndExt. */
function prefixAndExt(filename: string): { prefix: string; ext: string } {
  const ext = path.extname(filename);
  return { prefix: `${filename.slice(0, filename.length - ext.length)}-`, ext };
}

/** Formats `date` in UTC with lumberjack's backup layout: `2024-05-01T10-00-00.123`. */
export function formatBackupTime(date: Date): string {
  return date.toISOString().slice(0, 23).replaceAll(':', '-');
}

/** The name lumberjack gives `filename` when rotated at `date`: `audit-2024-05-01T10-00-00.123.log`. */
export function backupName(filename: string, date: Date): string {
  const { prefix, ext } = prefixAndExt(filename);
  return `${prefix}${formatBackupTime(date)}${ext}`;
}

/** Parses a backup (or compressed backup) name of `filename`; undefined for any other file. */
export function parseBackupName(filename: string, name: string): BackupNameParts | undefined {
  const { prefix, ext } = prefixAndExt(filename);
  if (!name.startsWith(prefix)) return undefined;
  for (const [suffix, compressed] of [
    [ext, false],
    [ext + COMPRESS_SUFFIX, true],
  ] as const) {
    if (!name.endsWith(suffix)) continue;
    const m = BACKUP_TIME_RE.exec(name.slice(prefix.length, name.length - suffix.length));
    if (!m) continue;
    const [y, mo, d, h, mi, s, ms] = m.slice(1).map(Number) as [number, number, number, number, number, number, number];
    const time = new Date(Date.UTC(y, mo - 1, d, h, mi, s, ms));
    // Go's time.Parse rejects out-of-range fields; Date.UTC would roll them over.
    if (formatBackupTime(time) !== m[0]) continue;
    return { time, compressed };
  }
  return undefined;
}

/** Backups of `filename` in `dir`, oldest first (by the time in the name, then name). */
export function listBackups(dir: string, filename = 'audit.log'): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (err) {
    if (isNotFound(err)) return [];
    throw err;
  }
  return names
    .map((name) => ({ name, parts: parseBackupName(filename, name) }))
    .filter((e): e is { name: string; parts: BackupNameParts } => e.parts !== undefined)
    .sort((a, b) => a.parts.time.getTime() - b.parts.time.getTime() || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((e) => e.name);
}

/**
 * logrotate `copytruncate`: copy the active file to `destName` (default `<filename>.1`), then
 * truncate the active file in place. The writer keeps its fd and its offset. Returns the
 * copy's name.
 */
export async function copyTruncate(dir: string, filename = 'audit.log', destName = `${filename}.1`): Promise<string> {
  const src = path.join(dir, filename);
  await fsp.copyFile(src, path.join(dir, destName));
  await fsp.truncate(src, 0);
  return destName;
}

function isNotFound(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 'ENOENT';
}

async function writeAll(handle: FileHandle, buf: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < buf.length) {
    const { bytesWritten } = await handle.write(buf, offset, buf.length - offset, null);
    offset += bytesWritten;
  }
}

export class LumberjackWriter {
  readonly dir: string;
  readonly filename: string;
  readonly maxSizeBytes: number;
  readonly maxBackups: number;
  readonly maxAgeMs: number;
  readonly compress: boolean;

  #clock: () => Date;
  #compressDelayMs: number | undefined;
  #renameGapMs: number;
  #compressGapMs: number;
  #uniqueBackupNames: boolean;
  #ensureLogFile: boolean;
  #hooks: LumberjackHooks;

  #handle: FileHandle | undefined;
  #sizeBytes = 0;
  #started = false;
  /** Serialises writes, rotations and scenario steps, like lumberjack's mutex. */
  #queue: Promise<unknown> = Promise.resolve();
  #lastBackupMs = Number.NEGATIVE_INFINITY;
  #millTimer: NodeJS.Timeout | undefined;
  #millChain: Promise<void> = Promise.resolve();
  #millErrors: unknown[] = [];
  #rotations = 0;

  constructor(opts: LumberjackOptions) {
    if (!(opts.maxSizeBytes > 0)) throw new RangeError(`maxSizeBytes must be > 0, got ${opts.maxSizeBytes}`);
    this.dir = opts.dir;
    this.filename = opts.filename ?? 'audit.log';
    this.maxSizeBytes = opts.maxSizeBytes;
    this.maxBackups = opts.maxBackups ?? 0;
    this.maxAgeMs = opts.maxAgeMs ?? 0;
    this.compress = opts.compress ?? false;
    this.#clock = opts.clock ?? (() => new Date());
    this.#compressDelayMs = opts.compressDelayMs;
    this.#renameGapMs = opts.renameGapMs ?? 0;
    this.#compressGapMs = opts.compressGapMs ?? 0;
    this.#uniqueBackupNames = opts.uniqueBackupNames ?? true;
    this.#ensureLogFile = opts.ensureLogFile ?? true;
    this.#hooks = opts.hooks ?? {};
  }

  get activePath(): string {
    return path.join(this.dir, this.filename);
  }

  /** Bytes the writer believes the active file holds (it is not told about outside truncation). */
  get sizeBytes(): number {
    return this.#sizeBytes;
  }

  /** Rotations done so far. */
  get rotations(): number {
    return this.#rotations;
  }

  /** Errors the background mill hit (lumberjack drops them; tests may want to look). */
  get millErrors(): readonly unknown[] {
    return this.#millErrors;
  }

  /** Appends `line`, adding `\n` if missing, as one write; rotates first when it would not fit. */
  write(line: string): Promise<void> {
    return this.writeBytes(line.endsWith('\n') ? line : `${line}\n`);
  }

  /** Writes raw bytes (no newline added) with the same rotation rule, e.g. half a line. */
  writeBytes(data: string | Uint8Array): Promise<void> {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    return this.#enqueue(() => this.#write(buf));
  }

  /** Forces a rotation now (lumberjack's Rotate(), e.g. on SIGHUP). */
  rotate(): Promise<void> {
    return this.#enqueue(async () => {
      await this.#start();
      await this.#rotate();
    });
  }

  /** Runs compression and retention now, after any mill already running. Rejects with its first error. */
  mill(): Promise<void> {
    if (this.#millTimer !== undefined) {
      clearTimeout(this.#millTimer);
      this.#millTimer = undefined;
    }
    const run = this.#millChain.then(() => this.#millRunOnce());
    this.#millChain = run.catch(() => {});
    return run;
  }

  /** Resolves once no mill is scheduled or running (a scheduled one is run now). */
  async idle(): Promise<void> {
    for (;;) {
      if (this.#millTimer !== undefined) void this.mill().catch(() => {});
      const chain = this.#millChain;
      await chain;
      await this.#queue.catch(() => {});
      if (chain === this.#millChain && this.#millTimer === undefined) return;
    }
  }

  /** Current backup file names (plain and `.gz`), oldest first. */
  backups(): string[] {
    return listBackups(this.dir, this.filename);
  }

  /**
   * Closes the fd (a later write reopens the file, as lumberjack does) and waits for any
   * pending mill so no background work outlives the writer.
   */
  async close(): Promise<void> {
    await this.#enqueue(() => this.#closeFile());
    await this.idle();
  }

  /**
   * Someone truncates the active file to 0.
   * Default: models a writer holding an O_APPEND fd — its next write lands at offset 0.
   * `keepOffset: true` is what lumberjack really does with an fd from a rotation (opened
   * O_TRUNC, not O_APPEND): the fd keeps its offset, so the next write leaves a hole of NUL
   * bytes before it, and the writer's size counter is not reset.
   */
  truncate(opts: { keepOffset?: boolean } = {}): Promise<void> {
    return this.#enqueue(() => this.#truncate(opts.keepOffset ?? false));
  }

  /** logrotate copytruncate on the active file; see `truncate()` for `keepOffset`. Returns the copy's name. */
  copyTruncate(opts: { destName?: string; keepOffset?: boolean } = {}): Promise<string> {
    const destName = opts.destName ?? `${this.filename}.1`;
    return this.#enqueue(async () => {
      await fsp.copyFile(this.activePath, path.join(this.dir, destName));
      await this.#truncate(opts.keepOffset ?? false);
      return destName;
    });
  }

  /** Deletes a backup (e.g. an operator or a MaxAge sweep racing the tailer). */
  deleteBackup(name: string): Promise<void> {
    return this.#enqueue(() => fsp.unlink(path.join(this.dir, name)));
  }

  #enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  async #start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    if (!this.#ensureLogFile) return;
    await fsp.mkdir(this.dir, { recursive: true, mode: 0o700 });
    const fh = await fsp.open(this.activePath, O_CREAT | O_APPEND | O_WRONLY, 0o600);
    await fh.close();
  }

  async #write(buf: Uint8Array): Promise<void> {
    if (buf.length > this.maxSizeBytes) {
      throw new Error(`write length ${buf.length} exceeds maximum file size ${this.maxSizeBytes}`);
    }
    await this.#start();
    if (this.#handle === undefined) await this.#openExistingOrNew(buf.length);
    if (this.#sizeBytes + buf.length > this.maxSizeBytes) await this.#rotate();
    const handle = this.#handle;
    if (handle === undefined) throw new Error('lumberjack: no open file after open/rotate');
    await writeAll(handle, buf);
    this.#sizeBytes += buf.length;
  }

  async #openExistingOrNew(writeLen: number): Promise<void> {
    this.#signalMill();
    let size: number;
    try {
      size = (await fsp.stat(this.activePath)).size;
    } catch (err) {
      if (isNotFound(err)) return this.#openNew();
      throw err;
    }
    if (size + writeLen >= this.maxSizeBytes) return this.#rotate();
    try {
      this.#handle = await fsp.open(this.activePath, O_APPEND | O_WRONLY, 0o644);
    } catch {
      // Lumberjack ignores a failure to reopen and starts a new file.
      return this.#openNew();
    }
    this.#sizeBytes = size;
  }

  async #rotate(): Promise<void> {
    await this.#closeFile();
    await this.#openNew();
    this.#signalMill();
  }

  async #openNew(): Promise<void> {
    await fsp.mkdir(this.dir, { recursive: true, mode: 0o744 });
    let mode = 0o644;
    let stat: fs.Stats | undefined;
    try {
      stat = await fsp.stat(this.activePath);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    if (stat !== undefined) {
      mode = stat.mode & 0o777;
      const name = this.#nextBackupName();
      await fsp.rename(this.activePath, path.join(this.dir, name));
      this.#rotations++;
      await this.#hooks.afterRename?.({ backupName: name });
      if (this.#renameGapMs > 0) await sleep(this.#renameGapMs);
    }
    // O_TRUNC, not O_APPEND: whatever someone created meanwhile is wiped, as in lumberjack.
    this.#handle = await fsp.open(this.activePath, O_CREAT | O_WRONLY | O_TRUNC, mode);
    this.#sizeBytes = 0;
  }

  #nextBackupName(): string {
    let ms = this.#clock().getTime();
    if (this.#uniqueBackupNames) {
      if (ms <= this.#lastBackupMs) ms = this.#lastBackupMs + 1;
      for (;;) {
        const name = backupName(this.filename, new Date(ms));
        const taken = fs.existsSync(path.join(this.dir, name)) || fs.existsSync(path.join(this.dir, name + COMPRESS_SUFFIX));
        if (!taken) break;
        ms++;
      }
    }
    this.#lastBackupMs = ms;
    return backupName(this.filename, new Date(ms));
  }

  async #closeFile(): Promise<void> {
    const handle = this.#handle;
    this.#handle = undefined;
    await handle?.close();
  }

  async #truncate(keepOffset: boolean): Promise<void> {
    if (keepOffset || this.#handle === undefined) {
      await fsp.truncate(this.activePath, 0);
      if (this.#handle === undefined) this.#sizeBytes = 0;
      return;
    }
    await this.#closeFile();
    await fsp.truncate(this.activePath, 0);
    this.#handle = await fsp.open(this.activePath, O_APPEND | O_WRONLY);
    this.#sizeBytes = 0;
  }

  /** Lumberjack's `mill()`: a buffered-by-one signal to the background goroutine. */
  #signalMill(): void {
    if (this.#compressDelayMs === undefined || this.#millTimer !== undefined) return;
    this.#millTimer = setTimeout(() => {
      this.#millTimer = undefined;
      const run = this.#millChain.then(() => this.#millRunOnce());
      this.#millChain = run.catch((err: unknown) => {
        this.#millErrors.push(err);
      });
    }, this.#compressDelayMs);
  }

  async #millRunOnce(): Promise<void> {
    if (this.maxBackups === 0 && this.maxAgeMs === 0 && !this.compress) return;
    // Newest first, as lumberjack's byFormatTime.
    let files = this.backups().reverse();
    const remove: string[] = [];
    if (this.maxBackups > 0 && this.maxBackups < files.length) {
      const preserved = new Set<string>();
      const remaining: string[] = [];
      for (const name of files) {
        preserved.add(name.endsWith(COMPRESS_SUFFIX) ? name.slice(0, -COMPRESS_SUFFIX.length) : name);
        if (preserved.size > this.maxBackups) remove.push(name);
        else remaining.push(name);
      }
      files = remaining;
    }
    if (this.maxAgeMs > 0) {
      const cutoffMs = this.#clock().getTime() - this.maxAgeMs;
      const remaining: string[] = [];
      for (const name of files) {
        const parts = parseBackupName(this.filename, name);
        if (parts !== undefined && parts.time.getTime() < cutoffMs) remove.push(name);
        else remaining.push(name);
      }
      files = remaining;
    }
    const compress = this.compress ? files.filter((name) => !name.endsWith(COMPRESS_SUFFIX)) : [];

    let firstErr: unknown;
    for (const name of remove) {
      try {
        await fsp.unlink(path.join(this.dir, name));
      } catch (err) {
        firstErr ??= err;
      }
    }
    for (const name of compress) {
      try {
        await this.#compressLogFile(name);
      } catch (err) {
        firstErr ??= err;
      }
    }
    if (firstErr !== undefined) throw firstErr;
  }

  async #compressLogFile(name: string): Promise<void> {
    const src = path.join(this.dir, name);
    const compressedName = name + COMPRESS_SUFFIX;
    const dst = path.join(this.dir, compressedName);
    const stat = await fsp.stat(src);
    try {
      await pipeline(
        fs.createReadStream(src),
        zlib.createGzip(),
        // 'w' is O_CREAT|O_TRUNC|O_WRONLY, as lumberjack opens the .gz.
        fs.createWriteStream(dst, { flags: 'w', mode: stat.mode & 0o777 }),
      );
    } catch (err) {
      await fsp.rm(dst, { force: true });
      throw new Error(`failed to compress log file: ${String(err)}`, { cause: err });
    }
    await this.#hooks.afterCompress?.({ backupName: name, compressedName });
    if (this.#compressGapMs > 0) await sleep(this.#compressGapMs);
    await fsp.unlink(src);
  }
}
