import { Counter, Gauge } from 'prom-client';
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
