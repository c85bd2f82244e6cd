import { createRequire } from 'node:module';
import tty from 'node:tty';
import { pino, type Logger } from 'pino';
import { scrubText } from './scrub.ts';

// pino-pretty loads only for the text format (a person at a terminal), not in containers.
const load = createRequire(import.meta.url);

export type { Logger };
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
export type LogFormat = 'auto' | 'json' | 'text';

/** `auto`: human-readable text when the log goes to a terminal, JSON otherwise (containers, pipes, files). */
export function resolveLogFormat(format: LogFormat, destination: number, isTTY: (fd: number) => boolean = tty.isatty): 'json' | 'text' {
  if (format !== 'auto') return format;
  return isTTY(destination) ? 'text' : 'json';
}

/**
 * Structured logs on stderr, so that the `stdout` output owns stdout: JSON
 * lines, or pino-pretty's text for a person at a terminal. Secrets never
 * reach a log line: components log names and reasons, not configs, and
 * every line passes through `scrubText` on its way out, which masks URL
 * credentials and every secret value ktrail has read (scrub.ts).
 */
export function createLogger(level: LogLevel = 'info', destination: number = 2, format: LogFormat = 'json'): Logger {
  const options = {
    level,
    base: { app: 'ktrail' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
    hooks: { streamWrite: scrubText },
  };
  if (resolveLogFormat(format, destination) === 'text') {
    const pretty = load('pino-pretty') as typeof import('pino-pretty');
    return pino(options, pretty({ destination, sync: true, colorize: tty.isatty(destination), ignore: 'pid,hostname,app', translateTime: 'SYS:HH:MM:ss.l' }));
  }
  return pino(options, pino.destination({ fd: destination, sync: true }));
}
