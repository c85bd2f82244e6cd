import { pino, type Logger } from 'pino';

export type { Logger };
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';

/**
 * Structured JSON logs on stderr, so that the `stdout` output owns stdout.
 * Secrets never reach a log line: components log names and reasons, not
 * configs; the resolved config is printed only through `maskSecrets`.
 */
export function createLogger(level: LogLevel = 'info', destination: number = 2): Logger {
  return pino(
    {
      level,
      base: { app: 'ktrail' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ fd: destination, sync: true }),
  );
}
