import { randomUUID } from 'node:crypto';
import type { CheckpointRow } from './checkpoints.ts';
import { streamPlace, type Fingerprint } from './identity.ts';

/**
 * Which file is which: the rescan's observations are matched to tracked files
 * (one checkpoint row each). Pure logic, no I/O, so every rotation case is
 * unit-testable.
 *
 * Matching, in order:
 * 1. Same `(dev, inode)` and consistent content (same fingerprint, not
 *    shorter than the offset) → the same file, wherever it now is (a
 *    lumberjack rename keeps the inode). Same inode with other content →
 *    truncated in place or a reused inode: the old row is detached and the
 *    file starts over at 0.
 * 2. A new inode whose fingerprint equals a row whose own inode is gone or
 *    detached → a copy of that file: the `.gz` lumberjack made, a copytruncate
 *    copy, the same file after a reboot changed `dev`. It takes over the row
 *    and its offset (inside the decompressed stream for a `.gz`).
 *    A new inode whose fingerprint equals a row that is still there is a
 *    shadow (the `.gz` being written beside its plain backup): ignored.
 * 3. Anything else is a new file.
 *
 * A row not found is not gone at once: a rename between readdir and stat, or
 * a rotation between rename and create, can hide a file from one look. Only a
 * row missing from two consecutive scans is gone; if it was not read to its
 * end, the unread bytes (last known size − offset) are a gap.
 */

export interface Observation {
  path: string;
  dev: string;
  ino: string;
  /** Bytes on disk (compressed size for `.gz`). */
  size: number;
  mtimeMs: number;
  compressed: boolean;
  /** Undefined while pending (no complete first line and fewer than 256 bytes) or unreadable. */
  fp: Fingerprint | undefined;
  /** The file could be listed but not read (permissions): matched by inode only. */
  unreadable?: boolean;
  /** Decompressed size from the gzip trailer. */
  gzipSize?: number;
  /** Offset just past the last newline, when the scanner was asked for it (skipping to the end). */
  lineEnd?: number;
}

export type GapReason = 'deleted' | 'truncated';

export class TrackedFile {
  readonly id: string;
  path: string;
  dev: string;
  ino: string;
  fp: Fingerprint | undefined;
  /** Just past the last complete line committed (decompressed bytes for `.gz`). */
  offset: number;
  /** Last known size (decompressed for `.gz`; -1 when unknown). */
  size: number;
  compressed: boolean;
  readonly firstSeenMs: number;
  streamKey = '';
  orderKey = Number.POSITIVE_INFINITY;
  isBackup = false;
  mtimeMs = 0;
  missingScans = 0;
  /** Why the row lost its inode, when it did. */
  detachReason: GapReason | undefined;
  /** The inode that held this content before it was replaced; never matched back by fingerprint. */
  detachedFrom: string | undefined;
  /** The stream reader that has this file open. */
  openBy: object | undefined;
  /** Read position at which the reader last found nothing more (only a partial line at most). */
  exhaustedAt = -1;
  /** After a read error the file is not tried again before this time. */
  retryAtMs = 0;
  /** Its name is gone from the listing; it is read to its end through the held descriptor. */
  unlisted = false;
  /** max_open_files was reached when it was first seen: it is tracked by name only. */
  notHeld = false;
  /** Read to its end after its name was gone (deleted or renamed away): it cannot grow any more. */
  finished = false;

  constructor(row: CheckpointRow) {
    this.id = row.fileId;
    this.path = row.path;
    this.dev = row.dev;
    this.ino = row.ino;
    this.fp = row.fingerprint !== undefined && row.fpLen > 0 ? { hash: row.fingerprint, length: row.fpLen } : undefined;
    this.offset = row.offset;
    this.size = row.size;
    this.compressed = row.compressed;
    this.firstSeenMs = row.firstSeenMs;
    this.#place();
  }

  get inodeKey(): string {
    return this.dev === '' ? '' : `${this.dev}:${this.ino}`;
  }

