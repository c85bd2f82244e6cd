import type { BigIntStats } from 'node:fs';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import { fingerprintOf, isCompressedName, readGzipHead, readGzipSize, readHead, streamPlace, FINGERPRINT_MAX_BYTES } from './identity.ts';
import type { HeldFiles } from './held.ts';
import type { Observation } from './tracker.ts';

/**
 * Discovery. The periodic rescan — readdir + stat of every configured
 * directory — is the source of truth; chokidar events only make the next
 * rescan (and the readers) come sooner. A directory that does not exist yet is
 * not an error: it is looked for again on every rescan and watched once it
 * appears.
 */

const GLOB_CHARS = /[*?[\]{}]/;
const SNAPSHOT_ROUNDS = 50;

/** Why a `paths` entry cannot be used, or undefined when it is fine. */
export function pathPatternProblem(pattern: string): string | undefined {
  const dir = path.dirname(pattern);
  const base = path.basename(pattern);
  if (base === '' || base === '.' || base === '..') return `"${pattern}" names no file; write e.g. /var/log/kubernetes/audit/audit*.log*`;
  if (GLOB_CHARS.test(dir)) return `wildcards are only allowed in the file name, not in the directory ("${dir}")`;
  if (base.includes('**')) return '"**" is not supported; the directory part must be literal';
  try {
    globToRegExp(base, false);
  } catch (err) {
    return (err as Error).message;
  }
  return undefined;
}

/**
 * A glob as a RegExp: `*` and `?` (not crossing `/` unless `crossSlash`),
 * `**` (any depth, with `crossSlash`), `[abc]`, `[!abc]`, `{a,b}`.
 */
export function globToRegExp(glob: string, crossSlash: boolean): RegExp {
  let re = '';
  let braces = 0;
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*' && crossSlash) {
        // "**/" is zero or more whole directories; a trailing "**" is anything.
        if (glob[i + 2] === '/') {
          re += '(?:.*/)?';
          i += 2;
        } else {
          re += '.*';
          i++;
        }
      } else re += crossSlash ? '[^/]*' : '.*';
    } else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const close = glob.indexOf(']', i + 2);
      if (close === -1) throw new Error(`unclosed "[" in "${glob}"`);
      let body = glob.slice(i + 1, close);
      if (body.startsWith('!')) body = `^${body.slice(1)}`;
      re += `[${body.replace(/\\/g, '\\\\')}]`;
      i = close;
    } else if (c === '{') {
      braces++;
      re += '(?:';
    } else if (c === '}' && braces > 0) {
      braces--;
      re += ')';
    } else if (c === ',' && braces > 0) re += '|';
    else re += c.replace(/[.+^$()|\\/]/g, '\\$&');
  }
  if (braces > 0) throw new Error(`unclosed "{" in "${glob}"`);
  return new RegExp(`^${re}$`);
}

export interface PathPatterns {
  /** Directory → file-name patterns in it. */
  dirs: Map<string, RegExp[]>;
  excluded(file: string): boolean;
}

export function compilePaths(paths: readonly string[], exclude: readonly string[], cwd = process.cwd()): PathPatterns {
  const dirs = new Map<string, RegExp[]>();
  for (const p of paths) {
    const abs = path.resolve(cwd, p);
    const dir = path.dirname(abs);
    const base = path.basename(abs);
    const list = dirs.get(dir) ?? [];
    list.push(globToRegExp(base, false));
    // An exact name follows its rotation: its lumberjack backups are the same stream.
    if (!GLOB_CHARS.test(base)) list.push(backupsOf(base));
    dirs.set(dir, list);
  }
  // A pattern with a "/" is matched against the absolute path, others against the file name.
  const ex = exclude.map((e) => (e.includes('/') ? { full: true, re: globToRegExp(path.resolve(cwd, e), true) } : { full: false, re: globToRegExp(e, false) }));
  return {
    dirs,
    excluded: (file) => ex.some((e) => e.re.test(e.full ? file : path.basename(file))),
  };
}

