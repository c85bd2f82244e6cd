import fsp from 'node:fs/promises';
import type { ComponentContext, EmitGap } from '../../plugin.ts';
import type { CheckpointRow, GapRecord } from './checkpoints.ts';
import type { FileGauges } from './gauges.ts';
import type { HeldFiles } from './held.ts';
import { readGzipHead, readHead, streamPlace } from './identity.ts';
import type { ReconcileResult, TrackedFile, Tracker } from './tracker.ts';
import { auditFileEvent, auditFileMetrics } from './telemetry.ts';

/**
 * What a rescan found that an operator must hear about: rotations,
 * truncations and gaps, each counted and logged. The gaps are also stored
 * (checkpoints.ts `recordGap`), in the transaction that forgets the files.
 */

type Reporting = Pick<ComponentContext, 'metrics' | 'log'>;

export function reportReconcile(r: ReconcileResult, { metrics, log }: Reporting, input: string, gauges: FileGauges): void {
  for (const f of r.rotations) {
    auditFileMetrics(metrics).rotations.inc({ input });
    log.debug({ file: f.path }, 'rotation: active file renamed');
  }
  for (const { old, path } of r.replaced) {
    if (old.detachReason === 'truncated') {
      auditFileMetrics(metrics).truncations.inc({ input });
      log.warn({ event: auditFileEvent.truncated, file: path, offset: old.offset, size: old.size }, 'file truncated (shorter than the offset, or its first bytes changed); reading it again from offset 0');
    } else {
      log.debug({ file: path, previous: old.path }, 'inode reused by another file');
    }
  }
  for (const f of r.skipped) log.info({ event: auditFileEvent.skipped, file: f.path, offset: f.offset }, 'file seen for the first time skipped to its end (start_at: end / ignore_older)');
  for (const { file, gapBytes, reason, endUnknown } of r.removed) {
    gauges.dropLag(file);
    if (gapBytes <= 0 && !endUnknown) continue;
    auditFileMetrics(metrics).gapBytes.inc({ input, reason }, gapBytes);
    auditFileMetrics(metrics).gapFiles.inc({ input, reason });
    log.warn(
      { event: auditFileEvent.gap, file: file.path, lostBytes: gapBytes, atLeast: endUnknown || undefined, offset: file.offset, size: file.size, reason, notHeld: file.notHeld || undefined },
      reason === 'truncated'
        ? `gap: ${file.path} was truncated before it was read to the end; ${gapBytes} bytes lost`
        : endUnknown
          ? `gap: ${file.path} was rotated away and deleted before ktrail saw it again; at least ${gapBytes} bytes lost (its final size is unknown)`
          : `gap: ${file.path} left the configured paths (deleted, or renamed out of them) before it was read to the end; ${gapBytes} bytes lost`,
    );
  }
}

/** The stored form of the gaps a reconcile found (files that left with unread bytes). */
export function removedGaps(r: ReconcileResult): GapRecord[] {
  return r.removed
    .filter((x) => x.gapBytes > 0 || x.endUnknown)
    .map((x) => ({ reason: x.reason, file: x.file.path, files: 1, bytes: x.endUnknown ? undefined : x.gapBytes }));
}

/** The completeness chain's stream of a file lineage: the input and the active file's path. */
export function chainStream(input: string, streamKey: string): string {
  return `${input}:${streamKey}`;
}

/** The same gaps as entries of the completeness chain (src/manifest/), each on its file lineage's stream. */
export function chainGaps(input: string, r: ReconcileResult, unseen: readonly GapRecord[]): EmitGap[] {
  return [
    ...r.removed
      .filter((x) => x.gapBytes > 0 || x.endUnknown)
      .map((x) => ({
        stream: chainStream(input, x.file.streamKey),
        reason: x.reason,
        files: 1,
        bytes: x.endUnknown ? undefined : x.gapBytes,
        detail: `${x.file.path} (fingerprint ${x.file.fp?.hash ?? 'unknown'}): bytes from ${x.file.offset} to ${x.endUnknown ? 'its unknown end' : x.file.size} never read (${x.reason})`,
      })),
    ...unseen.map((g) => ({
      stream: chainStream(input, g.file ?? ''),
      reason: g.reason,
      files: g.files,
      fromMs: g.fromMs,
      toMs: g.toMs,
      detail: `about ${g.files} file(s) of ${g.file ?? '?'} rotated away unread between ${new Date(g.fromMs ?? 0).toISOString()} and ${new Date(g.toMs ?? 0).toISOString()}`,
    })),
  ];
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
export async function unseenRotations(loadedRows: readonly CheckpointRow[], tracker: Tracker, held: HeldFiles, { metrics, log }: Reporting, input: string): Promise<GapRecord[]> {
  const out: GapRecord[] = [];
  const byStream = new Map<string, CheckpointRow[]>();
  for (const r of loadedRows) {
    const key = streamPlace(r.path).streamKey;
    byStream.set(key, [...(byStream.get(key) ?? []), r]);
  }
  for (const [key, loaded] of byStream) {
    const ids = new Set(loaded.map((r) => r.fileId));
    const files = tracker.stream(key);
    if (files.some((f) => ids.has(f.id) && f.attached && f.missingScans === 0)) continue; // the chain continues
    const present = files.filter((f) => !ids.has(f.id) && f.attached && f.missingScans === 0);
    const oldest = present[0];
    if (!oldest) continue;
    const fromMs = Math.max(...loaded.map((r) => r.updatedMs));
    const toMs = await firstRecordMs(oldest, held);
    if (toMs === undefined || toMs <= fromMs) continue;
    const times = present.filter((f) => f.isBackup).map((f) => f.orderKey);
    const intervals = times
      .slice(1)
      .map((t, i) => t - times[i]!)
      .filter((d) => d > 0)
      .sort((a, b) => a - b);
    const interval = intervals.length > 0 ? intervals[Math.floor(intervals.length / 2)]! : undefined;
    const estimate = interval !== undefined ? Math.max(1, Math.round((toMs - fromMs) / interval)) : 1;
    auditFileMetrics(metrics).gapFiles.inc({ input, reason: 'rotated_unseen' }, estimate);
    auditFileMetrics(metrics).gapSeconds.inc({ input }, (toMs - fromMs) / 1000);
    log.warn(
      { event: auditFileEvent.gap, reason: 'rotated_unseen', stream: key, from: new Date(fromMs).toISOString(), to: new Date(toMs).toISOString(), estimatedFiles: estimate, oldestPresent: oldest.path },
      `gap: audit log of ${key} from ${new Date(fromMs).toISOString()} to ${new Date(toMs).toISOString()} was rotated away while ktrail was not reading it (about ${estimate} file(s)); reading resumes at ${oldest.path}`,
    );
    out.push({ reason: 'rotated_unseen', file: key, fromMs, toMs, files: estimate });
  }
  return out;
}

/** The time of the first record in `f` (requestReceivedTimestamp, else stageTimestamp), if it can be read. */
async function firstRecordMs(f: TrackedFile, heldFiles: HeldFiles): Promise<number | undefined> {
  // Through the descriptor held since the first scan: the oldest backup may be deleted by now.
  const held = heldFiles.peek(f.inodeKey);
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
