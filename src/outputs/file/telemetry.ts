import { logEvents } from '../../telemetry/log-events.ts';

/** The log lines of the `file` plugin an operator may act on (docs/logs.md lists them). */
export const { names: fileEvent, catalog: fileLogEvents } = logEvents('file', {
  torn_line_cut: { level: 'warn', help: 'At start, a torn last line left by a write that was interrupted (a crash) was cut off; its records are sent again.' },
});
