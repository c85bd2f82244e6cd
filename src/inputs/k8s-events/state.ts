import type { Database, Statement } from 'better-sqlite3';
import type { MigrationStep } from '../../spool/migrations.ts';
import { compareRv, isNumericRv } from './convert.ts';

/**
 * The input's durable state, in the spool's database:
 *
 * - `k8s_events_cursor`: per scope (`*` = all namespaces, else a namespace),
 *   the resourceVersion the input has consumed up to. A watch resumes from it.
 * - `k8s_events_seen`: uid → the last resourceVersion emitted for it, so that
 *   a relist (after `410 Gone`, a restart, a leader change) emits only new
 *   versions. Rows are pruned `seen_retention` after their last emission,
 *   which must outlast the apiserver's event TTL (1 h by default).
 *
 * Both are written only inside `commit()`, which runs in the transaction that
 * stores the records: what is stored and what is remembered as emitted never
 * disagree, whatever moment the process dies.
 */

export const STATE_OWNER = 'k8s_events';

export const STATE_MIGRATIONS: readonly MigrationStep[] = [
  `CREATE TABLE k8s_events_cursor (
     input TEXT NOT NULL,
     scope TEXT NOT NULL,
     resource_version TEXT NOT NULL,
     updated_ms INTEGER NOT NULL,
     advanced_ms INTEGER NOT NULL,
     PRIMARY KEY (input, scope)
   ) WITHOUT ROWID;
   CREATE TABLE k8s_events_seen (
     input TEXT NOT NULL,
     uid TEXT NOT NULL,
     scope TEXT NOT NULL,
     resource_version TEXT NOT NULL,
     seen_ms INTEGER NOT NULL,
     PRIMARY KEY (input, uid)
   ) WITHOUT ROWID;
   CREATE INDEX k8s_events_seen_age ON k8s_events_seen (input, seen_ms);`,
];

export const ALL_NAMESPACES = '*';

export interface CursorRow {
  scope: string;
  resourceVersion: string;
  updatedMs: number;
  advancedMs: number;
}

export interface SeenEntry {
  uid: string;
  scope: string;
  resourceVersion: string;
}

/** What a leader mirrors into its Lease: cursors and the emitted versions they do not cover. */
export interface CursorMirror {
  v: 1;
  cursors: Record<string, string>;
  /** Per scope: "uid=rv" pairs joined by ",". */
  seen: Record<string, string>;
  /** When the mirror was taken, ms since epoch. */
  at: number;
}

/** Bound on mirrored seen entries: 2,000 × ~46 bytes stays far below the 256 KiB annotation limit. */
export const MIRROR_MAX_SEEN = 2000;

