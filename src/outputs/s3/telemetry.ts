import { logEvents } from '../../telemetry/log-events.ts';

/** The log lines of the `s3` plugin an operator may act on (docs/logs.md lists them). */
export const { names: s3Event, catalog: s3LogEvents } = logEvents('s3', {
  abort_failed: { level: 'warn', help: 'A failed multipart upload could not be aborted; a bucket lifecycle rule should clean up incomplete uploads.' },
  refused: { level: 'error', help: 'The bucket refuses the writes (credentials, permissions, missing bucket); retried until fixed, nothing is dropped.' },
});
