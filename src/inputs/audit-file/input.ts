import { errorMessage } from '../../errors.ts';
import type { HealthReport, Input, InputContext } from '../../plugin.ts';
import { Waker } from '../../waker.ts';
import { CHECKPOINT_MIGRATIONS, CheckpointStore, type CheckpointRow, type GapRecord } from './checkpoints.ts';
import type { AuditFileConfig } from './config.ts';
import type { PreparedFiles } from './early.ts';
import { FileGauges } from './gauges.ts';
import { HeldFiles } from './held.ts';
import { chainGaps, removedGaps, reportReconcile, unseenRotations } from './report.ts';
import { compilePaths, DirWatcher, Scanner, type ScanResult } from './scan.ts';
import { StreamReader, type StreamHost } from './stream.ts';
import { Tracker, type ReconcileResult, type TrackedFile } from './tracker.ts';
import { auditFileEvent, auditFileMetrics } from './telemetry.ts';

/**
 * The audit_file input at run time: a rescan loop that keeps the tracker in
 * step with the directory, and one reader per stream (the active file and its
 * backups, stream.ts) that reads the stream's files oldest first.
 *
 * Where each concern lives:
 * - which file is which across renames, copies and truncation: tracker.ts;
 * - listing the directories and holding descriptors: scan.ts, held.ts;
 * - which file a stream reads next: pick.ts; reading it: stream.ts, reader.ts;
 * - a line becoming a record or a dead letter: lines.ts, parse.ts;
 * - rotations and gaps reported: report.ts; checkpoints stored: checkpoints.ts.
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

/** Consecutive failures (directory or file unreadable) before health() reports them. */
const UNHEALTHY_AFTER = 3;
/** Hint-driven rescans are at least this far apart. */
const HINT_RESCAN_GAP_MS = 50;

export class AuditFileInput implements Input {
  readonly #cfg: AuditFileConfig;
  readonly #ctx: InputContext;
  readonly #name: string;
  readonly #gauges: FileGauges;
  #store!: CheckpointStore;
  #tracker!: Tracker;
  #held!: HeldFiles;
  /** What the stream readers share with the input (set at start). */
  #host!: StreamHost;
  #scanner!: Scanner;
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
  readonly #readers = new Map<string, { reader: StreamReader; done: Promise<void> }>();
  #failures = 0;
  #lastFailure: string | undefined;
  #lastHintScanMs = 0;
  #reportedMissingDirs = new Set<string>();
  #soon: NodeJS.Timeout | undefined;

  constructor(cfg: AuditFileConfig, ctx: InputContext) {
    this.#cfg = cfg;
    this.#ctx = ctx;
    this.#name = ctx.name;
    this.#gauges = new FileGauges(ctx.metrics, ctx.name);
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
    this.#host = {
      cfg: this.#cfg,
      ctx: this.#ctx,
      tracker: this.#tracker,
      held: this.#held,
      store: this.#store,
      gauges: this.#gauges,
      stopped: () => this.#stopped,
      wakeScan: () => this.#scanWaker.wake(),
      scanSoon: () => this.#scanSoon(),
      fail: (detail) => this.#fail(detail),
    };
    this.#scanLoop = this.#runScans();
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#scanWaker.wake();
    for (const r of this.#readers.values()) r.reader.waker.wake();
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
    for (const r of this.#readers.values()) r.reader.waker.wake();
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
    reportReconcile(result, this.#ctx, this.#name, this.#gauges);
    const unseen = initial ? await unseenRotations(this.#loadedRows, this.#tracker, this.#held, this.#ctx, this.#name) : [];
    await this.#persist(result, initial && this.#firstRun, unseen);
    await this.#trimHeld();
    this.#gauges.update(this.#tracker.files.values());
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

  #noteScanProblems(scan: ScanResult): void {
    for (const d of scan.missingDirs) {
      if (this.#reportedMissingDirs.has(d)) continue;
      this.#reportedMissingDirs.add(d);
      this.#ctx.log.info({ event: auditFileEvent.dir_missing, dir: d }, 'audit log directory does not exist (yet); looking again on every rescan');
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
      this.#ctx.log.error({ event: auditFileEvent.read_error, failures: this.#failures }, detail);
    }
    this.#lastFailure = detail;
  }

  #recover(): void {
    this.#ctx.log.info({ event: auditFileEvent.recovered, after: this.#failures }, 'audit_file input recovered');
    this.#failures = 0;
    this.#lastFailure = undefined;
  }

  async #persist(r: ReconcileResult, markStart: boolean, unseen: GapRecord[] = []): Promise<void> {
    if (r.dirty.length === 0 && r.removed.length === 0 && !markStart && unseen.length === 0) return;
    const nowMs = Date.now();
    const rows: CheckpointRow[] = r.dirty.map((f) => f.toRow(nowMs));
    const removed = r.removed.map((x) => x.file.id);
    const gaps: GapRecord[] = [...removedGaps(r), ...unseen];
    const streamGaps = chainGaps(this.#name, r, unseen);
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
      auditFileMetrics(this.#ctx.metrics).filesNotHeld.inc({ input: this.#name });
      this.#ctx.log.warn(
        { event: auditFileEvent.not_held, file: f.path, maxOpenFiles: this.#held.max, open: this.#held.open },
        'max_open_files reached: this file is tracked by name only; if it is deleted before it is read, its unread part is a gap',
      );
    }
    this.#gauges.openFiles(this.#held.open);
  }

  #ensureReaders(): void {
    if (this.#stopped) return;
    for (const key of this.#tracker.streamKeys()) {
      const existing = this.#readers.get(key);
      if (existing) {
        existing.reader.waker.wake();
        continue;
      }
      const reader = new StreamReader(key, this.#host);
      const entry = { reader, done: Promise.resolve() };
      this.#readers.set(key, entry);
      entry.done = reader.run().finally(() => {
        if (this.#readers.get(key) === entry) this.#readers.delete(key);
      });
    }
  }
}
