import { z } from 'zod';
import { duration, size } from '../../config/units.ts';
import type { InputPlugin } from '../../plugin.ts';
import { inspectAuditFile } from './check.ts';
import { describeCheckpoints } from './checkpoints.ts';
import { DEFAULT_MAX_OPEN_FILES, earlyKey, openAuditFiles, type EarlyFiles } from './early.ts';
import { AuditFileInput } from './input.ts';
import { pathPatternProblem } from './scan.ts';
import { auditFileEvent, auditFileLogEvents, auditFileMetrics } from './telemetry.ts';

/**
 * `audit_file`: tails the kube-apiserver audit log (`--audit-log-path`) and
 * its lumberjack backups, rotation-proof and crash-proof. See
 * docs/inputs/audit_file.md.
 */
const MiB = 1024 * 1024;

const pathPattern = z
  .string()
  .min(1)
  .superRefine((p, ctx) => {
    const problem = pathPatternProblem(p);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

// Field-level checks only: the loader extends this object with the common keys.
const schema = z.strictObject({
  paths: z
    .array(pathPattern)
    .min(1)
    .describe('Files to read: an exact path such as `/var/log/kubernetes/audit/audit.log` (covers its lumberjack backups `audit-<time>.log[.gz]`) or a glob such as `audit*.log*`; wildcards in the file name only.'),
  exclude: z
    .array(z.string().min(1))
    .default([])
    .describe('Globs of files to leave alone: matched against the absolute path if they contain `/`, else against the file name.'),
  start_at: z
    .enum(['beginning', 'end'])
    .default('beginning')
    .describe("Where to start in files present at the input's very first start; later files are always read from the beginning."),
  ignore_older: duration()
    .optional()
    .describe('Files seen for the first time whose mtime is older than this are skipped (not read, no gap).'),
  rescan_interval: duration()
    .refine((v) => v >= 10, 'must be at least 10ms')
    .default(1000)
    .describe('How often the directories are listed (the truth; watcher events only make it come sooner).'),
  max_line_bytes: size()
    .refine((v) => v >= 1024, 'must be at least 1KiB')
    .default(16 * MiB)
    .describe('Longest line accepted; longer lines are handled per `on_oversize`, streamed past without buffering them.'),
  on_oversize: z
    .enum(['dead_letter', 'truncate'])
    .default('dead_letter')
    .describe('`dead_letter`: the line (its first bytes) goes to the dead-letter table; `truncate`: a marker record with the first bytes and the size is shipped.'),
  oversize_sample_bytes: size()
    .refine((v) => v >= 1, 'must be at least 1 byte')
    .default(64 * 1024)
    .describe('Bytes of an oversize line kept (dead letter or truncated record); at most max_line_bytes.'),
  on_parse_error: z
    .enum(['dead_letter', 'pass_raw'])
    .default('dead_letter')
    .describe('A line that is not a JSON audit event: `dead_letter`, or `pass_raw` to ship it as `{"message": <line>, "ktrail_parse_error": ...}`.'),
  read_buffer_size: size()
    .refine((v) => v >= 4096 && v <= 64 * MiB, 'must be between 4KiB and 64MiB')
    .default(MiB)
    .describe('Size of one read, and so of one emit (one spool transaction) at most.'),
  max_open_files: z
    .int()
    .min(4)
    .max(65536)
    .default(DEFAULT_MAX_OPEN_FILES)
    .describe(
      'Descriptors the input holds at most. Every matching file is held open from the first scan that sees it until it is read to its end, so a deleted backup is still read; a file seen beyond the limit is tracked by name only (counted in `ktrail_audit_file_not_held_total`) and is a gap if deleted before it is read.',
    ),
});

export const auditFileInput: InputPlugin<typeof schema> = {
  kind: 'input',
  type: 'audit_file',
  description: 'Tails the kube-apiserver audit log and its rotated (and gzipped) backups.',
  schema,
  metrics: auditFileMetrics,
  logEvents: auditFileLogEvents,
  create: (cfg, ctx) => new AuditFileInput(cfg, ctx),
  // The first thing `ktrail run` does: open (and hold) every file the paths match.
  prepare: async (cfg, log, early) => {
    let e = early as EarlyFiles | undefined;
    if (e && e.key !== earlyKey(cfg.paths, cfg.exclude, cfg.max_open_files)) {
      await e.held.closeAll();
      e = undefined;
    }
    const prepared = e ?? { ...(await openAuditFiles(cfg)), openAtMs: performance.now() };
    log.info(
      {
        event: auditFileEvent.files_open,
        files: prepared.held.open,
        matched: prepared.scan.files.length,
        missingDirs: prepared.scan.missingDirs,
        sinceStartMs: Math.round(prepared.openAtMs),
        openedAt: new Date(performance.timeOrigin + prepared.openAtMs).toISOString(),
        beforeValidation: e !== undefined,
      },
      'audit files open',
    );
    return prepared;
  },
  describeState: (db) => describeCheckpoints(db),
  inspect: (cfg) => inspectAuditFile(cfg),
};
