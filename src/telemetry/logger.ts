import { pino, type Logger } from 'pino';
import { scrubText } from './scrub.ts';

export type { Logger };
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';

/**
 * Structured JSON logs on stderr, so that the `stdout` output owns stdout.
 * Secrets never reach a log line: components log names and reasons, not
 * configs, and every line passes through `scrubText` on its way out, which
 * masks URL credentials and every secret value ktrail has read (scrub.ts).
 */
export function createLogger(level: LogLevel = 'info', destination: number = 2): Logger {
  return pino(
    {
      level,
      base: { app: 'ktrail' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      hooks: { streamWrite: scrubText },
    },
    pino.destination({ fd: destination, sync: true }),
  );
}
