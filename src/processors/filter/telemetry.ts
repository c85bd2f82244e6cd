import { logEvents } from '../../telemetry/log-events.ts';

/** The log lines of the `filter` plugin an operator may act on (docs/logs.md lists them). */
export const { names: filterEvent, catalog: filterLogEvents } = logEvents('filter', {
  unparsable: { level: 'warn', help: 'A record is not valid JSON: it is kept, unfiltered. Logged once.' },
});