  get attached(): boolean {
    return this.dev !== '';
  }

  /**
   * Whether data may be left to read. A plain backup does not grow (lumberjack
   * closes it before the rename); the active file and a `.gz` of unknown
   * length may have more than last seen.
   */
  get mayHaveMore(): boolean {
    if (this.compressed) return this.size < 0 || this.offset < this.size;
    return !this.isBackup || this.size > this.offset;
  }

  moveTo(path: string): void {
    this.path = path;
    this.#place();
  }

  #place(): void {
    const p = streamPlace(this.path);
    this.streamKey = p.streamKey;
    this.orderKey = p.orderKey;
    this.isBackup = p.isBackup;
  }

  toRow(nowMs: number, overrides: { offset?: number; size?: number } = {}): CheckpointRow {
    return {
      fileId: this.id,
      path: this.path,
      dev: this.dev,
      ino: this.ino,
      fingerprint: this.fp?.hash,
      fpLen: this.fp?.length ?? 0,
      offset: overrides.offset ?? this.offset,
      size: overrides.size ?? this.size,
      compressed: this.compressed,
      firstSeenMs: this.firstSeenMs,
      updatedMs: nowMs,
    };
  }
}

export interface ReconcileOptions {
  nowMs: number;
  /**
   * Rows whose descriptor is still held: readable to their end though their
   * name is gone (deleted or renamed away), so not removed yet.
   */
  held?: (f: TrackedFile) => boolean;
  /** The listing was a consistent snapshot; only such a scan can prove a file gone. Default true. */
  consistent?: boolean;
  /** Files not seen before start at their end (start_at: end on the first start). */
  skipNew: boolean;
  /** Files not seen before whose mtime is older than this are skipped (ignore_older). */
  ignoreOlderThanMs?: number;
}

export interface Removal {
  file: TrackedFile;
  gapBytes: number;
  reason: GapReason;
  /**
   * It went away under the active file's name, never seen as a backup and
   * not read to its end through a descriptor: it may have grown after the
   * last look, so `gapBytes` is a lower bound.
   */
  endUnknown: boolean;
}

export interface Replacement {
  old: TrackedFile;
  /** Where the inode that held it is now. */
  path: string;
}

export interface ReconcileResult {
  /** Rows to persist (new, moved, taken over, detached, size changed). */
  dirty: TrackedFile[];
  removed: Removal[];
  /** Rows that had the active name and were found under another one. */
  rotations: TrackedFile[];
  /** Files whose content was replaced in place (truncation, reused inode). */
  replaced: Replacement[];
  /** Files found for the first time and skipped to their end (start_at / ignore_older). */
  skipped: TrackedFile[];
  /** Files ignored because another tracked file has the same content (a `.gz` being written). */
  shadows: Observation[];
}

const sameFp = (a: Fingerprint | undefined, b: Fingerprint | undefined) =>
  a !== undefined && b !== undefined && a.hash === b.hash && a.length === b.length;

export class Tracker {
  readonly files = new Map<string, TrackedFile>();
  /**
   * Per stream, the places (`orderKey`) of `.gz` backups the last reconcile
   * saw still being written (no readable head yet), with their mtime and the
   * time of that reconcile (the wait for them is judged by scans). Such a
   * file is older content than every backup named after it: newer files wait
   * until it can be matched, so that order holds even when a whole file was
   * written, rotated and compressed between two scans.
   */
  pending = new Map<string, Array<{ orderKey: number; mtimeMs: number; seenMs: number }>>();
  /** Rows changed outside reconcile (detached by a reader), persisted with the next one. */
  #dirty = new Set<TrackedFile>();

  constructor(rows: readonly CheckpointRow[] = []) {
    for (const r of rows) this.files.set(r.fileId, new TrackedFile(r));
  }

