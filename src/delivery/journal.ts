import type { Spool } from '../spool/spool.ts';
import type { Group } from './runner.ts';

/**
 * The journal: a request group's composition is recorded in the spool before
 * its first send, so after a crash the same group, with the same key, is sent
 * again. Sinks that write by key (S3) or dedupe by it see a harmless replay.
 * On start the runner takes these groups first, exactly as they were
 * composed; a group whose batches were all acknowledged meanwhile is dropped.
 */
export function journaledGroups(spool: Spool, output: string, fetchLimit: number): { groups: Group[]; cursor: number } {
  const groups: Group[] = [];
  let cursor = 0;
  for (const j of spool.journaledRequests(output)) {
    const refs = spool.pending(output, j.firstBatch - 1, fetchLimit).filter((b) => b.id <= j.lastBatch);
    if (refs.length === 0) {
      spool.dropJournaledRequest(output, j.firstBatch);
      continue;
    }
    groups.push({ firstBatch: j.firstBatch, lastBatch: j.lastBatch, batchIds: refs.map((r) => r.id) });
    cursor = Math.max(cursor, j.lastBatch);
  }
  return { groups, cursor };
}