export class EventsState {
  readonly #input: string;
  readonly #db: Database;
  readonly #s: {
    cursor: Statement;
    cursors: Statement;
    lookup: Statement;
    upsertSeen: Statement;
    upsertCursor: Statement;
    prune: Statement;
    count: Statement;
    recent: Statement;
  };

  constructor(db: Database, input: string) {
    this.#db = db;
    this.#input = input;
    this.#s = {
      cursor: db.prepare('SELECT scope, resource_version AS resourceVersion, updated_ms AS updatedMs, advanced_ms AS advancedMs FROM k8s_events_cursor WHERE input = ? AND scope = ?'),
      cursors: db.prepare('SELECT scope, resource_version AS resourceVersion, updated_ms AS updatedMs, advanced_ms AS advancedMs FROM k8s_events_cursor WHERE input = ? ORDER BY scope'),
      lookup: db.prepare('SELECT resource_version AS rv FROM k8s_events_seen WHERE input = ? AND uid = ?').pluck(),
      upsertSeen: db.prepare(
        `INSERT INTO k8s_events_seen (input, uid, scope, resource_version, seen_ms) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(input, uid) DO UPDATE SET scope = excluded.scope, resource_version = excluded.resource_version, seen_ms = excluded.seen_ms`,
      ),
      upsertCursor: db.prepare(
        `INSERT INTO k8s_events_cursor (input, scope, resource_version, updated_ms, advanced_ms) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(input, scope) DO UPDATE SET
           advanced_ms = CASE WHEN resource_version = excluded.resource_version THEN advanced_ms ELSE excluded.advanced_ms END,
           resource_version = excluded.resource_version, updated_ms = excluded.updated_ms`,
      ),
      prune: db.prepare('DELETE FROM k8s_events_seen WHERE input = ? AND seen_ms < ?'),
      count: db.prepare('SELECT count(*) FROM k8s_events_seen WHERE input = ?').pluck(),
      recent: db.prepare('SELECT uid, scope, resource_version AS resourceVersion FROM k8s_events_seen WHERE input = ? ORDER BY seen_ms DESC LIMIT ?'),
    };
  }

  cursor(scope: string): CursorRow | undefined {
    return this.#s.cursor.get(this.#input, scope) as CursorRow | undefined;
  }

  cursors(): CursorRow[] {
    return this.#s.cursors.all(this.#input) as CursorRow[];
  }

  /** The resourceVersion last emitted for `uid`. */
  lastEmitted(uid: string): string | undefined {
    return this.#s.lookup.get(this.#input, uid) as string | undefined;
  }

  /** Runs inside the spool transaction (the `checkpoint(db)` callback). */
  commit(seen: Iterable<SeenEntry>, cursors: ReadonlyMap<string, string>, nowMs: number): void {
    for (const e of seen) this.#s.upsertSeen.run(this.#input, e.uid, e.scope, e.resourceVersion, nowMs);
    for (const [scope, rv] of cursors) this.#s.upsertCursor.run(this.#input, scope, rv, nowMs, nowMs);
  }

  /** Drops entries last emitted before `olderThanMs`; returns how many. */
  prune(olderThanMs: number): number {
    return this.#s.prune.run(this.#input, olderThanMs).changes;
  }

  size(): number {
    return this.#s.count.get(this.#input) as number;
  }

  /**
   * The compact state for the Lease: all cursors, plus the most recent seen
   * entries a cursor does not cover (above it, or not comparable) — normally
   * none; during a list, the pages already emitted.
   */
  mirror(nowMs: number, maxSeen = MIRROR_MAX_SEEN): CursorMirror {
    const cursors: Record<string, string> = {};
    for (const c of this.cursors()) cursors[c.scope] = c.resourceVersion;
    const seen: Record<string, string> = {};
    let n = 0;
    // Look further back than maxSeen: most recent rows are usually covered by the cursor.
    for (const e of this.#s.recent.all(this.#input, maxSeen * 4) as SeenEntry[]) {
      if (n >= maxSeen) break;
      const cur = cursors[e.scope];
      const covered = cur !== undefined && isNumericRv(cur) && isNumericRv(e.resourceVersion) && compareRv(e.resourceVersion, cur) <= 0;
      if (covered) continue;
      seen[e.scope] = seen[e.scope] ? `${seen[e.scope]},${e.uid}=${e.resourceVersion}` : `${e.uid}=${e.resourceVersion}`;
      n++;
    }
    return { v: 1, cursors, seen, at: nowMs };
  }

  /**
   * Adopts a Lease mirror written by a previous leader: a scope's cursor moves
   * to the mirror's when that is newer (or the local one is missing or not
   * comparable), and the mirrored seen entries are merged in.
   * Returns the scopes whose cursor changed.
   */
  adopt(mirror: CursorMirror, nowMs: number): string[] {
    const changed: string[] = [];
    this.#db.transaction(() => {
      const cursors = new Map<string, string>();
      for (const [scope, rv] of Object.entries(mirror.cursors)) {
        const local = this.cursor(scope)?.resourceVersion;
        if (local === rv) continue;
        const comparable = local !== undefined && isNumericRv(local) && isNumericRv(rv);
        if (local === undefined || (comparable ? compareRv(rv, local) > 0 : mirror.at > (this.cursor(scope)?.updatedMs ?? 0))) {
          cursors.set(scope, rv);
          changed.push(scope);
        }
      }
      const seen: SeenEntry[] = [];
      for (const [scope, list] of Object.entries(mirror.seen)) {
        for (const pair of list.split(',')) {
          const eq = pair.lastIndexOf('=');
          if (eq <= 0) continue;
          const uid = pair.slice(0, eq);
          const rv = pair.slice(eq + 1);
          const local = this.lastEmitted(uid);
          if (local !== undefined && (local === rv || (isNumericRv(local) && isNumericRv(rv) && compareRv(local, rv) > 0))) continue;
          seen.push({ uid, scope, resourceVersion: rv });
        }
      }
      this.commit(seen, cursors, nowMs);
    })();
    return changed;
  }
}

export function parseMirror(text: string | undefined): CursorMirror | undefined {
  if (!text) return undefined;
  try {
    const m = JSON.parse(text) as Partial<CursorMirror>;
    if (m.v !== 1 || typeof m.cursors !== 'object' || m.cursors === null) return undefined;
    return { v: 1, cursors: m.cursors, seen: typeof m.seen === 'object' && m.seen !== null ? m.seen : {}, at: typeof m.at === 'number' ? m.at : 0 };
  } catch {
    return undefined;
  }
}

/** `ktrail status` rows, read-only: one per cursor scope, one with the seen-set size and last update. */
export function describeEventsState(db: Database): Array<Record<string, unknown> & { input: string }> {
  const cursors = db
    .prepare('SELECT input, scope, resource_version AS rv, updated_ms AS updated, advanced_ms AS advanced FROM k8s_events_cursor ORDER BY input, scope')
    .all() as Array<{ input: string; scope: string; rv: string; updated: number; advanced: number }>;
  const seen = db.prepare('SELECT input, count(*) AS n, max(seen_ms) AS last FROM k8s_events_seen GROUP BY input').all() as Array<{
    input: string;
    n: number;
    last: number | null;
  }>;
  const inputs = new Map<string, { size: number; lastMs: number }>();
  for (const s of seen) inputs.set(s.input, { size: s.n, lastMs: s.last ?? 0 });
  const rows: Array<Record<string, unknown> & { input: string }> = [];
  for (const c of cursors) {
    rows.push({
      input: c.input,
      scope: c.scope === ALL_NAMESPACES ? 'all-namespaces' : `namespace/${c.scope}`,
      cursor_rv: c.rv,
      cursor_advanced: new Date(c.advanced).toISOString(),
    });
    const i = inputs.get(c.input) ?? { size: 0, lastMs: 0 };
    i.lastMs = Math.max(i.lastMs, c.updated);
    inputs.set(c.input, i);
  }
  for (const [input, i] of inputs) {
    rows.push({ input, seen_set_size: i.size, last_update: i.lastMs > 0 ? new Date(i.lastMs).toISOString() : 'never' });
  }
  return rows;
}
