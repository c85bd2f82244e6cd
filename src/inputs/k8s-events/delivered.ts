import type { Database, Statement } from 'better-sqlite3';
import type { CursorMirror, EventsState } from './state.ts';

/**
 * The delivered cursor: what a leader mirrors into its Lease.
 *
 * Committed is not delivered. A commit puts records into the spool; until
 * every output has acknowledged them they exist only in this instance's
 * state dir. A Lease that claimed the committed cursor would send a new
 * leader with an empty state dir past versions that then exist nowhere.
 *
 * So each commit leaves a snapshot — the committed mirror (cursors plus the
 * seen entries the cursors do not cover) and the id of the newest spool batch
 * at commit time. A snapshot becomes the delivered mirror once no batch of
 * this input with an id at or below that one is left in the spool: the spool
 * deletes a batch only when every output it routes to has acknowledged it, so
 * everything committed up to the snapshot is then acknowledged by all.
 *
 * Invariants:
 * - The delivered mirror never claims a version that is still only in the
 *   spool: a new leader resuming from it re-emits at most what was not yet
 *   delivered (as the same ids) and never skips.
 * - It moves only forward, and only when outputs acknowledge.
 * - Memory is bounded: at most MAX_SNAPSHOTS snapshots are kept; beyond that
 *   intermediate ones are dropped, which only makes the mirror advance in
 *   coarser steps (more re-emitted on a takeover, never less delivered).
 */

/** Snapshots kept while outputs lag; with 2 s commits that covers minutes of lag at full resolution. */
export const MAX_SNAPSHOTS = 64;

/**
 * Bound on the serialized mirror. The Lease's annotations together may hold
 * 256 KiB; the mirror stays well below that. Past the bound the oldest
 * uncovered seen entries are left out: a new leader re-emits those versions
 * (as the same ids), it never skips one.
 */
export const MIRROR_MAX_BYTES = 128 * 1024;

interface Snapshot {
  lastBatchId: number;
  mirror: CursorMirror;
}

export function emptyMirror(nowMs: number): CursorMirror {
  return { v: 1, cursors: {}, seen: {}, at: nowMs };
}

export class DeliveredMirror {
  readonly #input: string;
  readonly #state: EventsState;
  readonly #s: { oldest: Statement; lastBatchId: Statement };
  #delivered: CursorMirror;
  #snapshots: Snapshot[] = [];

  /**
   * `found`: the mirror in the Lease as this leader found it (already adopted
   * into `state`). If this input still has batches in the spool, the local
   * committed state is not delivered yet: the Lease's mirror (delivered by
   * whoever wrote it) stands until they are acknowledged.
   */
  constructor(db: Database, input: string, state: EventsState, found: CursorMirror | undefined, nowMs = Date.now()) {
    this.#input = input;
    this.#state = state;
    this.#s = {
      oldest: db.prepare('SELECT id FROM spool_batches WHERE input = ? ORDER BY id LIMIT 1').pluck(),
      lastBatchId: db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'spool_batches'").pluck(),
    };
    if (this.#oldestPending() === undefined) {
      this.#delivered = state.mirror(nowMs);
    } else {
      this.#delivered = found ?? emptyMirror(nowMs);
      this.#snapshots.push({ lastBatchId: this.lastBatchId(), mirror: state.mirror(nowMs) });
    }
  }

  /** The newest spool batch id; call inside the commit transaction, after the batch was stored. */
  lastBatchId(): number {
    return (this.#s.lastBatchId.get() as number | undefined) ?? 0;
  }

  /** After a commit whose transaction saw `lastBatchId`: its state is delivered once that batch and all before are. */
  committed(lastBatchId: number, nowMs = Date.now()): void {
    const snap = { lastBatchId, mirror: this.#state.mirror(nowMs) };
    const last = this.#snapshots.at(-1);
    // Same batch (nothing stored, e.g. only cursors moved): the newer state replaces the older.
    if (last !== undefined && last.lastBatchId === lastBatchId) this.#snapshots[this.#snapshots.length - 1] = snap;
    else this.#snapshots.push(snap);
    if (this.#snapshots.length > MAX_SNAPSHOTS) {
      // Thin out: keep the oldest and newest, drop every other one in between.
      this.#snapshots = this.#snapshots.filter((_, i, a) => i === 0 || i === a.length - 1 || i % 2 === 0);
    }
    this.#advance();
  }

  /** The delivered mirror now (moves forward as outputs acknowledge). */
  current(): CursorMirror {
    this.#advance();
    return this.#delivered;
  }

  /** True when everything committed is delivered. */
  caughtUp(): boolean {
    this.#advance();
    return this.#snapshots.length === 0;
  }

  /** The delivered mirror as annotation text, within MIRROR_MAX_BYTES. */
  encode(maxBytes = MIRROR_MAX_BYTES): string {
    return encodeMirror(this.current(), maxBytes);
  }

  #oldestPending(): number | undefined {
    return this.#s.oldest.get(this.#input) as number | undefined;
  }

  #advance(): void {
    if (this.#snapshots.length === 0) return;
    const oldest = this.#oldestPending();
    while (this.#snapshots.length > 0 && (oldest === undefined || oldest > this.#snapshots[0]!.lastBatchId)) {
      this.#delivered = this.#snapshots.shift()!.mirror;
    }
  }
}

/**
 * JSON of the mirror, at most `maxBytes` long: seen entries are listed most
 * recent first per scope, and the oldest are cut first.
 */
export function encodeMirror(m: CursorMirror, maxBytes = MIRROR_MAX_BYTES): string {
  let text = JSON.stringify(m);
  if (text.length <= maxBytes) return text;
  const lists = Object.entries(m.seen).map(([scope, list]) => [scope, list.split(',')] as const);
  let keep = lists.reduce((n, [, l]) => Math.max(n, l.length), 0);
  while (text.length > maxBytes && keep > 0) {
    keep = Math.floor(keep / 2);
    const seen: Record<string, string> = {};
    for (const [scope, l] of lists) if (keep > 0) seen[scope] = l.slice(0, keep).join(',');
    text = JSON.stringify({ ...m, seen });
  }
  return text;
}