/**
 * The names lumberjack gives `base`'s backups: `audit.log` → `audit-<UTC
 * time>.log` and `audit-<UTC time>.log.gz` (the time as 2006-01-02T15-04-05.000).
 */
export function backupsOf(base: string): RegExp {
  const ext = path.extname(base);
  const prefix = base.slice(0, base.length - ext.length);
  const esc = (x: string) => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${esc(prefix)}-\\d{4}-\\d{2}-\\d{2}T\\d{2}-\\d{2}-\\d{2}\\.\\d{3}${esc(ext)}(?:\\.gz)?$`);
}

/** The files `paths` cover now (an exact path with its backups), oldest first: what `ktrail check` prints. */
export function coveredFiles(paths: readonly string[], exclude: readonly string[], cwd = process.cwd()): string[] {
  const patterns = compilePaths(paths, exclude, cwd);
  const out: string[] = [];
  for (const [dir, res] of patterns.dirs) {
    let names: string[];
    try {
      names = fs.readdirSync(dir);
    } catch {
      continue;
    }
    for (const n of names.filter((x) => res.some((re) => re.test(x))).sort(byStreamOrder)) {
      const file = path.join(dir, n);
      if (!patterns.excluded(file)) out.push(file);
    }
  }
  return out;
}

export interface ScanResult {
  files: Observation[];
  /**
   * False when the directory kept changing during every attempt: a file may
   * be missing from `files` although it exists.
   */
  consistent: boolean;
  /** Directories that do not exist (yet). */
  missingDirs: string[];
  /** Directories or files that could not be read, other than "does not exist". */
  errors: Array<{ path: string; error: NodeJS.ErrnoException }>;
}

interface CacheEntry {
  /** size, mtime and ctime (ns): an inode reused by another file differs in one of them. */
  stamp: string;
  obs: Pick<Observation, 'fp' | 'gzipSize' | 'lineEnd' | 'unreadable'>;
}

export interface ScannerOptions {
  /** Whether a new-looking file should get `lineEnd` (it may be skipped to its end). */
  wantLineEnd(o: { path: string; mtimeMs: number; compressed: boolean }): boolean;
  /**
   * Where descriptors are held from first sight; without it every file is
   * closed after its look.
   */
  held?: HeldFiles;
  /** Whether the file with this `dev:inode` should be held (default: yes). */
  shouldHold?(key: string): boolean;
}

export class Scanner {
  readonly patterns: PathPatterns;
  readonly #opts: ScannerOptions;
  /** Head reads are cached per inode while size and mtime stay the same. */
  #cache = new Map<string, CacheEntry>();

  /** `from`: a scanner whose head reads this one reuses (the one `prepare` ran). */
  constructor(patterns: PathPatterns, opts: ScannerOptions, from?: Scanner) {
    this.patterns = patterns;
    this.#opts = opts;
    if (from) this.#cache = new Map(from.#cache);
  }

  /**
   * One snapshot of every configured directory. Reading heads takes a while
   * and rotation goes on meanwhile: a listing taken before a rename misses
   * the backup's new name, and `audit.log` looked at before the rename is not
   * the `audit.log` of the end of the scan. So the directory is listed again
   * and again; each round looks at new names and checks (a cheap stat) that
   * every name still is the file it was looked at as. The snapshot is the
   * first round in which nothing changed.
   */
  async scan(): Promise<ScanResult> {
    const result: ScanResult = { files: [], missingDirs: [], errors: [], consistent: true };
    const byInode = new Map<string, Observation>();
    for (const [dir, res] of this.patterns.dirs) {
      const looked = new Map<string, Observation>();
      for (let round = 1; ; round++) {
        let listed: string[];
        try {
          listed = (await fsp.readdir(dir)).filter((n) => res.some((re) => re.test(n)) && !this.patterns.excluded(path.join(dir, n)));
          // Oldest first: they are deleted first, so they are held first when max_open_files binds.
          listed.sort(byStreamOrder);
        } catch (err) {
          const e = err as NodeJS.ErrnoException;
          if (e.code === 'ENOENT' || e.code === 'ENOTDIR') result.missingDirs.push(dir);
          else result.errors.push({ path: dir, error: e });
          looked.clear();
          break;
        }
        const now = new Set(listed);
        let changed = false;
        // A name gone since the last round is a change too: readdir can miss
        // an entry renamed while it runs, so the snapshot is two listings
        // that agree, not one.
        for (const name of looked.keys()) {
          if (now.has(name)) continue;
          looked.delete(name);
          changed = true;
        }
        for (const name of listed) {
          const file = path.join(dir, name);
          const prev = looked.get(name);
          if (prev !== undefined && (await sameFile(file, prev))) continue;
          changed = true;
          const o = await this.#observe(file, result);
          if (o) looked.set(name, o);
          else looked.delete(name);
        }
        if (!changed) break;
        if (round >= SNAPSHOT_ROUNDS) {
          result.consistent = false;
          break;
        }
      }
      for (const o of looked.values()) if (!byInode.has(`${o.dev}:${o.ino}`)) byInode.set(`${o.dev}:${o.ino}`, o);
    }
    result.files = [...byInode.values()];
    for (const key of this.#cache.keys()) if (!byInode.has(key)) this.#cache.delete(key);
    return result;
  }

  async #observe(file: string, result: Pick<ScanResult, 'errors'>): Promise<Observation | undefined> {
    // Identity and head come from the same descriptor: a rotation between a
    // stat and a read by path would pair one file's inode with another's bytes.
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    } catch (err) {
      return this.#unopenable(file, err as NodeJS.ErrnoException, result);
    }
    let kept = false;
    try {
      const st = await fh.stat({ bigint: true });
      if (!st.isFile()) return undefined;
      const base = identityOf(file, st);
      const key = `${base.dev}:${base.ino}`;
      const held = this.#opts.held;
      if (held && !held.has(key) && (this.#opts.shouldHold?.(key) ?? true)) kept = held.hold(key, fh, file);
      const stamp = `${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
      const wantLineEnd = !base.compressed && this.#opts.wantLineEnd(base);
      const cached = this.#cache.get(key);
      if (cached && cached.stamp === stamp && (cached.obs.lineEnd !== undefined || !wantLineEnd)) {
        return { ...base, ...cached.obs };
      }
      const extra: CacheEntry['obs'] = { fp: undefined };
      try {
        if (base.compressed) {
          extra.fp = fingerprintOf(await readGzipHead(fh));
          extra.gzipSize = await readGzipSize(fh, base.size);
        } else {
          extra.fp = fingerprintOf(await readHead(fh, FINGERPRINT_MAX_BYTES));
          if (wantLineEnd) extra.lineEnd = await lastLineEnd(fh, base.size);
        }
        this.#cache.set(key, { stamp, obs: extra });
      } catch (err) {
        // A .gz that is not gzip, or an I/O error: matched by inode only, for now.
        result.errors.push({ path: file, error: err as NodeJS.ErrnoException });
        extra.unreadable = true;
      }
      return { ...base, ...extra };
    } finally {
      if (!kept) await fh.close().catch(() => undefined);
    }
  }

  async #unopenable(file: string, e: NodeJS.ErrnoException, result: Pick<ScanResult, 'errors'>): Promise<Observation | undefined> {
    // Renamed or deleted since the listing: its new name is in the next one.
    if (e.code === 'ENOENT') return undefined;
    result.errors.push({ path: file, error: e });
    try {
      const st = await fsp.stat(file, { bigint: true });
      if (!st.isFile()) return undefined;
      return { ...identityOf(file, st), fp: undefined, unreadable: true };
    } catch {
      return undefined;
    }
  }
}

