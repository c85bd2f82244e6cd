import type { Database } from 'better-sqlite3';
import { ErrorCode, KtrailError } from '../errors.ts';

/**
 * Versioned schemas, migrated forward only. Each owner (the spool itself, or a
 * plugin such as `audit_file`) keeps its own version in `schema_versions`, so a
 * plugin can add tables without touching anyone else's. A database written by
 * a newer ktrail (a version above what this build knows) is refused rather
 * than misread.
 */
export type MigrationStep = string | ((db: Database) => void);

export function migrate(db: Database, owner: string, steps: readonly MigrationStep[]): void {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_versions (
    owner TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
  )`);
  const row = db.prepare('SELECT version FROM schema_versions WHERE owner = ?').get(owner) as
    | { version: number }
    | undefined;
  const current = row?.version ?? 0;
  if (current > steps.length) {
    throw new KtrailError(
      ErrorCode.SPOOL_SCHEMA,
      `state database schema for "${owner}" is version ${current}, newer than this ktrail knows (${steps.length}); ` +
        'run a ktrail at least as new as the one that wrote it, or point service.state_dir at a fresh directory',
    );
  }
  for (let v = current; v < steps.length; v++) {
    const step = steps[v]!;
    db.transaction(() => {
      if (typeof step === 'string') db.exec(step);
      else step(db);
      db.prepare(
        `INSERT INTO schema_versions (owner, version, updated_ms) VALUES (?, ?, ?)
         ON CONFLICT(owner) DO UPDATE SET version = excluded.version, updated_ms = excluded.updated_ms`,
      ).run(owner, v + 1, Date.now());
    })();
  }
}
