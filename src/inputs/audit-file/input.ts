import fsp from 'node:fs/promises';
import { errorMessage } from '../../errors.ts';
import { LogRecord } from '../../pipeline/record.ts';
import type { EmitBatch, EmitGap, HealthReport, Input, InputContext, InputDeadLetter } from '../../plugin.ts';
import { CHECKPOINT_MIGRATIONS, CheckpointStore, type CheckpointRow, type GapRecord } from './checkpoints.ts';
import { contentId, fingerprintOf, FINGERPRINT_MAX_BYTES, headMatches, readGzipHead, readHead, streamPlace } from './identity.ts';
import { isBlank, parseAuditLine, sniffOversize } from './parse.ts';
import { GzipSource, LineSplitter, PlainSource, type FileSource, type LineHandler, type OversizeLine } from './reader.ts';
import { HeldFiles } from './held.ts';
import { compilePaths, DirWatcher, Scanner, type ScanResult } from './scan.ts';
import { Tracker, type ReconcileResult, type TrackedFile } from './tracker.ts';
import { Waker } from '../../waker.ts';

/**
 * The audit_file input at run time: a rescan loop that keeps the tracker in
 * step with the directory, and one reader per stream (the active file and its
 * backups) that reads the stream's files oldest first.
 *
 * Invariants:
 * - A file's offset moves only in the checkpoint callback of the emit that
 *   stores the records read up to it (one emit per read chunk), and the reader
 *   awaits that emit before reading more: a crash loses nothing committed and
 *   re-reads nothing committed; a full spool pauses reading.
 * - Offsets are always just past a complete line.
 * - Every line is a record, a dead letter, or (blank lines only) skipped;
 *   every file that vanished unread is a counted, logged gap.
 */

export interface AuditFileConfig {
  paths: string[];
  exclude: string[];
  start_at: 'beginning' | 'end';
  ignore_older?: number;
  rescan_interval: number;
  max_line_bytes: number;
  on_oversize: 'dead_letter' | 'truncate';
  oversize_sample_bytes: number;
  on_parse_error: 'dead_letter' | 'pass_raw';
  read_buffer_size: number;
  max_open_files: number;
}

/**
 * What `prepare` (run before anything else starts) hands to the input: the
 * scanner whose first scan already opened, and holds, every matching file.
 */
export interface PreparedFiles {
  scanner: Scanner;
  held: HeldFiles;
  /** That first scan: the input's first look at the files (a file deleted since is read through its descriptor). */
  scan?: ScanResult;
}

