import { Counter, Gauge } from 'prom-client';
import { logEvents } from '../../telemetry/log-events.ts';
import { pluginMetrics } from '../../telemetry/metrics.ts';

/** The series only the `audit_file` plugin exports (docs/metrics.md lists them with the rest). */
export const auditFileMetrics = pluginMetrics('audit_file', (registers) => ({
  bytesRead: new Counter({ name: 'ktrail_audit_file_read_bytes_total', help: 'Bytes read from audit log files.', labelNames: ['input'], registers }),
  lines: new Counter({ name: 'ktrail_audit_file_lines_total', help: 'Complete lines read from audit log files.', labelNames: ['input'], registers }),
  lagBytes: new Gauge({ name: 'ktrail_audit_file_lag_bytes', help: 'Bytes written to a tracked file but not yet read (size minus offset).', labelNames: ['input', 'file'], registers }),
  filesTracked: new Gauge({ name: 'ktrail_audit_file_files_tracked', help: 'Files the input currently tracks (active file and unread backups).', labelNames: ['input'], registers }),
  rotations: new Counter({ name: 'ktrail_audit_file_rotations_total', help: 'Rotations observed (the active file renamed away and a new one seen).', labelNames: ['input'], registers }),
  truncations: new Counter({ name: 'ktrail_audit_file_truncations_total', help: 'Files found shorter than their checkpoint and re-read from 0.', labelNames: ['input'], registers }),
  gapBytes: new Counter({ name: 'ktrail_audit_file_gap_bytes_total', help: 'Bytes that could not be read because the file was deleted before the input reached its end.', labelNames: ['input', 'reason'], registers }),
  gapFiles: new Counter({
    name: 'ktrail_audit_file_gap_files_total',
    help: 'Files lost before the input read them to the end, by reason (deleted, truncated, rotated_unseen: rotated away while ktrail was not running, an estimate).',
    labelNames: ['input', 'reason'],
    registers,
  }),
  gapSeconds: new Counter({
    name: 'ktrail_audit_file_gap_seconds_total',
    help: 'Seconds of audit log rotated away unseen while ktrail was not running (from the last checkpoint to the first record of the oldest file found).',
    labelNames: ['input'],
    registers,
  }),
  openFiles: new Gauge({ name: 'ktrail_audit_file_open_files', help: 'Descriptors the input holds open (files held from first sight plus the readers\' open files).', labelNames: ['input'], registers }),
  filesNotHeld: new Counter({
    name: 'ktrail_audit_file_not_held_total',
    help: 'Files seen while max_open_files descriptors were already open: tracked by name only, lost (a gap) if deleted before they are read.',
    labelNames: ['input'],
    registers,
  }),
  oversizeLines: new Counter({ name: 'ktrail_audit_file_oversize_lines_total', help: 'Lines longer than max_line_bytes, by action (dead_letter, truncate).', labelNames: ['input', 'action'], registers }),
  invalidLines: new Counter({ name: 'ktrail_audit_file_invalid_lines_total', help: 'Lines that were not a JSON audit event, by action (dead_letter, pass_raw).', labelNames: ['input', 'action'], registers }),
}));

/** The log lines of the `audit_file` plugin an operator may act on (docs/logs.md lists them). */
export const { names: auditFileEvent, catalog: auditFileLogEvents } = logEvents('audit_file', {
  files_open: { level: 'info', help: 'At start, before validation finished: how many audit files were opened and held, and when. A backup deleted after this moment is still read.' },
  dir_missing: { level: 'info', help: 'A configured directory does not exist (yet); it is looked for on every rescan.' },
  read_error: { level: 'error', help: 'A directory or file cannot be read (permissions, I/O error). After 3 in a row `/readyz` fails. Fix the mount or permissions; reading resumes by itself.' },
  recovered: { level: 'info', help: 'Reading works again after read errors.' },
  skipped: { level: 'info', help: 'A file seen for the first time was skipped to its end (`start_at: end`, `ignore_older`): not read, and no gap.' },
  truncated: { level: 'warn', help: 'A file was truncated in place (or its first bytes changed): it is read again from offset 0.' },
  gap: { level: 'warn', help: 'Audit log lost before it was read: a file deleted or truncated before its end (`reason` deleted/truncated, `lostBytes`), or a time span rotated away while ktrail was not running (`reason` rotated_unseen, `from`/`to`). Raise `--audit-log-maxbackup` or keep ktrail running.' },
  not_held: { level: 'warn', help: '`max_open_files` descriptors are in use: this file is tracked by name only and is a gap if deleted before it is read.' },
  oversize_truncated: { level: 'warn', help: 'A line over `max_line_bytes` was shipped as a truncated marker record (`on_oversize: truncate`).' },
  gz_short: { level: 'warn', help: 'A `.gz` backup holds less than its checkpoint said (replaced by a different file?): nothing left to read in it.' },
});