  /** Rows of one stream, oldest first: backups by their time, the active file last. */
  stream(key: string): TrackedFile[] {
    const list: TrackedFile[] = [];
    for (const f of this.files.values()) if (f.streamKey === key) list.push(f);
    return list.sort(compareOrder);
  }

  streamKeys(): Set<string> {
    const keys = new Set<string>();
    for (const f of this.files.values()) keys.add(f.streamKey);
    return keys;
  }

  /** A new row for `o` starting at `offset`. */
  create(o: Observation, offset: number, nowMs: number): TrackedFile {
    const f = new TrackedFile({
      fileId: randomUUID(),
      path: o.path,
      dev: o.dev,
      ino: o.ino,
      fingerprint: o.fp?.hash,
      fpLen: o.fp?.length ?? 0,
      offset,
      size: o.compressed ? (o.gzipSize ?? -1) : o.size,
      compressed: o.compressed,
      firstSeenMs: nowMs,
      updatedMs: nowMs,
    });
    f.mtimeMs = o.mtimeMs;
    this.files.set(f.id, f);
    return f;
  }

  /**
   * `f`'s inode no longer holds its content (truncated in place, or the inode
   * was reused by another file): detach it. It keeps its fingerprint and
   * offset, so a copy of the old content (a `.gz`) can still take it over;
   * the inode is matched afresh by the next reconcile.
   */
  detach(f: TrackedFile, reason: GapReason): void {
    f.detachedFrom = f.inodeKey;
    f.dev = '';
    f.ino = '';
    f.detachReason = reason;
    f.openBy = undefined;
    f.missingScans = 0;
    this.#dirty.add(f);
  }

  remove(f: TrackedFile): void {
    this.files.delete(f.id);
  }

