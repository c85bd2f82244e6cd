import type { TrackedFile } from './tracker.ts';

/** A `.gz` still without a readable head holds newer files back at most this long after its last write. */
export const PENDING_GZ_WAIT_MS = 10_000;

/** A backup being compressed that the last rescan saw without a readable head yet (tracker.ts `pending`). */
export interface PendingGz {
  orderKey: number;
  mtimeMs: number;
  seenMs: number;
}

export interface Choice {
  /** The file to read now; undefined: nothing to read until something changes. */
  file: TrackedFile | undefined;
  /** The choice waits on what only a rescan can tell: ask for one soon. */
  rescan: boolean;
}

/**
 * Which file of a stream its reader reads next: the oldest file with
 * something to read, else the newest plain file, to tail. Order is the
 * point: newer content is never read while older content of the same stream
 * may still appear (a `.gz` being compressed, a file the last rescan missed).
 * Pure: the stream's files in order, its pending `.gz`, the reader's identity
 * and the time.
 */
export function pickNext(files: readonly TrackedFile[], pending: readonly PendingGz[] | undefined, owner: object, now: number): Choice {
  // Older content still being compressed: nothing named after it starts before it is known.
  let before = Number.POSITIVE_INFINITY;
  // Judged at the scan that saw it headless, not now: after a stall (a slow disk, a paused
  // process) the wait may be over by the clock while the .gz was finished long ago; only a
  // scan tells which, and one is asked for.
  for (const p of pending ?? []) if (p.seenMs - p.mtimeMs < PENDING_GZ_WAIT_MS) before = Math.min(before, p.orderKey);
  if (before !== Number.POSITIVE_INFINITY) {
    // The open file, unless it is a .gz read to its end: returning that one would spin
    // (its end is reached again at once, without any I/O) and starve the scan it waits for.
    const current = files.find((f) => f.openBy === owner && f.attached && f.exhaustedAt < 0 && f.orderKey <= before && (!f.compressed || f.size < 0 || f.offset < f.size));
    return { file: current ?? firstToRead(files.filter((f) => f.orderKey <= before), owner, now), rescan: true };
  }
  // A file the last rescan did not see may be a rotated active file whose
  // new name it missed: finish the open file, but start nothing newer
  // until the next rescan finds it (or proves it gone).
  // A held file gone from two listings is deleted or renamed out of the paths: its place is
  // final, and it is read (through its descriptor) in the order it was first seen.
  if (files.some((f) => f.missingScans > 0 && !(f.unlisted && f.missingScans >= 2) && f.attached && f.openBy === undefined && f.mayHaveMore)) {
    return { file: files.find((f) => f.openBy === owner && f.attached && !f.compressed && f.exhaustedAt < 0), rescan: true };
  }
  const first = firstToRead(files, owner, now);
  if (first) return { file: first, rescan: false };
  // Only the newest file is tailed; an older one is read again when a rescan shows it grew.
  const newest = files[files.length - 1];
  return { file: newest !== undefined && readable(newest, owner, now) && !newest.compressed ? newest : undefined, rescan: false };
}

/** The oldest file with something left to read. */
function firstToRead(files: readonly TrackedFile[], owner: object, now: number): TrackedFile | undefined {
  for (const f of files) {
    if (!readable(f, owner, now)) continue;
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

function readable(f: TrackedFile, owner: object, now: number): boolean {
  return (f.openBy === undefined || f.openBy === owner) && f.attached && f.retryAtMs <= now;
}
