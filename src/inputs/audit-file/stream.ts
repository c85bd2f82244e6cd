import fsp from 'node:fs/promises';
import { errorMessage } from '../../errors.ts';
import type { EmitBatch, InputContext } from '../../plugin.ts';
import { Waker } from '../../waker.ts';
import type { CheckpointStore } from './checkpoints.ts';
import type { AuditFileConfig } from './config.ts';
import type { FileGauges } from './gauges.ts';
import type { HeldFiles } from './held.ts';
import { fingerprintOf, FINGERPRINT_MAX_BYTES, headMatches, readHead } from './identity.ts';
import { lineHandler, newBatch, type Batch } from './lines.ts';
import { pickNext } from './pick.ts';
import { chainStream } from './report.ts';
import { GzipSource, LineSplitter, PlainSource, type FileSource, type LineHandler } from './reader.ts';
import type { TrackedFile, Tracker } from './tracker.ts';
import { auditFileEvent, auditFileMetrics } from './telemetry.ts';

/** Chunks one reader turn may read before the stream's order is looked at again. */
const TURN_CHUNKS = 16;
/** A trailing partial line of a file that stopped changing this long ago is final. */
const SETTLE_MIN_MS = 2000;

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** What a stream reader needs from the input that runs it. */
export interface StreamHost {
  readonly cfg: AuditFileConfig;
  readonly ctx: InputContext;
  readonly tracker: Tracker;
  readonly held: HeldFiles;
  readonly store: CheckpointStore;
  readonly gauges: FileGauges;
  stopped(): boolean;
  /** The directory must be looked at now (a rename, a reused name). */
  wakeScan(): void;
  /** ...or soon (a choice waits on what only a rescan can tell). */
  scanSoon(): void;
  fail(detail: string): void;
}

interface OpenFile {
  file: TrackedFile;
  source: FileSource;
  /** Reads done through this descriptor. */
  reads: number;
}

/**
 * One stream's reader (an active file and its backups): reads the files
 * oldest first, then tails the newest. One emit per read chunk, awaited
 * before reading more, and the file's offset moves only once that emit is
 * committed: a crash loses nothing committed and re-reads nothing committed;
 * a full spool pauses reading.
 */
export class StreamReader {
  readonly waker = new Waker();
  readonly #key: string;
  readonly #h: StreamHost;
  /** Marks the files this reader has open (`TrackedFile.openBy`). */
  readonly #owner = {};
  #open: OpenFile | undefined;

  constructor(key: string, host: StreamHost) {
    this.#key = key;
    this.#h = host;
  }