  reconcile(observations: readonly Observation[], opts: ReconcileOptions): ReconcileResult {
    const result: ReconcileResult = { dirty: [], removed: [], rotations: [], replaced: [], skipped: [], shadows: [] };
    const dirty = new Set<TrackedFile>(this.#dirty);
    this.#dirty.clear();
    this.pending = new Map();
    const present = new Set<TrackedFile>();
    const byInode = new Map<string, TrackedFile>();
    for (const f of this.files.values()) if (f.attached) byInode.set(f.inodeKey, f);

    const unmatched: Array<{ o: Observation; afterReplace: boolean }> = [];
    for (const o of observations) {
      const key = `${o.dev}:${o.ino}`;
      const f = byInode.get(key);
      if (!f) {
        unmatched.push({ o, afterReplace: false });
        continue;
      }
      if (f.openBy !== undefined || o.unreadable) {
        // The reader checks the file it has open itself; an unreadable file keeps its row.
        present.add(f);
        this.#follow(f, o, result, dirty);
        continue;
      }
      const sameKind = f.compressed === o.compressed;
      const consistent = sameKind && (f.fp === undefined || sameFp(f.fp, o.fp));
      const dataSize = o.compressed ? (o.gzipSize ?? f.size) : o.size;
      if (!consistent || (!o.compressed && dataSize < f.offset)) {
        // Same content, shorter than read: truncated in place. Other first
        // bytes: a new file on a reused inode (the old one was deleted), even
        // under the same name.
        const reason: GapReason = consistent ? 'truncated' : 'deleted';
        this.detach(f, reason);
        dirty.add(f);
        result.replaced.push({ old: f, path: o.path });
        unmatched.push({ o, afterReplace: true });
        continue;
      }
      present.add(f);
      f.unlisted = false;
      this.#follow(f, o, result, dirty);
      if (f.fp === undefined && o.fp !== undefined) {
        f.fp = o.fp;
        dirty.add(f);
      }
      if (dataSize !== f.size) {
        f.size = dataSize;
        dirty.add(f);
      }
      f.mtimeMs = o.mtimeMs;
    }

    // Plain files first: a `.gz` next to its still-present plain backup is a shadow.
    unmatched.sort((a, b) => Number(a.o.compressed) - Number(b.o.compressed));
    for (const { o, afterReplace } of unmatched) {
      if (o.unreadable) continue;
      const key = `${o.dev}:${o.ino}`;
      if (o.fp === undefined) {
        // A `.gz` without a readable head is still being written.
        if (o.compressed) {
          const place = streamPlace(o.path);
          const list = this.pending.get(place.streamKey) ?? [];
          list.push({ orderKey: place.orderKey, mtimeMs: o.mtimeMs, seenMs: opts.nowMs });
          this.pending.set(place.streamKey, list);
          continue;
        }
        const f = this.create(o, 0, opts.nowMs);
        present.add(f);
        dirty.add(f);
        continue;
      }
      let heir: TrackedFile | undefined;
      let shadowed = false;
      for (const f of this.files.values()) {
        if (!sameFp(f.fp, o.fp)) continue;
        if (present.has(f) || f.openBy !== undefined) {
          shadowed = true;
          continue;
        }
        if (f.detachedFrom === key) continue;
        // A plain copy shorter than what was read is not a continuation of it.
        if (!o.compressed && o.size < f.offset) continue;
        if (heir === undefined || f.offset > heir.offset) heir = f;
      }
      if (heir !== undefined) {
        heir.dev = o.dev;
        heir.ino = o.ino;
        heir.compressed = o.compressed;
        heir.size = o.compressed ? (o.gzipSize ?? -1) : o.size;
        heir.mtimeMs = o.mtimeMs;
        heir.detachReason = undefined;
        heir.detachedFrom = undefined;
        heir.exhaustedAt = -1;
        heir.retryAtMs = 0;
        heir.moveTo(o.path);
        present.add(heir);
        dirty.add(heir);
        continue;
      }
      if (shadowed) {
        result.shadows.push(o);
        continue;
      }
      const old = opts.ignoreOlderThanMs !== undefined && o.mtimeMs < opts.ignoreOlderThanMs;
      const skip = !afterReplace && (opts.skipNew || old);
      const endOffset = o.compressed ? (o.gzipSize ?? 0) : (o.lineEnd ?? o.size);
      const f = this.create(o, skip ? endOffset : 0, opts.nowMs);
      if (skip) result.skipped.push(f);
      present.add(f);
      dirty.add(f);
    }

    // Deleting the current entry while iterating a Map is safe.
    for (const f of this.files.values()) {
      if (present.has(f) || f.openBy !== undefined) {
        f.missingScans = 0;
        continue;
      }
      // Two looks that find nothing prove it gone, if the second saw the directory hold still.
      f.missingScans = opts.consistent === false ? Math.max(f.missingScans, 1) : f.missingScans + 1;
      if (f.attached && opts.held?.(f) === true) {
        // Readable to its end through the descriptor: kept until it is let go.
        f.unlisted = true;
        continue;
      }
      if (f.missingScans < 2) continue;
      this.files.delete(f.id);
      dirty.delete(f);
      const gapBytes = f.size >= 0 ? Math.max(0, f.size - f.offset) : 0;
      const reason = f.detachReason ?? 'deleted';
      const endUnknown = reason === 'deleted' && !f.isBackup && !f.compressed && !f.finished;
      result.removed.push({ file: f, gapBytes, reason, endUnknown });
    }
    result.dirty = [...dirty];
    return result;
  }

  #follow(f: TrackedFile, o: Observation, result: ReconcileResult, dirty: Set<TrackedFile>): void {
    if (f.path === o.path) return;
    if (!f.isBackup && !f.compressed) result.rotations.push(f);
    f.moveTo(o.path);
    dirty.add(f);
  }
}

export function compareOrder(a: TrackedFile, b: TrackedFile): number {
  if (a.orderKey !== b.orderKey) return a.orderKey < b.orderKey ? -1 : 1;
  if (a.firstSeenMs !== b.firstSeenMs) return a.firstSeenMs - b.firstSeenMs;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}