/** The first thing `ktrail run` does: open every file the paths match, and hold it. */
export async function openAuditFiles(cfg: Pick<AuditFileConfig, 'paths' | 'exclude' | 'max_open_files'>): Promise<PreparedFiles & { scan: ScanResult }> {
  const held = new HeldFiles(cfg.max_open_files);
  const scanner = new Scanner(compilePaths(cfg.paths, cfg.exclude), { wantLineEnd: () => false, held });
  const scan = await scanner.scan();
  return { scanner, held, scan };
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Chunks one reader turn may read before the stream's order is looked at again. */
const TURN_CHUNKS = 16;
/** A trailing partial line of a file that stopped changing this long ago is final. */
const SETTLE_MIN_MS = 2000;
/** Consecutive failures (directory or file unreadable) before health() reports them. */
const UNHEALTHY_AFTER = 3;
/** A `.gz` still without a readable head holds newer files back at most this long after its last write. */
const PENDING_GZ_WAIT_MS = 10_000;
/** Hint-driven rescans are at least this far apart. */
const HINT_RESCAN_GAP_MS = 50;

interface Batch {
  records: LogRecord[];
  deadLetters: InputDeadLetter[];
  lines: number;
  invalid: number;
  oversize: number;
}

interface OpenFile {
  file: TrackedFile;
  source: FileSource;
  /** Reads done through this descriptor. */
  reads: number;
}

export class AuditFileInput implements Input {
  readonly #cfg: AuditFileConfig;
  readonly #ctx: InputContext;
  readonly #name: string;
  #store!: CheckpointStore;
  #tracker!: Tracker;
  #scanner!: Scanner;
  #held!: HeldFiles;
  #earlyScan: ScanResult | undefined;
  /** The checkpoint rows at start: what the stream was when ktrail last ran. */
  #loadedRows: CheckpointRow[] = [];
  #watcher: DirWatcher | undefined;
  #firstRun = false;
  #initialScanDone = false;
  #stopped = false;
  #started = false;
  #scanLoop: Promise<void> | undefined;
  readonly #scanWaker = new Waker();
  readonly #readers = new Map<string, { waker: Waker; done: Promise<void> }>();
  #failures = 0;
  #lastFailure: string | undefined;
  #lastHintScanMs = 0;
  #reportedMissingDirs = new Set<string>();
  #lagLabels = new Map<string, string>();

  constructor(cfg: AuditFileConfig, ctx: InputContext) {
    this.#cfg = cfg;
    this.#ctx = ctx;
    this.#name = ctx.name;
  }

  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    this.#ctx.state.migrate('audit_file', CHECKPOINT_MIGRATIONS);
    this.#store = new CheckpointStore(this.#ctx.state.db, this.#name);
    const rows = this.#store.load();
    this.#loadedRows = rows;
    this.#tracker = new Tracker(rows);
    this.#firstRun = this.#store.firstStartMs() === undefined && rows.length === 0;
    const ignoreOlder = this.#cfg.ignore_older;
    const prepared = this.#ctx.prepared as PreparedFiles | undefined;
    this.#held = prepared?.held ?? new HeldFiles(this.#cfg.max_open_files);
    // start_at: end on a first run needs line ends the early scan did not look for; the files it
    // skips to their end are not read anyway, so a fresh scan loses nothing there.
    if (!(this.#firstRun && this.#cfg.start_at === 'end')) this.#earlyScan = prepared?.scan;
    this.#scanner = new Scanner(prepared?.scanner.patterns ?? compilePaths(this.#cfg.paths, this.#cfg.exclude), {
      wantLineEnd: (o) =>
        !o.compressed &&
        ((this.#firstRun && !this.#initialScanDone && this.#cfg.start_at === 'end') ||
          (ignoreOlder !== undefined && o.mtimeMs < Date.now() - ignoreOlder)),
      held: this.#held,
      shouldHold: (key) => {
        const f = this.#byInode(key);
        return f === undefined || (f.openBy === undefined && (f.mayHaveMore || !f.isBackup));
      },
    }, prepared?.scanner);
    this.#watcher = new DirWatcher(
      (kind) => this.#onHint(kind),
      (err) => this.#ctx.log.debug({ err: errorMessage(err) }, 'file watcher error (rescans continue)'),
    );
    this.#ctx.log.info(
      { paths: this.#cfg.paths, exclude: this.#cfg.exclude, trackedFiles: rows.length, firstRun: this.#firstRun },
      'audit_file input started',
    );
    this.#scanLoop = this.#runScans();
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#scanWaker.wake();
    for (const r of this.#readers.values()) r.waker.wake();
    clearTimeout(this.#soon);
    await this.#scanLoop;
    await Promise.all([...this.#readers.values()].map((r) => r.done));
    await this.#watcher?.close();
    await this.#held?.closeAll();
  }

  health(): HealthReport {
    if (this.#failures >= UNHEALTHY_AFTER) return { ok: false, detail: this.#lastFailure ?? 'failing' };
    return { ok: true };
  }

  #onHint(kind: 'change' | 'structure'): void {
    for (const r of this.#readers.values()) r.waker.wake();
    if (kind === 'structure') this.#scanWaker.wake();
  }

  // ---- discovery -------------------------------------------------------

  async #runScans(): Promise<void> {
    while (!this.#stopped) {
      try {
        await this.#scanOnce();
      } catch (err) {
        this.#fail(`rescan failed: ${errorMessage(err)}`);
      }
      if (this.#stopped) break;
      await this.#scanWaker.wait(this.#cfg.rescan_interval);
      // Let a burst of hints (rename, create, write) settle into one rescan.
      const gap = this.#lastHintScanMs + HINT_RESCAN_GAP_MS - Date.now();
      if (gap > 0 && !this.#stopped) await new Promise((r) => setTimeout(r, gap));
      this.#lastHintScanMs = Date.now();
    }
  }

  async #scanOnce(): Promise<void> {
    // The first look is the scan that opened the files at start: a file it saw and held, deleted
    // while the rest of ktrail started, is tracked from it and read through its descriptor. The
    // next scan follows at once.
    const early = this.#earlyScan;
    this.#earlyScan = undefined;
    if (early) this.#scanWaker.wake();
    const scan = early ?? (await this.#scanner.scan());
    if (this.#stopped) return;
    this.#noteScanProblems(scan);
    const existingDirs = [...this.#scanner.patterns.dirs.keys()].filter((d) => !scan.missingDirs.includes(d));
    this.#watcher?.ensure(existingDirs);
    for (const d of scan.missingDirs) this.#watcher?.forget(d);
    // Unreadable directories prove nothing about their files: skip this round.
    if (scan.errors.some((e) => this.#scanner.patterns.dirs.has(e.path))) return;

    const nowMs = Date.now();
    const initial = !this.#initialScanDone;
    const result = this.#tracker.reconcile(scan.files, {
      nowMs,
      held: (f) => this.#held.has(f.inodeKey),
      consistent: scan.consistent,
      skipNew: this.#firstRun && initial && this.#cfg.start_at === 'end',
      ignoreOlderThanMs: this.#cfg.ignore_older !== undefined ? nowMs - this.#cfg.ignore_older : undefined,
    });
    this.#initialScanDone = true;
    this.#report(result);
    const unseen = initial ? await this.#unseenRotations() : [];
    await this.#persist(result, initial && this.#firstRun, unseen);
    await this.#trimHeld();
    this.#updateGauges();
    this.#ensureReaders();
    // A file missing from this look is found again (or proven gone) by the next one, soon.
    if ([...this.#tracker.files.values()].some((f) => f.missingScans > 0)) this.#scanSoon();
  }

  #scanSoon(): void {
    if (this.#soon !== undefined || this.#stopped) return;
    this.#soon = setTimeout(() => {
      this.#soon = undefined;
      this.#scanWaker.wake();
    }, Math.min(this.#cfg.rescan_interval, 100));
  }

  #soon: NodeJS.Timeout | undefined;

  #noteScanProblems(scan: ScanResult): void {
    for (const d of scan.missingDirs) {
      if (this.#reportedMissingDirs.has(d)) continue;
      this.#reportedMissingDirs.add(d);
      this.#ctx.log.info({ dir: d }, 'audit log directory does not exist (yet); looking again on every rescan');
    }
    for (const d of this.#reportedMissingDirs) if (!scan.missingDirs.includes(d)) this.#reportedMissingDirs.delete(d);
    if (scan.errors.length === 0) {
      // An unreadable file is among the errors too, so a clean rescan means the input is fine again.
      if (this.#failures > 0) this.#recover();
      return;
    }
    const first = scan.errors[0]!;
    this.#fail(`cannot read ${first.path}: ${first.error.code ?? first.error.message}`);
  }

  #fail(detail: string): void {
    this.#failures++;
    this.#ctx.telemetry.error('read_error');
    if (detail !== this.#lastFailure || this.#failures === UNHEALTHY_AFTER) {
      this.#ctx.log.error({ failures: this.#failures }, detail);
    }
    this.#lastFailure = detail;
  }

  #recover(): void {
    this.#ctx.log.info({ after: this.#failures }, 'audit_file input recovered');
    this.#failures = 0;
    this.#lastFailure = undefined;
  }

  #report(r: ReconcileResult): void {
    const { metrics, log } = this.#ctx;
    for (const f of r.rotations) {
      metrics.auditRotations.inc({ input: this.#name });
      log.debug({ file: f.path }, 'rotation: active file renamed');
    }
    for (const { old, path } of r.replaced) {
      if (old.detachReason === 'truncated') {
        metrics.auditTruncations.inc({ input: this.#name });
        log.warn({ file: path, offset: old.offset, size: old.size }, 'file truncated (shorter than the offset, or its first bytes changed); reading it again from offset 0');
      } else {
        log.debug({ file: path, previous: old.path }, 'inode reused by another file');
      }
    }
    for (const f of r.skipped) log.info({ file: f.path, offset: f.offset }, 'file seen for the first time skipped to its end (start_at: end / ignore_older)');
    for (const { file, gapBytes, reason, endUnknown } of r.removed) {
      this.#dropLag(file);
      if (gapBytes <= 0 && !endUnknown) continue;
      metrics.auditGapBytes.inc({ input: this.#name, reason }, gapBytes);
      metrics.auditGapFiles.inc({ input: this.#name, reason });
      log.warn(
        { file: file.path, lostBytes: gapBytes, atLeast: endUnknown || undefined, offset: file.offset, size: file.size, reason, notHeld: file.notHeld || undefined },
        reason === 'truncated'
          ? `gap: ${file.path} was truncated before it was read to the end; ${gapBytes} bytes lost`
          : endUnknown
            ? `gap: ${file.path} was rotated away and deleted before ktrail saw it again; at least ${gapBytes} bytes lost (its final size is unknown)`
            : `gap: ${file.path} left the configured paths (deleted, or renamed out of them) before it was read to the end; ${gapBytes} bytes lost`,
      );
    }
  }

  async #persist(r: ReconcileResult, markStart: boolean, unseen: GapRecord[] = []): Promise<void> {
    if (r.dirty.length === 0 && r.removed.length === 0 && !markStart && unseen.length === 0) return;
    const nowMs = Date.now();
    const rows: CheckpointRow[] = r.dirty.map((f) => f.toRow(nowMs));
    const removed = r.removed.map((x) => x.file.id);
    const gaps: GapRecord[] = [
      ...r.removed.filter((x) => x.gapBytes > 0 || x.endUnknown).map((x) => ({ reason: x.reason, file: x.file.path, files: 1, bytes: x.endUnknown ? undefined : x.gapBytes })),
      ...unseen,
    ];
    const streamGaps: EmitGap[] = [
      ...r.removed
        .filter((x) => x.gapBytes > 0 || x.endUnknown)
        .map((x) => ({
          stream: this.#stream(x.file.streamKey),
          reason: x.reason,
          files: 1,
          bytes: x.endUnknown ? undefined : x.gapBytes,
          detail: `${x.file.path} (fingerprint ${x.file.fp?.hash ?? 'unknown'}): bytes from ${x.file.offset} to ${x.endUnknown ? 'its unknown end' : x.file.size} never read (${x.reason})`,
        })),
      ...unseen.map((g) => ({
        stream: this.#stream(g.file ?? ''),
        reason: g.reason,
        files: g.files,
        fromMs: g.fromMs,
        toMs: g.toMs,
        detail: `about ${g.files} file(s) of ${g.file ?? '?'} rotated away unread between ${new Date(g.fromMs ?? 0).toISOString()} and ${new Date(g.toMs ?? 0).toISOString()}`,
      })),
    ];
    await this.#ctx.emit({
      records: [],
      manifest: streamGaps.length > 0 ? { gaps: streamGaps } : undefined,
      checkpoint: () => {
        if (markStart) this.#store.markStarted(nowMs);
        for (const row of rows) this.#store.upsertFile(row);
        for (const id of removed) this.#store.remove(id);
        for (const g of gaps) this.#store.recordGap(g, nowMs);
      },
    });
  }

  /**
   * Gaps no file on disk can show: comparing the stream as checkpointed with
   * what the first scan found. When none of a stream's checkpointed files is
   * on disk any more, everything between the last checkpoint of that stream
   * and the first record of the oldest file present was rotated away while
   * ktrail was not reading. Its time span is known (the checkpoint time, and
   * the timestamp of that first record); the number of files is estimated
   * from the rotation interval of the backups present (lumberjack names them
   * by rotation time). The checkpointed files themselves are also reported,
   * with their unread bytes, when they are proven gone.
   */
  async #unseenRotations(): Promise<GapRecord[]> {
    const out: GapRecord[] = [];
    const byStream = new Map<string, CheckpointRow[]>();
    for (const r of this.#loadedRows) {
      const key = streamPlace(r.path).streamKey;
      byStream.set(key, [...(byStream.get(key) ?? []), r]);
    }
    for (const [key, loaded] of byStream) {
      const ids = new Set(loaded.map((r) => r.fileId));
      const files = this.#tracker.stream(key);
      if (files.some((f) => ids.has(f.id) && f.attached && f.missingScans === 0)) continue; // the chain continues
      const present = files.filter((f) => !ids.has(f.id) && f.attached && f.missingScans === 0);
      const oldest = present[0];
      if (!oldest) continue;
      const fromMs = Math.max(...loaded.map((r) => r.updatedMs));
      const toMs = await this.#firstRecordMs(oldest);
      if (toMs === undefined || toMs <= fromMs) continue;
      const times = present.filter((f) => f.isBackup).map((f) => f.orderKey);
      const intervals = times.slice(1).map((t, i) => t - times[i]!).filter((d) => d > 0).sort((a, b) => a - b);
      const interval = intervals.length > 0 ? intervals[Math.floor(intervals.length / 2)]! : undefined;
      const estimate = interval !== undefined ? Math.max(1, Math.round((toMs - fromMs) / interval)) : 1;
      const { metrics, log } = this.#ctx;
      metrics.auditGapFiles.inc({ input: this.#name, reason: 'rotated_unseen' }, estimate);
      metrics.auditGapSeconds.inc({ input: this.#name }, (toMs - fromMs) / 1000);
      log.warn(
        { stream: key, from: new Date(fromMs).toISOString(), to: new Date(toMs).toISOString(), estimatedFiles: estimate, oldestPresent: oldest.path },
        `gap: audit log of ${key} from ${new Date(fromMs).toISOString()} to ${new Date(toMs).toISOString()} was rotated away while ktrail was not reading it (about ${estimate} file(s)); reading resumes at ${oldest.path}`,
      );
      out.push({ reason: 'rotated_unseen', file: key, fromMs, toMs, files: estimate });
    }
    return out;
  }

  /** The time of the first record in `f` (requestReceivedTimestamp, else stageTimestamp), if it can be read. */
  async #firstRecordMs(f: TrackedFile): Promise<number | undefined> {
    // Through the descriptor held since the first scan: the oldest backup may be deleted by now.
    const held = this.#held.peek(f.inodeKey);
    const fh = held ?? (await fsp.open(f.path, 'r').catch(() => undefined));
    if (!fh) return undefined;
    try {
      const head = f.compressed ? await readGzipHead(fh, 64 * 1024) : await readHead(fh, 64 * 1024);
      const nl = head.indexOf(0x0a);
      const doc = JSON.parse(head.toString('utf8', 0, nl === -1 ? head.length : nl)) as { requestReceivedTimestamp?: string; stageTimestamp?: string };
      const t = Date.parse(doc.requestReceivedTimestamp ?? doc.stageTimestamp ?? '');
      return Number.isFinite(t) ? t : undefined;
    } catch {
      return undefined;
    } finally {
      if (fh !== held) await fh.close().catch(() => undefined);
    }
  }

  #byInode(key: string): TrackedFile | undefined {
    for (const f of this.#tracker.files.values()) if (f.inodeKey === key) return f;
    return undefined;
  }

  /**
   * Keep a descriptor only while its file may still have something to read
   * and no reader has it open: backups read to their end, shadows (a `.gz`
   * being written beside its plain backup) and untracked files are let go.
   * A file with data left that could not be held is said once.
   */
  async #trimHeld(): Promise<void> {
    const byKey = new Map<string, TrackedFile>();
    for (const f of this.#tracker.files.values()) if (f.attached) byKey.set(f.inodeKey, f);
    for (const key of this.#held.keys()) {
      const f = byKey.get(key);
      if (f === undefined || f.openBy !== undefined || !(f.mayHaveMore || !f.isBackup)) await this.#held.release(key);
    }
    for (const key of this.#held.refused) {
      this.#held.refused.delete(key);
      const f = byKey.get(key);
      if (f === undefined || f.notHeld || f.openBy !== undefined || !f.mayHaveMore) continue;
      f.notHeld = true;
      this.#ctx.metrics.auditFilesNotHeld.inc({ input: this.#name });
      this.#ctx.log.warn(
        { file: f.path, maxOpenFiles: this.#held.max, open: this.#held.open },
        'max_open_files reached: this file is tracked by name only; if it is deleted before it is read, its unread part is a gap',
      );
    }
    this.#ctx.metrics.auditOpenFiles.set({ input: this.#name }, this.#held.open);
  }

  #updateGauges(): void {
    const { metrics } = this.#ctx;
    let tracked = 0;
    for (const f of this.#tracker.files.values()) {
      if (!f.attached) continue;
      tracked++;
      this.#setLag(f);
    }
    metrics.auditFilesTracked.set({ input: this.#name }, tracked);
  }

  #setLag(f: TrackedFile): void {
    const prev = this.#lagLabels.get(f.id);
    if (prev !== undefined && prev !== f.path) this.#ctx.metrics.auditLagBytes.remove({ input: this.#name, file: prev });
    this.#lagLabels.set(f.id, f.path);
    this.#ctx.metrics.auditLagBytes.set({ input: this.#name, file: f.path }, f.size >= 0 ? Math.max(0, f.size - f.offset) : 0);
  }

  #dropLag(f: TrackedFile): void {
    const prev = this.#lagLabels.get(f.id);
    if (prev === undefined) return;
    this.#lagLabels.delete(f.id);
    this.#ctx.metrics.auditLagBytes.remove({ input: this.#name, file: prev });
  }

  #ensureReaders(): void {
    if (this.#stopped) return;
    for (const key of this.#tracker.streamKeys()) {
      const existing = this.#readers.get(key);
      if (existing) {
        existing.waker.wake();
        continue;
      }
      const waker = new Waker();
      const entry = { waker, done: Promise.resolve() };
      this.#readers.set(key, entry);
      entry.done = this.#runStream(key, waker).finally(() => {
        if (this.#readers.get(key) === entry) this.#readers.delete(key);
      });
    }
  }

  // ---- reading ---------------------------------------------------------

  /** Reads one stream's files, oldest first, then tails the newest. */
  async #runStream(key: string, waker: Waker): Promise<void> {
    const owner = {};
    const splitter = new LineSplitter({
      bufferBytes: this.#cfg.read_buffer_size,
      maxLineBytes: this.#cfg.max_line_bytes,
      sampleBytes: this.#cfg.oversize_sample_bytes,
    });
    let open: OpenFile | undefined;
    const release = async () => {
      if (!open) return;
      if (open.file.openBy === owner) open.file.openBy = undefined;
      const src = open.source;
      open = undefined;
      await src.close();
      this.#held.returned();
    };
    let backoffMs = 100;
    try {
      while (!this.#stopped) {
        const files = this.#tracker.stream(key).filter((f) => f.attached || f.openBy === owner);
        if (files.length === 0 && !open) return;
        const next = this.#pick(files, owner, key);
        if (!next) {
          await release();
          await waker.wait(this.#cfg.rescan_interval);
          continue;
        }
        if (open && open.file !== next) await release();
        if (!open) {
          const source = await this.#open(next);
          if (!source) {
            await waker.wait(this.#cfg.rescan_interval);
            continue;
          }
          next.openBy = owner;
          open = { file: next, source, reads: 0 };
          this.#ctx.log.debug({ file: next.path, offset: next.offset, size: next.size }, 'reading');
          splitter.reset(next.offset);
        }
        let outcome: 'more' | 'idle';
        try {
          outcome = await this.#turn(open, splitter, files);
          backoffMs = 100;
        } catch (err) {
          const file = open.file;
          await release();
          if (this.#stopped) break;
          this.#readFailed(file, err);
          await waker.wait(backoffMs);
          backoffMs = Math.min(backoffMs * 2, 10_000);
          continue;
        }
        if (outcome === 'idle') await waker.wait(this.#cfg.rescan_interval);
        // Between turns the event loop runs (the rescan, I/O callbacks), even if a turn did no I/O.
        else await yieldToEventLoop();
      }
    } finally {
      await release();
    }
  }

  /** The oldest file with something to read; else the newest plain file, to tail. */
  #pick(files: TrackedFile[], owner: object, key: string): TrackedFile | undefined {
    const now = Date.now();
    // Older content still being compressed: nothing named after it starts before it is known.
    let before = Number.POSITIVE_INFINITY;
    // Judged at the scan that saw it headless, not now: after a stall (a slow disk, a paused
    // process) the wait may be over by the clock while the .gz was finished long ago; only a
    // scan tells which, and one is asked for below.
    for (const p of this.#tracker.pending.get(key) ?? []) if (p.seenMs - p.mtimeMs < PENDING_GZ_WAIT_MS) before = Math.min(before, p.orderKey);
    if (before !== Number.POSITIVE_INFINITY) {
      this.#scanSoon();
      // The open file, unless it is a .gz read to its end: returning that one would spin
      // (its end is reached again at once, without any I/O) and starve the scan it waits for.
      const current = files.find((f) => f.openBy === owner && f.attached && f.exhaustedAt < 0 && f.orderKey <= before && (!f.compressed || f.size < 0 || f.offset < f.size));
      if (current) return current;
      return this.#firstToRead(files.filter((f) => f.orderKey <= before), owner, now);
    }
    // A file the last rescan did not see may be a rotated active file whose
    // new name it missed: finish the open file, but start nothing newer
    // until the next rescan finds it (or proves it gone).
    // A held file gone from two listings is deleted or renamed out of the paths: its place is
    // final, and it is read (through its descriptor) in the order it was first seen.
    if (files.some((f) => f.missingScans > 0 && !(f.unlisted && f.missingScans >= 2) && f.attached && f.openBy === undefined && f.mayHaveMore)) {
      this.#scanSoon();
      const current = files.find((f) => f.openBy === owner && f.attached && !f.compressed && f.exhaustedAt < 0);
      return current;
    }
    const first = this.#firstToRead(files, owner, now);
    if (first) return first;
    // Only the newest file is tailed; an older one is read again when a rescan shows it grew.
    const newest = files[files.length - 1];
    return newest !== undefined && this.#readable(newest, owner, now) && !newest.compressed ? newest : undefined;
  }

  /** The oldest file with something left to read. */
  #firstToRead(files: TrackedFile[], owner: object, now: number): TrackedFile | undefined {
    for (const f of files) {
      if (!this.#readable(f, owner, now)) continue;
      if (f.compressed) {
        if (f.size < 0 || f.offset < f.size) return f;
        continue;
      }
      // The open file is finished first: its size as last seen may be stale.
      if (f.openBy === owner && f.exhaustedAt < 0) return f;
      if (f.size > Math.max(f.offset, f.exhaustedAt)) return f;
    }
    return undefined;
  }

  #readable(f: TrackedFile, owner: object, now: number): boolean {
    return (f.openBy === undefined || f.openBy === owner) && f.attached && f.retryAtMs <= now;
  }

  /**
   * A source for `f`, opened by name while its name is known (a name that now
   * holds another file sends the reader back to the rescan, which places the
   * file in the stream's order first). A file gone from two listings is read
   * through the descriptor held since it was first seen.
   */
  async #open(f: TrackedFile): Promise<FileSource | undefined> {
    const heldFh = f.unlisted && f.missingScans >= 2 ? this.#held.take(f.inodeKey) : undefined;
    if (heldFh) {
      const source = await this.#sourceFor(f, heldFh);
      if (!source) this.#held.returned();
      return source;
    }
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(f.path, 'r');
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'ENOENT') {
        // Renamed since the last rescan: the next one says where it is.
        this.#scanWaker.wake();
        return undefined;
      }
      this.#readFailed(f, err);
      return undefined;
    }
    this.#held.borrowedOpen();
    const source = await this.#sourceFor(f, fh);
    if (!source) this.#held.returned();
    // The reader's own descriptor keeps the file now: the one held since first sight goes.
    else await this.#held.release(f.inodeKey);
    return source;
  }

  async #sourceFor(f: TrackedFile, fh: fsp.FileHandle): Promise<FileSource | undefined> {
    try {
      const st = await fh.stat({ bigint: true });
      if (st.dev.toString() !== f.dev || st.ino.toString() !== f.ino) {
        // The path now names another file (rotation since the last rescan).
        await fh.close();
        this.#scanWaker.wake();
        return undefined;
      }
      if (!f.compressed) return new PlainSource(fh);
      if (f.size >= 0 && f.offset >= f.size) {
        await fh.close();
        return undefined;
      }
      return new GzipSource(fh, f.offset);
    } catch (err) {
      await fh.close().catch(() => undefined);
      this.#readFailed(f, err);
      return undefined;
    }
  }

  #readFailed(f: TrackedFile, err: unknown): void {
    // Not retried in a tight loop: the stream goes on with its other files meanwhile.
    f.retryAtMs = Date.now() + Math.max(this.#cfg.rescan_interval * 5, 1000);
    this.#fail(`cannot read ${f.path}: ${errorMessage(err)}`);
  }

  /**
   * Reads up to TURN_CHUNKS chunks of the open file, one emit per chunk.
   * 'idle' when caught up with the newest file of the stream.
   */
  async #turn(open: OpenFile, splitter: LineSplitter, files: TrackedFile[]): Promise<'more' | 'idle'> {
    const { source } = open;
    const change = source instanceof PlainSource ? await this.#contentChanged(open.file, source, splitter) : undefined;
    if (change) {
      this.#replaced(open, change);
      return 'more';
    }
    for (let i = 0; i < TURN_CHUNKS && !this.#stopped; i++) {
      open.reads++;
      const f = open.file;
      const batch: Batch = { records: [], deadLetters: [], lines: 0, invalid: 0, oversize: 0 };
      const handler = this.#handler(f, batch);
      const before = splitter.readPosition;
      const n = await source.fill(splitter, handler);
      if (n === 0) return this.#atEnd(open, splitter, files, batch, handler);
      this.#ctx.metrics.auditBytesRead.inc({ input: this.#name }, splitter.readPosition - before);
      if (splitter.committedOffset !== f.offset) await this.#emit(f, splitter.committedOffset, batch, Math.max(f.size, splitter.readPosition));
    }
    return 'more';
  }

  /**
   * Whether the open plain file still holds the content its row describes:
   * 'replaced' when its first bytes differ (a new file on the same inode),
   * 'truncated' when it is shorter than what was read.
   */
  async #contentChanged(f: TrackedFile, source: PlainSource, splitter: LineSplitter): Promise<'replaced' | 'truncated' | undefined> {
    if (f.fp === undefined) {
      const fp = fingerprintOf(await readHead(source.fh, FINGERPRINT_MAX_BYTES));
      if (fp !== undefined) f.fp = fp;
    } else if (!headMatches(await readHead(source.fh, f.fp.length), f.fp)) {
      return 'replaced';
    }
    const st = await source.fh.stat();
    return st.size < splitter.readPosition ? 'truncated' : undefined;
  }

  /**
   * The open file's inode no longer holds the row's content: shorter than
   * what was read from it, it was truncated in place; with other first bytes
   * it is a new file on a reused inode (the old one was deleted), not a
   * truncation. Either way the row is detached and the rescan, which sees the
   * whole directory at once, decides what the inode is now, so that newer
   * content is never read before older backups it has not listed yet.
   */
  #replaced(open: OpenFile, change: 'replaced' | 'truncated'): void {
    const f = open.file;
    const truncated = change === 'truncated' && (open.reads > 0 || f.offset > 0);
    if (truncated) {
      this.#ctx.metrics.auditTruncations.inc({ input: this.#name });
      this.#ctx.log.warn({ file: f.path, offset: f.offset, size: f.size }, 'file truncated (shorter than the offset, or its first bytes changed); reading it again from offset 0');
    }
    this.#tracker.detach(f, truncated ? 'truncated' : 'deleted');
    this.#scanWaker.wake();
  }

  async #atEnd(open: OpenFile, splitter: LineSplitter, files: TrackedFile[], batch: Batch, handler: LineHandler): Promise<'more' | 'idle'> {
    const f = open.file;
    const { source } = open;
    if (source instanceof GzipSource) {
      if (source.shortBy > 0) {
        this.#ctx.log.warn({ file: f.path, offset: f.offset, shortBy: source.shortBy }, '.gz is shorter than the checkpoint inside it; nothing left to read');
      }
      splitter.flushPartial(handler);
      const end = Math.max(splitter.committedOffset, f.offset);
      await this.#emit(f, end, batch, end);
      return 'more';
    }
    const st = await (source as PlainSource).fh.stat();
    if (st.size < splitter.readPosition) return 'more'; // truncated: the next turn restarts it
    f.mtimeMs = st.mtimeMs;
    if ((st.nlink === 0 || f.unlisted) && splitter.readPosition >= st.size) f.finished = true;
    const newest = files[files.length - 1];
    const final = st.nlink === 0 || (newest !== undefined && newest !== f && f.isBackup);
    const stale = Date.now() - st.mtimeMs >= Math.max(SETTLE_MIN_MS, 2 * this.#cfg.rescan_interval);
    if (splitter.pendingBytes > 0 && final && stale) {
      // A backup that ends without a newline will never get one.
      splitter.flushPartial(handler);
    }
    if (splitter.committedOffset !== f.offset || f.size !== st.size) {
      await this.#emit(f, splitter.committedOffset, batch, st.size);
    }
    if (newest === f || newest === undefined) return 'idle';
    if (splitter.pendingBytes > 0 && !stale) return 'idle'; // wait for the line to complete (or settle)
    f.exhaustedAt = splitter.readPosition;
    return 'more';
  }

  /** The completeness chain's stream of a file lineage: the input and the active file's path. */
  #stream(streamKey: string): string {
    return `${this.#name}:${streamKey}`;
  }

  async #emit(f: TrackedFile, offset: number, batch: Batch, size: number): Promise<void> {
    const nowMs = Date.now();
    const row = f.toRow(nowMs, { offset, size });
    const emitBatch: EmitBatch = {
      records: batch.records,
      deadLetters: batch.deadLetters.length > 0 ? batch.deadLetters : undefined,
      checkpoint: () => this.#store.advance(row),
      manifest: {
        stream: this.#stream(f.streamKey),
        source: { file: { path: f.path, fingerprint: f.fp?.hash ?? null, from: f.offset, to: offset } },
      },
    };
    const { metrics, telemetry } = this.#ctx;
    const input = this.#name;
    if (batch.records.length > 0) telemetry.received(batch.records.length, offset - f.offset);
    await this.#ctx.emit(emitBatch);
    f.offset = offset;
    f.size = size;
    if (batch.lines > 0) metrics.auditLines.inc({ input }, batch.lines);
    if (batch.invalid > 0) metrics.auditInvalidLines.inc({ input, action: this.#cfg.on_parse_error }, batch.invalid);
    if (batch.oversize > 0) {
      metrics.auditOversizeLines.inc({ input, action: this.#cfg.on_oversize }, batch.oversize);
      telemetry.discarded('oversize', this.#cfg.on_oversize === 'dead_letter' ? batch.oversize : 0);
    }
    if (batch.invalid > 0 && this.#cfg.on_parse_error === 'dead_letter') telemetry.discarded('parse_error', batch.invalid);
    this.#setLag(f);
  }

  #handler(f: TrackedFile, batch: Batch): LineHandler {
    const input = this.#name;
    const cfg = this.#cfg;
    const nowMs = Date.now();
    const fileRef = () => (f.fp ? contentId(f.fp) : f.id);
    return {
      line: (buf, start, end, offset) => {
        batch.lines++;
        if (offset === 0 && f.fp === undefined) {
          f.fp = fingerprintOf(buf.subarray(start, Math.min(end + 1, buf.length, start + FINGERPRINT_MAX_BYTES)));
        }
        let e = end;
        if (e > start && buf[e - 1] === 0x0d) e--;
        const text = buf.toString('utf8', start, e);
        if (isBlank(text)) return;
        const p = parseAuditLine(text, nowMs);
        if (p.ok) {
          batch.records.push(new LogRecord({ id: p.id, timeMs: p.timeMs, input, raw: text, doc: p.doc }));
          return;
        }
        batch.invalid++;
        const id = `${fileRef()}:${offset}`;
        if (cfg.on_parse_error === 'pass_raw') {
          // Marked unparsed: redact decides whether it may leave as it is.
          const doc = { message: text, ktrail_parse_error: p.error };
          batch.records.push(new LogRecord({ id, timeMs: nowMs, input, raw: JSON.stringify(doc), doc, unparsed: { text, partial: false } }));
        } else {
          // The bytes as read (binary junk included), not the decoded text.
          batch.deadLetters.push({
            code: 'parse_error',
            reason: `parse_error: ${p.error} (${f.path} offset ${offset})`,
            data: Buffer.from(buf.subarray(start, e)),
            recordId: id,
            source: { file: f.path, offset, length: end - start },
          });
        }
      },
      oversize: (o: OversizeLine) => {
        batch.lines++;
        batch.oversize++;
        if (o.offset === 0 && f.fp === undefined) f.fp = fingerprintOf(o.head);
        const head = o.head.toString('utf8');
        const sniffed = sniffOversize(head, o.tail.toString('utf8'));
        const id = sniffed.id ?? `${fileRef()}:${o.offset}`;
        const reason = `oversize: line of ${o.bytes} bytes exceeds max_line_bytes ${cfg.max_line_bytes} (${f.path} offset ${o.offset}); data holds its first ${o.head.length} bytes`;
        if (cfg.on_oversize === 'truncate') {
          const doc = {
            message: head,
            ktrail_truncated: { original_bytes: o.bytes, kept_bytes: o.head.length, max_line_bytes: cfg.max_line_bytes },
            ...(sniffed.id !== undefined ? { auditID: sniffed.id.slice(0, sniffed.id.lastIndexOf(':')), stage: sniffed.id.slice(sniffed.id.lastIndexOf(':') + 1) } : {}),
          };
          batch.records.push(new LogRecord({ id, timeMs: sniffed.timeMs ?? nowMs, input, raw: JSON.stringify(doc), doc, unparsed: { text: head, partial: true } }));
          this.#ctx.log.warn({ file: f.path, offset: o.offset, bytes: o.bytes, maxLineBytes: cfg.max_line_bytes, action: cfg.on_oversize, id }, 'oversize audit line');
        } else {
          // Logged (rate-limited) with every other dead letter by the pipeline.
          batch.deadLetters.push({ code: 'oversize', reason, data: o.head, partial: true, recordId: id, source: { file: f.path, offset: o.offset, length: o.bytes } });
        }
      },
    };
  }
}

