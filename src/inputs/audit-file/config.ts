/** The validated settings of one audit_file input (the schema is in plugin.ts, with each default). */
export interface AuditFileConfig {
  paths: string[];
  exclude: string[];
  start_at: 'beginning' | 'end';
  ignore_older?: number;
  rescan_interval: number;
  max_line_bytes: number;
  on_oversize: 'dead_letter' | 'truncate';
  oversize_sample_bytes: number;
  on_parse_error: 'dead_letter' | 'pass_raw';
  read_buffer_size: number;
  max_open_files: number;
}