/**
 * Whether `file` still is the file `o` was observed as. Backup names are
 * never reused, so their inode says it; the active name is reused, and so
 * can its inode be (compressed and deleted backups free theirs), so there the
 * first bytes must match too.
 */
async function sameFile(file: string, o: Observation): Promise<boolean> {
  try {
    if (streamPlace(file).isBackup) {
      const st = await fsp.stat(file, { bigint: true });
      return st.dev.toString() === o.dev && st.ino.toString() === o.ino;
    }
    const fh = await fsp.open(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    try {
      const st = await fh.stat({ bigint: true });
      if (st.dev.toString() !== o.dev || st.ino.toString() !== o.ino) return false;
      if (o.compressed || o.unreadable) return true;
      const fp = fingerprintOf(await readHead(fh, FINGERPRINT_MAX_BYTES));
      return fp === undefined ? o.fp === undefined : o.fp !== undefined && fp.hash === o.fp.hash && fp.length === o.fp.length;
    } finally {
      await fh.close();
    }
  } catch {
    return false;
  }
}

function byStreamOrder(a: string, b: string): number {
  const pa = streamPlace(a);
  const pb = streamPlace(b);
  if (pa.orderKey !== pb.orderKey) return pa.orderKey < pb.orderKey ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Offset just past the last newline in the first `size` bytes (0 if none). */
export async function lastLineEnd(fh: fsp.FileHandle, size: number): Promise<number> {
  const block = Buffer.allocUnsafe(64 * 1024);
  let end = size;
  while (end > 0) {
    const start = Math.max(0, end - block.length);
    const { bytesRead } = await fh.read(block, 0, end - start, start);
    const nl = block.subarray(0, bytesRead).lastIndexOf(0x0a);
    if (nl !== -1) return start + nl + 1;
    end = start;
  }
  return 0;
}

export type HintKind = 'change' | 'structure';

/**
 * chokidar on the configured directories, as hints only. A directory that
 * does not exist yet is added once a rescan finds it.
 */
export class DirWatcher {
  #watcher: FSWatcher | undefined;
  #watched = new Set<string>();
  readonly #onHint: (kind: HintKind) => void;
  readonly #onError: (err: unknown) => void;

  constructor(onHint: (kind: HintKind) => void, onError: (err: unknown) => void) {
    this.#onHint = onHint;
    this.#onError = onError;
  }

  /** Watch `dirs` that exist and are not watched yet. */
  ensure(dirs: readonly string[]): void {
    const fresh = dirs.filter((d) => !this.#watched.has(d));
    if (fresh.length === 0) return;
    try {
      if (!this.#watcher) {
        this.#watcher = watch(fresh, { ignoreInitial: true, depth: 0, persistent: true });
        this.#watcher.on('all', (event) => this.#onHint(event === 'change' ? 'change' : 'structure'));
        this.#watcher.on('error', (err) => this.#onError(err));
      } else {
        this.#watcher.add(fresh);
      }
      for (const d of fresh) this.#watched.add(d);
    } catch (err) {
      this.#onError(err);
    }
  }

  /** A directory vanished: watch it again when it comes back. */
  forget(dir: string): void {
    if (!this.#watched.delete(dir)) return;
    try {
      this.#watcher?.unwatch(dir);
    } catch {
      // Already gone.
    }
  }

  async close(): Promise<void> {
    const w = this.#watcher;
    this.#watcher = undefined;
    this.#watched.clear();
    await w?.close().catch(() => undefined);
  }
}

/** What a stat says about a file: its identity (dev, inode), size, mtime, and whether it is a .gz backup. */
function identityOf(file: string, st: BigIntStats) {
  return {
    path: file,
    dev: st.dev.toString(),
    ino: st.ino.toString(),
    size: Number(st.size),
    mtimeMs: Number(st.mtimeMs),
    compressed: isCompressedName(file),
  };
}