  async run(): Promise<void> {
    const h = this.#h;
    const splitter = new LineSplitter({
      bufferBytes: h.cfg.read_buffer_size,
      maxLineBytes: h.cfg.max_line_bytes,
      sampleBytes: h.cfg.oversize_sample_bytes,
    });
    let backoffMs = 100;
    try {
      while (!h.stopped()) {
        const files = h.tracker.stream(this.#key).filter((f) => f.attached || f.openBy === this.#owner);
        if (files.length === 0 && !this.#open) return;
        const choice = pickNext(files, h.tracker.pending.get(this.#key), this.#owner, Date.now());
        if (choice.rescan) h.scanSoon();
        const next = choice.file;
        if (!next) {
          await this.#release();
          await this.waker.wait(h.cfg.rescan_interval);
          continue;
        }
        if (this.#open && this.#open.file !== next) await this.#release();
        if (!this.#open) {
          const source = await this.#openSource(next);
          if (!source) {
            await this.waker.wait(h.cfg.rescan_interval);
            continue;
          }
          next.openBy = this.#owner;
          this.#open = { file: next, source, reads: 0 };
          h.ctx.log.debug({ file: next.path, offset: next.offset, size: next.size }, 'reading');
          splitter.reset(next.offset);
        }
        let outcome: 'more' | 'idle';
        try {
          outcome = await this.#turn(this.#open, splitter, files);
          backoffMs = 100;
        } catch (err) {
          const file = this.#open.file;
          await this.#release();
          if (h.stopped()) break;
          this.#readFailed(file, err);
          await this.waker.wait(backoffMs);
          backoffMs = Math.min(backoffMs * 2, 10_000);
          continue;
        }
        if (outcome === 'idle') await this.waker.wait(h.cfg.rescan_interval);
        // Between turns the event loop runs (the rescan, I/O callbacks), even if a turn did no I/O.
        else await yieldToEventLoop();
      }
    } finally {
      await this.#release();
    }
  }

  async #release(): Promise<void> {
    const open = this.#open;
    if (!open) return;
    if (open.file.openBy === this.#owner) open.file.openBy = undefined;
    this.#open = undefined;
    await open.source.close();
    this.#h.held.returned();
  }

  /**
   * A source for `f`, opened by name while its name is known (a name that now
   * holds another file sends the reader back to the rescan, which places the
   * file in the stream's order first). A file gone from two listings is read
   * through the descriptor held since it was first seen.
   */
  async #openSource(f: TrackedFile): Promise<FileSource | undefined> {
    const { held } = this.#h;
    const heldFh = f.unlisted && f.missingScans >= 2 ? held.take(f.inodeKey) : undefined;
    if (heldFh) {
      const source = await this.#sourceFor(f, heldFh);
      if (!source) held.returned();
      return source;
    }
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(f.path, 'r');
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'ENOENT') {
        // Renamed since the last rescan: the next one says where it is.
        this.#h.wakeScan();
        return undefined;
      }
      this.#readFailed(f, err);
      return undefined;
    }
    held.borrowedOpen();
    const source = await this.#sourceFor(f, fh);
    if (!source) held.returned();
    // The reader's own descriptor keeps the file now: the one held since first sight goes.
    else await held.release(f.inodeKey);
    return source;
  }

  async #sourceFor(f: TrackedFile, fh: fsp.FileHandle): Promise<FileSource | undefined> {
    try {
      const st = await fh.stat({ bigint: true });
      if (st.dev.toString() !== f.dev || st.ino.toString() !== f.ino) {
        // The path now names another file (rotation since the last rescan).
        await fh.close();
        this.#h.wakeScan();
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
    f.retryAtMs = Date.now() + Math.max(this.#h.cfg.rescan_interval * 5, 1000);
    this.#h.fail(`cannot read ${f.path}: ${errorMessage(err)}`);
  }

  /**
   * Reads up to TURN_CHUNKS chunks of the open file, one emit per chunk.
   * 'idle' when caught up with the newest file of the stream.
   */
  async #turn(open: OpenFile, splitter: LineSplitter, files: TrackedFile[]): Promise<'more' | 'idle'> {
    const h = this.#h;
    const { source } = open;
    const change = source instanceof PlainSource ? await contentChanged(open.file, source, splitter) : undefined;
    if (change) {
      this.#replaced(open, change);
      return 'more';
    }
    for (let i = 0; i < TURN_CHUNKS && !h.stopped(); i++) {
      open.reads++;
      const f = open.file;
      const batch = newBatch();
      const handler = lineHandler(f, batch, h.ctx.name, h.cfg, h.ctx.log);
      const before = splitter.readPosition;
      const n = await source.fill(splitter, handler);
      if (n === 0) return this.#atEnd(open, splitter, files, batch, handler);
      auditFileMetrics(h.ctx.metrics).bytesRead.inc({ input: h.ctx.name }, splitter.readPosition - before);
      if (splitter.committedOffset !== f.offset) await this.#emit(f, splitter.committedOffset, batch, Math.max(f.size, splitter.readPosition));
    }
    return 'more';
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
    const { ctx, tracker } = this.#h;
    const f = open.file;
    const truncated = change === 'truncated' && (open.reads > 0 || f.offset > 0);
    if (truncated) {
      auditFileMetrics(ctx.metrics).truncations.inc({ input: ctx.name });
      ctx.log.warn({ event: auditFileEvent.truncated, file: f.path, offset: f.offset, size: f.size }, 'file truncated (shorter than the offset, or its first bytes changed); reading it again from offset 0');
    }
    tracker.detach(f, truncated ? 'truncated' : 'deleted');
    this.#h.wakeScan();
  }

  async #atEnd(open: OpenFile, splitter: LineSplitter, files: TrackedFile[], batch: Batch, handler: LineHandler): Promise<'more' | 'idle'> {
    const f = open.file;
    const { source } = open;
    if (source instanceof GzipSource) {
      if (source.shortBy > 0) {
        this.#h.ctx.log.warn({ event: auditFileEvent.gz_short, file: f.path, offset: f.offset, shortBy: source.shortBy }, '.gz is shorter than the checkpoint inside it; nothing left to read');
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
    const stale = Date.now() - st.mtimeMs >= Math.max(SETTLE_MIN_MS, 2 * this.#h.cfg.rescan_interval);
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

  /** Commits the chunk with the file's new offset, then moves the offset in memory. */
  async #emit(f: TrackedFile, offset: number, batch: Batch, size: number): Promise<void> {
    const { ctx, cfg, store } = this.#h;
    const row = f.toRow(Date.now(), { offset, size });
    const emitBatch: EmitBatch = {
      records: batch.records,
      deadLetters: batch.deadLetters.length > 0 ? batch.deadLetters : undefined,
      checkpoint: () => store.advance(row),
      manifest: {
        stream: chainStream(ctx.name, f.streamKey),
        source: { file: { path: f.path, fingerprint: f.fp?.hash ?? null, from: f.offset, to: offset } },
      },
    };
    const { metrics, telemetry } = ctx;
    const input = ctx.name;
    if (batch.records.length > 0) telemetry.received(batch.records.length, offset - f.offset);
    await ctx.emit(emitBatch);
    f.offset = offset;
    f.size = size;
    if (batch.lines > 0) auditFileMetrics(metrics).lines.inc({ input }, batch.lines);
    if (batch.invalid > 0) auditFileMetrics(metrics).invalidLines.inc({ input, action: cfg.on_parse_error }, batch.invalid);
    if (batch.oversize > 0) {
      auditFileMetrics(metrics).oversizeLines.inc({ input, action: cfg.on_oversize }, batch.oversize);
      telemetry.discarded('oversize', cfg.on_oversize === 'dead_letter' ? batch.oversize : 0);
    }
    if (batch.invalid > 0 && cfg.on_parse_error === 'dead_letter') telemetry.discarded('parse_error', batch.invalid);
    this.#h.gauges.setLag(f);
  }
}

/**
 * Whether the open plain file still holds the content its row describes:
 * 'replaced' when its first bytes differ (a new file on the same inode),
 * 'truncated' when it is shorter than what was read.
 */
async function contentChanged(f: TrackedFile, source: PlainSource, splitter: LineSplitter): Promise<'replaced' | 'truncated' | undefined> {
  if (f.fp === undefined) {
    const fp = fingerprintOf(await readHead(source.fh, FINGERPRINT_MAX_BYTES));
    if (fp !== undefined) f.fp = fp;
  } else if (!headMatches(await readHead(source.fh, f.fp.length), f.fp)) {
    return 'replaced';
  }
  const st = await source.fh.stat();
  return st.size < splitter.readPosition ? 'truncated' : undefined;
}
